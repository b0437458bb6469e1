"""Names the parser checks before anything heavy is imported: the registry's editors, the bench's modes.

The editor registry (``sss_core.editors``) and the bench (``sss_core.evaluation.bench``) import torch,
which takes seconds; the parser needs their names at once, to list them in ``--help`` and to refuse
a wrong one within a second. The built-in editor names are read from the registry's own source (the
``EditorSpec("name", ...)`` lines of ``_BUILT_IN`` in sss_core/editors/__init__.py, parsed, not
imported), so a new editor is still one registry line; tests/test_cli.py checks that what is read
here equals the imported registry. The registry stays the authority and checks the name again when
the editor is built. An editor registered in the same process (``register_editor`` before calling
``sss_core.cli.main``) is accepted too.
"""

from __future__ import annotations

import argparse
import ast
import sys
from functools import lru_cache
from pathlib import Path

REGISTRY_SOURCE = Path(__file__).resolve().parent.parent / "editors" / "__init__.py"
BENCH_MODES = ("single", "sequential", "batch", "sweep")  # equal to sss_core.evaluation.bench.MODES (tested)


@lru_cache(maxsize=1)
def built_in_entries() -> tuple[tuple[str, bool], ...]:
    """(name, trained?) of each ``EditorSpec(...)`` in the registry's ``_BUILT_IN``, read from its source."""
    tree = ast.parse(REGISTRY_SOURCE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_BUILT_IN" for t in node.targets):
            return tuple((call.args[0].value, any(k.arg == "trainer" for k in call.keywords))
                         for call in node.value.elts)
    raise RuntimeError(f"no _BUILT_IN registry in {REGISTRY_SOURCE}")  # a broken install, not a user error


def _built_in_names() -> tuple[str, ...]:
    """Names of the built-in editors, in registry order."""
    return tuple(name for name, _ in built_in_entries())


def _built_in_trained() -> tuple[str, ...]:
    """Names of the built-in editors that have a trainer."""
    return tuple(name for name, trained in built_in_entries() if trained)


def _registered() -> tuple[str, ...]:
    """Editor names registered in this process beyond the built-in ones (only if the registry is loaded)."""
    registry = sys.modules.get("sss_core.editors")
    return tuple(getattr(registry, "EDITORS", ())) if registry is not None else ()


def known_editors() -> tuple[str, ...]:
    """The built-in editor names, then any other editor registered in this process."""
    return _built_in_names() + tuple(n for n in _registered() if n not in _built_in_names())


def editor_name(text: str) -> str:
    """argparse type: the name of a registered editor; ArgumentTypeError listing the names otherwise."""
    if text not in known_editors():
        raise argparse.ArgumentTypeError(f"unknown editor {text!r}; choose one of: {', '.join(known_editors())}")
    return text


def editor_names(text: str) -> tuple[str, ...]:
    """argparse type: a comma-separated list of registered editor names (at least one)."""
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one editor name")
    return tuple(editor_name(n) for n in names)


def bench_modes(text: str) -> tuple[str, ...]:
    """argparse type: a comma-separated list of bench modes (at least one)."""
    modes = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [m for m in modes if m not in BENCH_MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"unknown mode {bad[0] if bad else ''!r}; choose from {', '.join(BENCH_MODES)}")
    return modes


def trained_editors() -> tuple[str, ...]:
    """The built-in trained editors, then any other editor with a trainer registered in this process."""
    registry = sys.modules.get("sss_core.editors")
    extra = tuple(registry.trainable_editors()) if registry is not None else ()
    return _built_in_trained() + tuple(n for n in extra if n not in _built_in_trained())


def trained_editor_name(text: str) -> str:
    """argparse type: the name of a trained editor (one with a trainer); ArgumentTypeError otherwise."""
    if text not in trained_editors():
        raise argparse.ArgumentTypeError(f"{text!r} is not a trained editor; choose one of: "
                                         f"{', '.join(trained_editors())}")
    return text

"""Names the parser checks before anything heavy is imported: the registry's editors, the bench's modes.

The editor registry (``sss_core.editors``) and the bench (``sss_core.evaluation.bench``) import torch,
which takes seconds; the parser needs their names at once, to list them in ``--help`` and to refuse
a wrong one within a second. These tuples mirror the built-in entries (tests/test_cli.py checks that
they equal ``EDITORS``, ``trainable_editors()`` and ``bench.MODES``); the registry stays the authority
and checks the name again when the editor is built. An editor registered in the same process
(``register_editor`` before calling ``sss_core.cli.main``) is accepted too.
"""

from __future__ import annotations

import argparse
import sys

EDITOR_NAMES = ("ft-l", "ft-l+sss", "mend", "mend+sss", "serac", "serac+sss", "rome", "memit")
TRAINED_EDITOR_NAMES = ("mend", "mend+sss", "serac", "serac+sss")
BENCH_MODES = ("single", "sequential", "batch", "sweep")


def _registered() -> tuple[str, ...]:
    """Editor names registered in this process beyond the built-in ones (only if the registry is loaded)."""
    registry = sys.modules.get("sss_core.editors")
    return tuple(getattr(registry, "EDITORS", ())) if registry is not None else ()


def known_editors() -> tuple[str, ...]:
    """The built-in editor names, then any other editor registered in this process."""
    return EDITOR_NAMES + tuple(n for n in _registered() if n not in EDITOR_NAMES)


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
    return TRAINED_EDITOR_NAMES + tuple(n for n in extra if n not in TRAINED_EDITOR_NAMES)


def trained_editor_name(text: str) -> str:
    """argparse type: the name of a trained editor (one with a trainer); ArgumentTypeError otherwise."""
    if text not in trained_editors():
        raise argparse.ArgumentTypeError(f"{text!r} is not a trained editor; choose one of: "
                                         f"{', '.join(trained_editors())}")
    return text

"""The README says what a newcomer needs: every subcommand, and a fast subset with markers that exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", _readme(), re.DOTALL | re.MULTILINE)
    assert m, f"README has no section {title!r}"
    return m.group(1)


def test_readme_names_every_subcommand_that_help_lists():
    from sss_core.cli import build_parser  # noqa: PLC0415 - the CLI's own parser, no torch
    parser = build_parser()
    subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    text = _section("Command line")
    assert "--help" in text
    for name in subs.choices:
        assert f"`{name}`" in text, name


def test_readme_fast_subset_uses_markers_declared_in_pyproject():
    markers = {m.split(":")[0].strip() for m in
               tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]}
    text = _section("How long the tests take, and a fast subset")
    expressions = re.findall(r'pytest [^\n]*?-m ("[^"]+"|\w+)', text)  # the -m of each pytest command
    used = {w for expr in expressions for w in re.findall(r"\w+", expr)} - {"not", "and", "or"}
    assert used and used <= markers, used - markers
    assert "minutes" in text and "--durations" in text

"""Helpers shared by the AppTest modules (imported by name: tests/app is on sys.path under pytest)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "streamlit_app.py"


def assert_ok(at) -> None:
    """No uncaught exception (a traceback) and no error message on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def errors(at) -> list[str]:
    return [e.value for e in at.error]

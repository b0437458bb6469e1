"""AppTest fixtures: the real app script, run in-process on the shipped model (no browser)."""

from __future__ import annotations

import pytest

from apptest_support import APP, assert_ok


@pytest.fixture(autouse=True)
def _no_umap_warmup(monkeypatch):
    # The background numba compile would compete with the tests for the 2 cores; nothing here uses UMAP.
    monkeypatch.setenv("SSS_LAB_UMAP_WARMUP", "0")


@pytest.fixture
def app():
    """A fresh session of the app, run once (opens on the Edit page)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    assert_ok(at)
    return at


"""Fixtures and helpers shared by the AppTest modules.

Test modules import from here by name (pytest puts tests/app on sys.path). There is deliberately no
conftest.py in this folder: a second module named "conftest" would shadow tests/conftest.py for the
modules that import helpers from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "streamlit_app.py"


def assert_ok(at) -> None:
    """No uncaught exception (a traceback) and no error message on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def errors(at) -> list[str]:
    return [e.value for e in at.error]


@pytest.fixture(autouse=True, scope="module")
def _restore_torch_threads():
    # The app gives a small model one torch thread (process-wide); give other test modules theirs back.
    import torch
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


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



def open_link(query: dict, page: str | None = None):
    """A new session of the app opened from a link with ``query`` (on ``page``, a view file, when given), run once."""
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(APP), default_timeout=300)
    if page is not None:
        at.switch_page(page)
    at.query_params.update(query)
    at.run()
    return at

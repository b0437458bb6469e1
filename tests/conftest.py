"""Shared fixtures: the shipped default model and tiny random models of every supported family.

Also the real-data rule: tests marked ``real_data`` read ``../shared/anchor-data``
(``tests/real_data.py``). Without the folder they skip; with it a skip is a failure, and the
summary says how many of them ran.
"""

from __future__ import annotations

import pytest

from model_support import TINY_FAMILIES, tiny_model
from real_data import ANCHOR
from sss_core.models import DEFAULT_MODEL, LoadedModel, load_model


@pytest.fixture(scope="session")
def default_lm() -> LoadedModel:
    """The shipped default model on the CPU."""
    return load_model(DEFAULT_MODEL, device="cpu")


@pytest.fixture(scope="session", params=TINY_FAMILIES)
def tiny_lm(request, default_lm) -> LoadedModel:
    return tiny_model(request.param, default_lm.tok)


_REAL_DATA = {"passed": 0, "failed": 0, "skipped": 0, "skipped although present": 0}


def pytest_configure(config):
    """Register the ``real_data`` marker."""
    config.addinivalue_line("markers", f"real_data: reads the real EasyEdit files in {ANCHOR} (skips without them)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A real-data test that skips while the data folder is present fails instead; count the outcomes."""
    outcome = yield
    report = outcome.get_result()
    if item.get_closest_marker("real_data") is None:
        return
    if report.skipped and ANCHOR.is_dir():
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"{ANCHOR} is present, so this real-data test must run, but it skipped: {reason}"
        _REAL_DATA["skipped although present"] += 1
    elif report.when == "call" or (report.when == "setup" and not report.passed):
        _REAL_DATA[report.outcome] += 1


def pytest_terminal_summary(terminalreporter):
    """One line: how many real-data tests ran, and whether the data folder was there."""
    where = f"{ANCHOR} {'present' if ANCHOR.is_dir() else 'absent: they skip'}"
    ran = _REAL_DATA["passed"] + _REAL_DATA["failed"]
    missing = _REAL_DATA["skipped although present"]
    terminalreporter.write_line(f"real-data tests: {ran} ran ({_REAL_DATA['passed']} passed, "
                                f"{_REAL_DATA['failed']} failed), {_REAL_DATA['skipped']} skipped"
                                + (f", {missing} skipped although the data is there (failures)" if missing else "")
                                + f"; {where}")

"""Where the real EasyEdit data files are (``../shared/anchor-data``) and how tests ask for them.

A test that reads them is marked ``real_data`` and gets a file with ``anchor_file(name)``: when
the folder is absent the test is skipped; when it is present, a skip of such a test is turned into
a failure by ``tests/conftest.py``, and the summary line says how many ran. The folder can be
moved with the environment variable ``SSS_LAB_ANCHOR_DATA``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ANCHOR = Path(os.environ.get("SSS_LAB_ANCHOR_DATA")
              or Path(__file__).resolve().parents[2] / "shared" / "anchor-data")  # ../shared/anchor-data


def anchor_file(name: str) -> Path:
    """ANCHOR / name; skips the test (a failure when the folder is there) if that file is missing."""
    path = ANCHOR / name
    if not path.exists():
        pytest.skip(f"real data file {path} is not here")
    return path

"""The app's C sweep must sweep C: different points at different C, each the edit made at its C.

The older test compared points with ``<=`` (true for equal points), so a sweep that ignored C
and ran one edit six times passed. The bench's sweep: tests/evaluation/test_bench_sweep.py.
"""

from __future__ import annotations

import pytest

from sss_core.analysis import sweep_c
from sss_core.editors import make_editor
from sss_core.evaluation.metrics import run_edit
from sss_core.evaluation.presets import case_for_request
from sss_core.types import EditRequest

FRANCE = EditRequest("The capital of France is", "Rome", subject="France")
SETTINGS = {"steps": 4, "early_stop_loss": 0.0}


def test_app_sweep_points_are_the_edits_at_each_c(default_lm):
    case = case_for_request(FRANCE)
    points = sweep_c(default_lm, "ft-l+sss", SETTINGS, case, [0.0, 0.5, 1.0])
    assert [p.c for p in points] == [0.0, 0.5, 1.0]
    after = [p.lambda_max_after for p in points]
    assert len(set(after)) == 3, after  # three values of C, three different edits
    assert len({p.lambda_max_before for p in points}) == 1  # the same unedited model each time
    # a point is the edit made at its C, as run on its own
    alone = run_edit(default_lm.model, default_lm.tok, make_editor("ft-l+sss", sss_c=0.0, **SETTINGS), case)
    assert points[0].lambda_max_after == pytest.approx(alone.lambda_max_after, rel=1e-5)
    assert points[0].metrics == pytest.approx(alone.metrics)
    # C = 1 trains only the SSS term, against the new target: its point is that edit, run on its own
    at_one = run_edit(default_lm.model, default_lm.tok, make_editor("ft-l+sss", sss_c=1.0, **SETTINGS), case)
    assert points[2].metrics == pytest.approx(at_one.metrics)
    assert points[2].lambda_max_after == pytest.approx(at_one.lambda_max_after, rel=1e-5)


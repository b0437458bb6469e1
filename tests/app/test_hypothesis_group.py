"""The Hypothesis view's edits in groups (side by side) give the records of one edit at a time."""

import math

import pandas as pd

import pytest

from apptest_support import _no_umap_warmup, _restore_torch_threads, app  # noqa: F401 (fixtures)
from app.hypothesis import HypothesisJob, group_size, run_group, run_next, running_means
from sss_core.evaluation.datasets import load_cases


@pytest.fixture(scope="module")
def cases():
    return load_cases("world", 7, 0, "auto", 10**8, False)


def _job(cases):
    return HypothesisJob.start(cases, [("ft-l", {}), ("ft-l+sss", {})], seed=0, k=3)


def test_groups_give_the_records_of_one_edit_at_a_time(default_lm, cases):
    one, grouped = _job(cases), _job(cases)
    while one.pending:
        run_next(default_lm, one)
    assert group_size(grouped) == 5  # GROUP_MAX: ft-l's registry batch (25) is larger
    sizes = []
    while grouped.pending:
        sizes.append(len(run_group(default_lm, grouped)))
    assert sizes == [10, 4]  # 5 cases x 2 editors, then the last 2 cases
    assert [(r["editor"], r["case_id"]) for r in grouped.records] == [(r["editor"], r["case_id"]) for r in one.records]
    for a, b in zip(one.records, grouped.records):
        assert a["metrics"] == b["metrics"]
        assert a["knn_distance"] == pytest.approx(b["knn_distance"]) and a["target_nll"] == pytest.approx(b["target_nll"])
        assert b["extra"]["batch"] in (5, 2)
    with pytest.raises(IndexError):
        run_group(default_lm, grouped)


def test_a_job_left_mid_case_is_first_brought_to_a_case_boundary(default_lm, cases):
    job = _job(cases[:3])
    run_next(default_lm, job)  # ft-l on case 0 only
    made = run_group(default_lm, job)
    assert [(r["editor"], r["case_id"]) for r in made] == [("ft-l+sss", cases[0].request.case_id)]
    assert len(run_group(default_lm, job)) == 4 and not job.pending


def test_running_means_are_the_means_of_the_finished_edits(default_lm, cases):
    job = _job(cases[:5])
    run_group(default_lm, job)
    table = running_means(job.frame())
    frame = job.frame()
    assert list(table["editor"]) == ["ft-l", "ft-l+sss"] and list(table["edits"]) == [5, 5]
    for _, row in table.iterrows():
        mine = frame[frame["editor"] == row["editor"]]
        assert row["locality"] == pytest.approx(round(mine["locality"].mean(), 4))
        assert row["λ_max before"] == pytest.approx(round(mine["lambda_max_before"].mean(), 4))
        assert not math.isnan(row["reliability"])


def test_per_edit_rows_recompute_the_views_correlations(default_lm, cases):
    """The per-edit CSV holds every finished single edit with its measures and settings: the statistics of the
    view come back from it alone."""
    import io

    from app.hypothesis import hypothesis_rows, per_edit_rows
    from sss_core.evaluation.hypothesis import correlations
    job = _job(cases)
    while job.pending:
        run_group(default_lm, job)
    exported = per_edit_rows(job.frame(), job.settings())
    assert len(exported) == 14 and set(exported["settings"]) == set(job.settings().values())
    assert {"lambda_max_before", "knn_distance", "target_nll", "locality_drop", "prompt", "case_id"} <= set(exported)
    read_back = pd.read_csv(io.StringIO(exported.to_csv(index=False)))
    again = correlations(read_back, 200)
    shown = correlations(hypothesis_rows(job.frame()), 200)
    assert [(c.editor, c.x, c.y, c.control) for c in again] == [(c.editor, c.x, c.y, c.control) for c in shown]
    assert [c.rho for c in again] == pytest.approx([c.rho for c in shown], nan_ok=True)


def test_lambda_max_before_read_at_another_layer(default_lm, cases):
    from sss_core.sss import lambda_max
    job = HypothesisJob.start(cases[:5], [("ft-l", {})], seed=0, k=3, layer=2)
    run_group(default_lm, job)
    for record, case in zip(job.records, cases):
        assert record["lambda_max_before"] == pytest.approx(lambda_max(
            default_lm.model, default_lm.tok, [case.request.prompt], [case.request.target_new], layer=2).item())
        assert record["lambda_max_after"] is None  # read at the last layer: not comparable, left out
    assert job.settings()["ft-l"].endswith("; λ_max before read at layer 2")
    last = HypothesisJob.start(cases[:5], [("ft-l", {})], seed=0, k=3)
    run_group(default_lm, last)
    assert [r["lambda_max_before"] for r in last.records] != [r["lambda_max_before"] for r in job.records]
    assert all(r["lambda_max_after"] is not None for r in last.records)


def test_the_views_layer_box_runs_the_job_at_that_layer_and_links_it(app):
    from apptest_support import assert_ok
    app.session_state["cfg:ft-l:steps"] = 3
    app.switch_page("app/views/hypothesis.py").run()
    assert_ok(app)
    box = app.number_input(key="hyp_layer")
    assert box.value == 4 and box.max == 4  # the shipped model: 4 blocks, the last hidden states by default
    app.multiselect(key="hyp_editors").set_value(["ft-l"]).run()
    app.number_input(key="hyp_n").set_value(5).run()
    box.set_value(1).run()
    app.button(key="hyp_run").click().run()
    assert_ok(app)
    job = app.session_state["_hyp_job"]
    assert job.layer == 1 and len(job.records) == 5
    assert app.query_params["hlayer"] == "1"  # the link carries the layer

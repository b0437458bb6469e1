"""AppTest of the Hypothesis view: what it shows is what the bench's statistics give for the same edits."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from apptest_support import _no_umap_warmup, _restore_torch_threads, app, assert_ok  # noqa: F401 (fixtures)

FAST = 3  # FT-L steps: the plumbing and the statistics are under test, not the quality of the edits


def _run_world_edits(app, editors, n):
    for editor in editors:
        app.session_state[f"cfg:{editor}:steps"] = FAST
    app.switch_page("app/views/hypothesis.py").run()
    assert_ok(app)
    app.multiselect(key="hyp_editors").set_value(editors).run()
    app.number_input(key="hyp_n").set_value(n).run()
    app.button(key="hyp_run").click().run()
    assert_ok(app)
    return app.session_state["_hyp_job"]


def _shown(app, column):
    """The one table on the page with a column named ``column``, as the DataFrame it draws."""
    frames = [d.value for d in app.dataframe if column in d.value.columns]
    assert len(frames) == 1, [list(d.value.columns) for d in app.dataframe]
    return frames[0]


def test_rho_shown_equals_the_bench_statistics_of_the_same_edits(app):
    from app.hypothesis import hypothesis_rows, sss_effect_frame
    from sss_core.evaluation.hypothesis import correlations

    job = _run_world_edits(app, ["ft-l", "ft-l+sss"], 8)
    assert len(job.records) == 16 and not job.pending
    frame = job.frame()
    assert list(frame["editor"].unique()) == ["ft-l", "ft-l+sss"]
    assert frame["knn_distance"].notna().all() and frame["target_nll"].notna().all()  # the bench's measures
    expected = correlations(hypothesis_rows(frame), 1000)
    table = _shown(app, "ρ (Spearman)")
    assert len(table) == len(expected)
    for row, c in zip(table.itertuples(index=False), expected):
        assert row.editor == c.editor and row.verdict == c.verdict and row.edits == c.points
        for shown, value in ((row[2], c.rho), (row[3], c.lo), (row[4], c.hi)):
            assert (math.isnan(shown) and math.isnan(value)) or shown == pytest.approx(value, abs=1e-12)
    # each verdict line names the rho of the table, to 3 decimals, with the paper's sign beside it
    text = " ".join(m.value for m in app.markdown)
    for c in expected:
        if c.y == "locality_drop" and not math.isnan(c.rho):
            assert f"ρ = {c.rho:+.3f}" in text
    assert "paper predicts > 0" in text and "paper predicts < 0" in text
    # the paired effect of SSS: the bench report's paired differences of the same frame
    effects = _shown(app, "mean difference")
    pd.testing.assert_frame_equal(effects.reset_index(drop=True), sss_effect_frame(frame, 1000).reset_index(drop=True))
    assert set(effects["metric"]) >= {"reliability", "locality"}
    assert len(app.get("plotly_chart")) == 2  # the scatter and the paired effect


def test_stop_keeps_the_edits_made_and_continue_finishes_them(app):
    job = _run_world_edits(app, ["ft-l"], 5)
    assert len(job.records) == 5
    # a job stopped part way, as the Stop button's callback (state.stop_hypothesis) leaves it when pressed
    # during the fourth edit: the edits made so far are kept and shown
    job.records = job.records[:3]
    job.stopped = True
    app.run()
    assert_ok(app)
    assert any("Stopped after 3 of 5 edits" in w.value for w in app.warning)
    assert len(app.session_state["_hyp_job"].records) == 3
    app.button(key="hyp_continue").click().run()
    assert_ok(app)
    assert len(app.session_state["_hyp_job"].records) == 5 and not app.session_state["_hyp_job"].stopped


def test_a_bench_folder_without_measures_shows_lambda_only(app, tmp_path):
    from app.hypothesis import hypothesis_rows, read_folder
    from sss_core.evaluation.hypothesis import correlations

    cases = pd.read_csv("docs/results/v1/world-rank-one/cases.csv.gz")
    single = cases[cases["mode"] == "single"]
    single.groupby("editor").head(40).to_csv(tmp_path / "cases.csv", index=False)
    app.switch_page("app/views/hypothesis.py").run()
    app.radio(key="hyp_source").set_value("A bench run's results").run()
    app.text_input(key="hyp_folder_typed").input(str(tmp_path)).run()
    assert_ok(app)
    assert any("no k-NN distance" in i.value for i in app.info)
    frame, _ = read_folder(tmp_path)
    expected = correlations(hypothesis_rows(frame), 1000)
    assert {c.x for c in expected} == {"lambda_max_before"} and all(c.control is None for c in expected)
    table = _shown(app, "ρ (Spearman)")
    assert list(table["ρ (Spearman)"]) == pytest.approx([c.rho for c in expected], abs=1e-12)
    assert list(table["paper predicts"]) == ["> 0"] * len(expected)

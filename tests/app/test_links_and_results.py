"""Shared links restore every view (and re-run its results), say which values were invalid; results of a
failed or superseded run are marked; an edit that did not take is flagged; numbers, C and missing
values are shown one way everywhere; exported and report HTML works offline and has a title."""

from __future__ import annotations

import json
import re

import pytest

from apptest_support import APP, _no_umap_warmup, _restore_torch_threads, app, assert_ok, open_link, errors  # noqa: F401

FAST = 5


_open = open_link  # a new session opened from a link (apptest_support)


def _warnings(at) -> list[str]:
    return [w.value for w in at.warning]


def _infos(at) -> list[str]:
    return [i.value for i in at.info]


def _chart_json(at, i: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[i].proto.spec)


# --- links ---------------------------------------------------------------------------------------------

def test_invalid_link_values_are_reported_not_silently_replaced():
    at = _open({"editor": "bogus", "C": "5", "proj": "lda", "cs": "0.3,7"})
    assert not at.exception
    text = " ".join(_warnings(at))
    for bad in ("editor=bogus", "C=5", "proj=lda", "cs=0.3,7"):
        assert bad in text, text
    assert at.selectbox(key="editor").value == "ft-l+sss"  # the default, and the user is told so
    at.button(key="dismiss_link_problems").click().run()
    assert not any("could not be used" in w for w in _warnings(at))


def test_edit_link_round_trip_reruns_the_edit_and_keeps_projection_settings(app):
    app.session_state["cfg:ft-l:steps"] = FAST
    app.selectbox(key="editor").set_value("ft-l").run()
    app.button(key="run_edit").click().run()
    assert_ok(app)
    app.radio(key="proj_method").set_value("tsne").run()
    qp = dict(app.query_params)
    assert qp["run"] == "1" and qp["proj"] == "tsne" and qp["editor"] == "ft-l" and "C" not in qp
    again = _open({k: v for k, v in qp.items()})
    assert_ok(again)
    run = again.session_state["_run"]  # re-run from the link, same request and editor
    assert run.editor == "ft-l" and run.case.request == app.session_state["_run"].case.request
    assert again.radio(key="proj_method").value == "tsne"


def test_the_edit_pages_link_carries_the_projection_controls_it_shows(app):
    app.session_state["cfg:ft-l:steps"] = FAST
    app.selectbox(key="editor").set_value("ft-l").run()
    app.button(key="run_edit").click().run()
    app.number_input(key="proj_k").set_value(7).run()
    app.radio(key="proj_metric").set_value("euclidean").run()
    qp = dict(app.query_params)
    assert qp["pk"] == "7" and qp["pdist"] == "euclidean"
    again = _open(qp)
    assert_ok(again)
    assert again.number_input(key="proj_k").value == 7 and again.radio(key="proj_metric").value == "euclidean"


def test_a_link_to_the_projection_page_reruns_the_edit_and_restores_the_selection():
    from app.resources import preset_cases
    r = preset_cases()[2].request
    at = _open({"prompt": r.prompt, "subject": r.subject, "target": r.target_new, "editor": "ft-l",
                "proj": "pca", "sel": "0", "run": "1"}, page="app/views/projection.py")
    assert_ok(at)
    assert not any("No edit yet" in i for i in _infos(at))
    assert at.session_state["_run"].case.request == r
    assert len(at.get("plotly_chart")) == 1
    # the selection of the link: the nearest neighbours of point 0 (the edit prompt) are listed
    assert any("Nearest neighbours of" in m.value and r.prompt in m.value for m in at.markdown)


def test_compare_link_restores_both_editors_and_their_c_and_reruns():
    from app.resources import preset_cases
    r = preset_cases()[1].request
    at = _open({"prompt": r.prompt, "subject": r.subject, "target": r.target_new, "a": "ft-l", "b": "ft-l+sss",
                "cb": "0.35", "run": "1"}, page="app/views/compare.py")
    assert_ok(at)
    assert at.selectbox(key="cmp_editor_a").value == "ft-l" and at.selectbox(key="cmp_editor_b").value == "ft-l+sss"
    assert at.slider(key="cmp_c_b").value == pytest.approx(0.35)
    a, b = at.session_state["_compare"]
    assert (a.editor, b.editor, b.c) == ("ft-l", "ft-l+sss", pytest.approx(0.35))
    assert a.case.request == r
    qp = dict(at.query_params)
    assert qp["a"] == "ft-l" and qp["cb"] == "0.35" and qp["run"] == "1" and "ca" not in qp


def test_sweep_link_restores_editor_and_values_of_c():
    at = _open({"sweep": "ft-l+sss", "cs": "0,0.5"}, page="app/views/sweep.py")
    assert_ok(at)
    assert at.multiselect(key="sweep_cs").value == [0.0, 0.5]
    assert at.query_params["cs"] == "0,0.5" and at.query_params["sweep"] == "ft-l+sss"


def test_sequential_link_replays_its_history():
    from app.resources import preset_cases
    ids = [c.request.case_id for c in preset_cases()[:2]]
    at = _open({"seq": "ft-l", "steps": f"ft-l:{ids[0]},ft-l:{ids[1]}"}, page="app/views/sequential.py")
    assert_ok(at)
    history = at.session_state["_seq_history"]
    assert [s.request.case_id for s in history] == ids and {s.editor for s in history} == {"ft-l"}
    # an older link's preset ids replay; the page's link now carries each step's run record
    from sss_core.record import unpack_records
    assert "steps" not in at.query_params
    assert [r.case.request.case_id for r in unpack_records(at.query_params["seqrec"])] == ids


def test_results_folder_list_and_typed_path_do_not_snap_back(app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("runs/a", "runs/b"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "report.md").write_text(f"# report {name}\n")
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "report.md").write_text("# typed report\n")
    app.switch_page("app/views/results.py").run()
    app.selectbox(key="results_pick").set_value("runs/a").run()
    assert app.text_input(key="results_dir").value == "runs/a"
    app.text_input(key="results_dir").set_value(str(other)).run()
    assert app.text_input(key="results_dir").value == str(other)
    app.run()
    assert app.text_input(key="results_dir").value == str(other)
    assert any("typed report" in m.value for m in app.markdown)


# --- stale and unflagged results ----------------------------------------------------------------------

def test_failed_run_marks_the_results_below_as_an_earlier_run(app):
    app.session_state["cfg:ft-l:steps"] = FAST
    app.selectbox(key="editor").set_value("ft-l").run()
    app.button(key="run_edit").click().run()
    first = app.session_state["_run"]
    app.radio(key="req_source").set_value("Type a fact").run()
    app.text_input(key="typed_prompt").set_value(" ".join(["word"] * 2000)).run()
    app.text_input(key="typed_subject").set_value("word").run()
    app.button(key="run_edit").click().run()
    assert errors(app)  # the failure itself
    assert app.session_state["_run"] is first
    assert any(w.startswith("Earlier run") and "failed" in w for w in _warnings(app))
    # Projection shows the same run and says so too
    app.switch_page("app/views/projection.py").run()
    assert any(w.startswith("Earlier run") for w in _warnings(app))


def test_results_of_other_inputs_are_marked_as_an_earlier_run(app):
    app.session_state["cfg:ft-l:steps"] = FAST
    app.selectbox(key="editor").set_value("ft-l").run()
    app.button(key="run_edit").click().run()
    assert not any(i.startswith("Earlier run") for i in _infos(app))
    app.selectbox(key="editor").set_value("ft-l+sss").run()
    assert any(i.startswith("Earlier run") and "ft-l," in i for i in _infos(app))


def test_an_edit_that_did_not_take_is_flagged_and_its_lambda_has_no_arrow(app):
    app.selectbox(key="editor").set_value("ft-l").run()
    app.number_input(key="cfg:ft-l:steps").set_value(1).run()
    app.number_input(key="cfg:ft-l:lr").set_value(1e-9).run()
    app.button(key="run_edit").click().run()
    assert_ok(app)
    assert app.session_state["_run"].result.metrics["reliability"] < 1
    assert any("did not take" in w for w in _warnings(app))
    after = next(m for m in app.metric if m.label == "λ_max after (new target)")
    assert after.delta in (None, "")


def test_a_successful_edit_is_not_flagged_and_lambda_is_scientific(app):
    app.session_state["cfg:ft-l+sss:steps"] = 25
    app.button(key="run_edit").click().run()
    assert_ok(app)
    assert app.session_state["_run"].result.metrics["reliability"] == 1.0
    assert not any("did not take" in w for w in _warnings(app))
    cards = {m.label: m for m in app.metric}
    for label in ("λ_max before (new target)", "λ_max after (new target)"):
        assert re.fullmatch(r"\d\.\d\de[+-]\d\d", cards[label].value), cards[label].value
    assert re.fullmatch(r"[+-]\d\.\d\de[+-]\d\d", cards["λ_max after (new target)"].delta)


# --- presentation --------------------------------------------------------------------------------------

def test_lambda_format_keeps_three_significant_digits():
    from app.panels import fmt_lambda
    assert fmt_lambda(8.34e-6) == "8.34e-06" and fmt_lambda(1.21e-5) == "1.21e-05"
    assert fmt_lambda(float("nan")) == "n/a" and fmt_lambda(None) == "n/a"


def test_compare_never_gives_c_to_an_editor_without_one(app):
    app.session_state["cfg:ft-l:steps"] = FAST
    app.session_state["cfg:ft-l+sss:steps"] = FAST
    app.switch_page("app/views/compare.py").run()
    app.button(key="run_compare").click().run()
    assert_ok(app)
    names = [t["name"] for t in _chart_json(app)["data"]]
    assert names == ["A: ft-l", "B: ft-l+sss C=0.9"]
    summary = app.dataframe[0].value
    summary = getattr(summary, "data", summary)  # a Styler carries its frame in .data
    row = summary[summary["run"] == "A: ft-l"].iloc[0]
    assert row["C"] is None or row["C"] != row["C"]  # shown as n/a, not 0


def test_missing_values_are_spelled_one_way():
    import pandas as pd

    from app.panels import MISSING, show_frame  # noqa: F401 (show_frame uses MISSING for None and NaN)
    from app.figures import metrics_comparison_figure
    fig = metrics_comparison_figure({"A": {"reliability": 1.0, "portability": float("nan")}})
    assert fig.data[0].text[-1] == MISSING == "n/a"
    styler = pd.DataFrame({"x": [None, float("nan"), 1.0]}).style.format(na_rep=MISSING)
    assert styler.to_html().count("n/a") == 2


def test_sweep_lambda_axis_is_log_with_readable_ticks():
    from app.figures import sweep_figure
    fig = sweep_figure([0, 0.5, 1], {"reliability": [1, 1, 0]}, [2.110924, 0.1330746, 0.0005291305], 1.7)
    axis = fig.layout.yaxis2
    assert axis.type == "log"
    assert list(axis.ticktext) == ["1e-4", "1e-3", "1e-2", "1e-1", "1e0", "1e1"]
    assert all(re.fullmatch(r"[125]e-?\d", t) for t in axis.ticktext)


def test_upload_errors_name_the_file_not_a_server_path(app):
    app.radio(key="req_source").set_value("Upload EasyEdit JSON").run()
    app.file_uploader[0].set_value(("mine.json", b"{not json", "application/json")).run()
    msg = " ".join(errors(app))
    assert "mine.json is not JSON" in msg
    assert "/tmp" not in msg and "sss-upload-" not in msg


def test_exported_html_has_a_title_and_no_cdn():
    import plotly.graph_objects as go

    from app.figures import figure_html
    page = figure_html(go.Figure(go.Bar(x=[1], y=[2])), "SSS Lab: projection, ft-l")
    assert "<title>SSS Lab: projection, ft-l</title>" in page
    assert not re.search(r"<script[^>]*\bsrc=", page)  # plotly.js inside, nothing fetched


def test_results_view_draws_report_plots_with_the_apps_own_plotly(app, tmp_path):
    """A report's HTML plots (a CDN page as in docs/results/v1/world, and a page beside plotly.min.js) are
    drawn by the app itself, not in a frame that would have to fetch plotly.js."""
    import plotly.graph_objects as go

    from sss_core.evaluation.report import write_html_page
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0.5, 0.9], name="ft-l+sss: Locality"))
    write_html_page(fig, tmp_path / "c_sweep.html", "SSS bench: ablation on C (world)", "directory")
    (tmp_path / "old.html").write_text(fig.to_html(include_plotlyjs="cdn"))
    app.switch_page("app/views/results.py").run()
    app.text_input(key="results_dir").set_value(str(tmp_path)).run()
    assert_ok(app)
    charts = [_chart_json(app, i) for i in range(len(app.get("plotly_chart")))]
    assert [c["data"][0]["name"] for c in charts] == ["ft-l+sss: Locality", "ft-l+sss: Locality"]
    assert not app.get("iframe")


# --- sequential ROME: updates larger than the weight ----------------------------------------------------

def test_sequential_warns_when_an_update_outgrows_the_weight(app):
    app.switch_page("app/views/sequential.py").run()
    app.selectbox(key="seq_editor").set_value("rome").run()
    app.button(key="seq_apply").click().run()
    assert_ok(app)
    (step,) = app.session_state["_seq_history"]
    norms = step.edit.delta_norms()
    lm = __import__("app.resources", fromlist=["get_model"]).get_model("default")
    params = dict(lm.model.named_parameters())
    ratio = max(v / params[k].detach().float().norm().item() for k, v in norms.items())
    warned = [w for w in _warnings(app) if "larger than the weight" in w]
    assert (ratio > 1) == bool(warned)
    assert ratio > 1  # ROME's default first update on the default preset (docs/editors.md)
    assert "edit(s) 1 (rome)" in warned[0]


def test_sequential_has_no_norm_warning_for_small_updates(app):
    app.session_state["cfg:ft-l:steps"] = FAST
    app.switch_page("app/views/sequential.py").run()
    app.selectbox(key="seq_editor").set_value("ft-l").run()
    app.button(key="seq_apply").click().run()
    assert_ok(app)
    assert not any("larger than the weight" in w for w in _warnings(app))

"""AppTest for every other view: Projection, Compare, C sweep, Sequential, Results, About."""

from __future__ import annotations

import json

import pytest

from apptest_support import _no_umap_warmup, _restore_torch_threads, app, assert_ok, errors  # noqa: F401 (fixtures)

FAST = 5  # optimisation steps where only the plumbing is under test, not the edit's quality


def _fast(app, *editors: str) -> None:
    """Fewer FT-L steps, as if set in the Edit page's advanced expander."""
    for editor in editors:
        app.session_state[f"cfg:{editor}:steps"] = FAST


PAGES = ["app/views/projection.py", "app/views/compare.py", "app/views/sweep.py", "app/views/sequential.py",
         "app/views/results.py", "app/views/about.py"]


@pytest.mark.parametrize("page", PAGES)
def test_every_view_loads_without_error(app, page):
    app.switch_page(page).run()
    assert_ok(app)
    assert app.title


def test_projection_after_an_edit(app):
    app.switch_page("app/views/projection.py").run()
    assert any("No edit yet" in i.value for i in app.info)
    app.switch_page("app/views/edit.py").run()
    app.number_input(key="cfg:ft-l+sss:steps").set_value(FAST).run()
    app.button(key="run_edit").click().run()
    assert_ok(app)
    app.switch_page("app/views/projection.py").run()
    assert_ok(app)
    assert len(app.get("plotly_chart")) == 1
    run = app.session_state["_run"]
    emb = run.embeddings["last"]
    assert "background" in emb.groups and "rewrite" in emb.groups and len(emb.sentences) >= 15
    # t-SNE and the mean pooling refit; settings survive the page switch
    app.radio(key="proj_method").set_value("tsne").run()
    assert_ok(app)
    app.radio(key="proj_pooling").set_value("mean").run()
    assert_ok(app)
    cached = app.session_state["_projections"]
    assert {(k[1], k[2]) for k in cached} >= {("pca", "last"), ("tsne", "last"), ("tsne", "mean")}


def test_compare_two_editors(app):
    _fast(app, "ft-l", "ft-l+sss")
    app.switch_page("app/views/compare.py").run()
    assert app.selectbox(key="cmp_editor_a").value == "ft-l"
    assert app.selectbox(key="cmp_editor_b").value == "ft-l+sss"
    app.button(key="run_compare").click().run()
    assert_ok(app)
    a, b = app.session_state["_compare"]
    assert (a.editor, b.editor) == ("ft-l", "ft-l+sss")
    assert a.case.request == b.case.request
    assert len(app.dataframe) >= 3  # summary + one probe table per side


def test_compare_one_editor_at_two_values_of_c(app):
    _fast(app, "ft-l+sss")
    app.switch_page("app/views/compare.py").run()
    app.selectbox(key="cmp_editor_a").set_value("ft-l+sss").run()
    app.slider(key="cmp_c_a").set_value(0.2)
    app.slider(key="cmp_c_b").set_value(0.9).run()
    app.button(key="run_compare").click().run()
    assert_ok(app)
    a, b = app.session_state["_compare"]
    assert (a.c, b.c) == (pytest.approx(0.2), pytest.approx(0.9))


def test_c_sweep(app):
    _fast(app, "ft-l+sss")
    app.switch_page("app/views/sweep.py").run()
    app.multiselect(key="sweep_cs").set_value([0.0, 1.0]).run()
    app.button(key="run_sweep").click().run()
    assert_ok(app)
    points = app.session_state["_sweep"].points
    assert [p.c for p in points] == [0.0, 1.0]
    # C = 1 keeps only the SSS term: it writes the fact no better than plain FT-L
    assert points[1].metrics["reliability"] <= points[0].metrics["reliability"]
    assert len(app.get("plotly_chart")) == 1


def test_sequential_apply_undo_reset(app):
    import torch

    from app.resources import get_model
    model = get_model("default").model
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    app.switch_page("app/views/sequential.py").run()
    app.selectbox(key="seq_editor").set_value("ft-l").run()
    app.button(key="seq_apply").click().run()
    assert_ok(app)
    app.number_input(key="seq_k").set_value(2).run()
    app.button(key="seq_apply_k").click().run()
    assert_ok(app)
    history = app.session_state["_seq_history"]
    assert [s.n for s in history] == [1, 2, 3]
    assert all(s.metrics for s in history)
    assert all(0 <= s.locality_fixed <= 1 and 0 <= s.retention <= 1 for s in history)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())  # never left edited
    app.button(key="seq_undo").click().run()
    assert [s.n for s in app.session_state["_seq_history"]] == [1, 2]
    app.button(key="seq_reset").click().run()
    assert app.session_state["_seq_history"] == []
    assert_ok(app)


def test_results_view_reads_whatever_is_there(app, tmp_path):
    (tmp_path / "results.jsonl").write_text(
        json.dumps({"editor": "ft-l", "case_id": "w1", "metrics": {"reliability": 1.0, "locality": 0.9}}) + "\n" +
        json.dumps({"editor": "ft-l+sss", "case_id": "w1", "metrics": {"reliability": 1.0, "locality": 1.0}}) + "\n" +
        '{"editor": "ft-l", "cut off mid-li\n')
    (tmp_path / "report.md").write_text("# Bench report\n\n| editor | reliability |\n|---|---|\n| ft-l | 1.0 |\n")
    (tmp_path / "table1.csv").write_text("editor,reliability\nft-l,1.0\n")
    (tmp_path / "sweep.html").write_text("<html><body><div>plot</div></body></html>")
    (tmp_path / "broken.csv").write_bytes(b"\x00\x01\x02")
    app.switch_page("app/views/results.py").run()
    app.text_input(key="results_dir").input(str(tmp_path)).run()
    assert not app.exception
    assert any("skipped 1 unreadable line" in w.value for w in app.warning)
    assert any("Bench report" in m.value for m in app.markdown)
    assert len(app.dataframe) >= 3
    app.text_input(key="results_dir").input(str(tmp_path / "missing")).run()
    assert not app.exception and any("not a folder" in e for e in errors(app))


def test_about_explains_lambda_c_and_metrics(app):
    app.switch_page("app/views/about.py").run()
    assert_ok(app)
    text = " ".join(m.value for m in app.markdown)
    assert "λ_max" in " ".join(h.value for h in app.header)
    assert "C = 0.9" in text and "sparse" in text
    formulas = " ".join(x.value for x in app.latex)
    assert r"\lambda_{\max}" in formulas and "L_{\\mathrm{all}}" in formulas

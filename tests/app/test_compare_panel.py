"""AppTest of what Compare and Projection show about sparsity: the paired differences are A minus B of the
runs themselves, the same edit is said in words, the colour bar names its unit, the selection survives a
change of projection method, and the 2-D moves are checked against the full-space moves."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from apptest_support import _no_umap_warmup, _restore_torch_threads, app, assert_ok  # noqa: F401 (fixtures)

FAST = 5


def _compare(app, a, b):
    for editor in {a, b}:
        app.session_state[f"cfg:{editor}:steps"] = FAST
    app.switch_page("app/views/compare.py").run()
    app.selectbox(key="cmp_editor_a").set_value(a).run()
    app.selectbox(key="cmp_editor_b").set_value(b).run()
    app.button(key="run_compare").click().run()
    assert_ok(app)
    return app.session_state["_compare"]


def _table(app, column):
    frames = [d.value for d in app.dataframe if column in d.value.columns]
    assert len(frames) == 1
    return frames[0]


def test_paired_rows_are_a_minus_b_of_the_runs(app):
    from sss_core import analysis

    a, b = _compare(app, "ft-l", "ft-l+sss")
    shown = _table(app, "ΔP(old) A − B")
    assert list(shown["prompt"]) == [r.prompt for r in a.rows]
    for row, ra, rb in zip(shown.itertuples(index=False), a.rows, b.rows):
        assert ra.prompt == rb.prompt
        if ra.old is None:
            assert math.isnan(row[5])
            continue
        da, db = ra.p_old_after - ra.p_old_before, rb.p_old_after - rb.p_old_before
        assert (row[3], row[4], row[5]) == pytest.approx((da, db, da - db), abs=1e-12)
        assert row[6] == pytest.approx((ra.p_new_after - ra.p_new_before) - (rb.p_new_after - rb.p_new_before),
                                       abs=1e-12)
    # the norms and the cosine of the weight deltas are the core's
    norms = _table(app, "cosine")
    per = analysis.delta_cosine(a, b)
    for row in norms.itertuples(index=False):
        assert row[1] == pytest.approx(a.delta_norms[row[0]]) and row[2] == pytest.approx(b.delta_norms[row[0]])
        assert row[3] == pytest.approx(per[row[0]])
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["cos(ΔW A, ΔW B)"] != "n/a"
    # both trajectories are drawn: one edit-loss line per run, and the SSS term of the run that has it
    charts = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    traj = next(c for c in charts if c["layout"].get("title", {}).get("text", "").startswith("Optimisation"))
    names = [t["name"] for t in traj["data"]]
    assert sum("edit loss" in n for n in names) == 2 and any("SSS term" in n for n in names)
    assert len(_values(traj["data"][0]["y"])) == len(a.trajectory) == FAST


def test_the_same_edit_twice_is_said_in_words(app):
    a, b = _compare(app, "ft-l", "ft-l")
    assert [r.top1_after for r in a.rows] == [r.top1_after for r in b.rows]
    assert any("A and B made the same edit" in s.value for s in app.success)
    shown = _table(app, "ΔP(old) A − B")
    assert np.nanmax(np.abs(shown["ΔP(old) A − B"].to_numpy(float))) <= 1e-6


def test_joint_projection_fits_both_runs_once(app):
    a, b = _compare(app, "ft-l", "ft-l+sss")
    cached = [k for k in app.session_state["_projections"] if k[0] == "compare"]
    assert cached == [("compare", a.run_id, b.run_id, "pca", "last")]
    proj = app.session_state["_projections"][cached[0]]
    n = len(a.embeddings["last"].sentences)
    assert proj.before.shape == (2 * n, 2)  # one fit over A's and B's before and after
    charts = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    joint = next(c for c in charts if "xaxis2" in c["layout"] and c["layout"]["xaxis"].get("title"))
    assert joint["layout"]["xaxis"]["title"]["text"].startswith("PCA 1")


def _edit_then_projection(app):
    app.session_state["cfg:ft-l+sss:steps"] = FAST
    app.button(key="run_edit").click().run()
    assert_ok(app)
    app.switch_page("app/views/projection.py").run()
    assert_ok(app)
    return app.session_state["_run"]


def _values(x) -> list:
    """A plotly JSON array: a list, or numpy's typed array as plotly writes it ({"dtype", "bdata"} in base64)."""
    if isinstance(x, dict) and "bdata" in x:
        import base64
        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]).tolist()
    return list(x)


def _projection_spec(app):
    return json.loads(app.get("plotly_chart")[0].proto.spec)


def test_colour_bar_names_the_unit(app):
    from sss_core.sparsity import LAMBDA_UNIT

    run = _edit_then_projection(app)
    assert run.sparsity and len(run.sparsity) == len(run.embeddings["last"].sentences)
    expected = {"lambda_max": LAMBDA_UNIT, "knn": "1 − cos", "damage": "probability", "moved": "hidden-state units"}
    for by, unit in expected.items():
        app.radio(key="proj_colour").set_value(by).run()
        assert_ok(app)
        layout = _projection_spec(app)["layout"]
        assert unit in layout["coloraxis"]["colorbar"]["title"]["text"]
        assert layout["xaxis"]["title"]["text"].startswith("PCA 1") and "variance" in layout["xaxis"]["title"]["text"]
    # lambda_max is coloured on a log scale: the colour values are log10 of the core's lambda_max after
    app.radio(key="proj_colour").set_value("lambda_max").run()
    after = next(t for t in _projection_spec(app)["data"] if t.get("meta", {}).get("when") == "after"
                 and t.get("meta", {}).get("colour") == "λ_max")
    idx = _values(after["customdata"])
    assert _values(after["marker"]["color"]) == pytest.approx([math.log10(run.sparsity[i].lambda_max_after)
                                                               for i in idx])
    app.number_input(key="proj_k").set_value(3).run()
    app.radio(key="proj_metric").set_value("euclidean").run()
    app.radio(key="proj_colour").set_value("knn").run()
    assert "k = 3" in _projection_spec(app)["layout"]["coloraxis"]["colorbar"]["title"]["text"]


def test_selection_and_its_neighbours_survive_a_change_of_method(app):
    run = _edit_then_projection(app)
    app.session_state["proj_selected"] = 0  # as a click on the edit prompt leaves it
    app.number_input(key="proj_k").set_value(4).run()
    for method in ("pca", "tsne"):
        app.radio(key="proj_method").set_value(method).run()
        assert_ok(app)
        assert app.session_state["proj_selected"] == 0
        data = _projection_spec(app)["data"]
        assert any(t.get("meta", {}).get("selected") == 0 for t in data)
        rings = [t for t in data if t.get("meta", {}).get("neighbours")]
        assert sorted(len(_values(t["x"])) for t in rings) == [4, 4]
        assert any(f"Nearest neighbours of** “{run.embeddings['last'].sentences[0]}”: the 4 nearest" in m.value
                   for m in app.markdown)
    # how far the 2-D arrows follow the full-space moves is said on screen
    text = " ".join([c.value for c in app.caption] + [w.value for w in app.warning])
    assert "Spearman ρ = " in text


def test_move_agreement_flags_what_the_picture_exaggerates():
    from app.panels import move_agreement

    before = np.zeros((6, 2))
    moved = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    after = np.column_stack([moved, np.zeros(6)])
    rho, exaggerated, hidden = move_agreement(before, after, moved)
    assert rho == pytest.approx(1.0) and exaggerated == [] and hidden == []
    after[0, 0] = 10.0  # the sentence that moved least is drawn moving most
    rho, exaggerated, hidden = move_agreement(before, after, moved)
    assert rho < 0.5 and exaggerated == [0]


def test_neighbour_list_and_rings_follow_the_chosen_distance(app):
    """The neighbours listed and ringed are those of the kNN distance picked above the plot, with their
    distances before and after in that distance."""
    from sss_core.analysis import neighbour_table

    run = _edit_then_projection(app)
    emb = run.embeddings["last"]
    app.session_state["proj_selected"] = 0
    app.number_input(key="proj_k").set_value(4).run()
    for metric, words in (("cosine", "1 − cos"), ("euclidean", "euclidean")):
        app.radio(key="proj_metric").set_value(metric).run()
        assert_ok(app)
        expected = pd.DataFrame(neighbour_table(emb, 0, 4, metric))
        shown = [d.value for d in app.dataframe if "distance after" in d.value.columns]
        assert len(shown) == 1
        pd.testing.assert_frame_equal(shown[0].reset_index(drop=True), expected, check_dtype=False)
        assert any(f"(full space, {words}, the kNN distance chosen above" in m.value for m in app.markdown)
        rings = {t["meta"]["neighbours"]: t for t in _projection_spec(app)["data"]
                 if t.get("meta", {}).get("neighbours")}
        assert len(_values(rings["before"]["x"])) == 4


def test_a_pair_that_scores_alike_without_the_same_edit_is_said(app):
    """ft-l and ft-l+sss on the default preset: the same top-1 and score on every probe, different weight
    deltas; Compare says they score alike, with the cosine of their deltas (not that they made the same edit)."""
    from app.panels.compare import delta_cosine_of

    a, b = _compare(app, "ft-l", "ft-l+sss")
    assert [r.score for r in a.rows] == [r.score for r in b.rows]  # what this pair gives here (measured)
    assert [r.top1_after for r in a.rows] == [r.top1_after for r in b.rows]
    cosine = delta_cosine_of(a, b)[1]
    assert cosine < 0.9999
    assert not any("A and B made the same edit" in s.value for s in app.success)
    assert [m.value for m in app.info if m.value.startswith("A and B score alike")] == [
        f"A and B score alike: the same top-1 prediction and the same score on all {len(a.rows)} probes, though "
        f"not the same edit: their probabilities differ (cosine {cosine:.4f} between their weight deltas). The "
        "Hypothesis view counts such a pair as edited alike."]

"""The Projection view's case-study controls, read back from the page: UMAP/t-SNE parameters (shown with the
values used), text labels, the search that dims the other sentences, re-projecting a subset and going back,
the sentences table that follows the selected point, the raw vectors download, and a link that carries every
control (k, kNN distance and the new ones) and lists the invalid ones."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from apptest_support import APP, _no_umap_warmup, _restore_torch_threads, assert_ok, open_link  # noqa: F401 (fixtures)
from sss_core.analysis import GROUP_LABELS
from sss_core.embeddings import nearest_neighbours
from sss_core.projection import project

PAGE = "app/views/projection.py"


@pytest.fixture(scope="module")
def melbourne():
    """The world preset "Melbourne is a city in" -> "United States" (its 43 sentences include two with "capital")."""
    from app.resources import preset_cases
    r = preset_cases()[2].request
    assert r.prompt == "Melbourne is a city in"
    return {"prompt": r.prompt, "subject": r.subject, "target": r.target_new, "editor": "ft-l", "run": "1"}


def _spec(at) -> dict:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def _values(x) -> list:
    """A plotly JSON array as a list: plain, or numpy's typed array as plotly writes it ({"dtype", "bdata"})."""
    if isinstance(x, dict) and "bdata" in x:
        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]).tolist()
    return list(x)


def _captions(at) -> list[str]:
    return [c.value for c in at.caption]


def _point_traces(spec) -> list[dict]:
    return [t for t in spec["data"] if (t.get("meta") or {}).get("when")]


def test_a_link_sets_every_projection_control_and_the_page_shows_what_they_did(melbourne):
    at = open_link({**melbourne, "proj": "tsne", "pperp": "6", "pnn": "30", "pmd": "0.3", "pk": "3",
                    "pdist": "euclidean", "plabels": "1", "pfind": "capital", "sel": "0"}, page=PAGE)
    assert_ok(at)
    # the controls read back
    assert at.radio(key="proj_method").value == "tsne"
    assert at.number_input(key="proj_perplexity").value == 6.0
    assert at.number_input(key="proj_k").value == 3 and at.radio(key="proj_metric").value == "euclidean"
    assert at.toggle(key="proj_labels").value is True and at.text_input(key="proj_search").value == "capital"
    assert at.session_state["proj_n_neighbors"] == 30 and at.session_state["proj_min_dist"] == 0.3
    run = at.session_state["_run"]
    emb = run.embeddings["last"]
    n = len(emb.sentences)
    assert n == 43
    # the fit used perplexity 6, said on screen and on the axis; the same numbers as the core gives
    assert "t-SNE fitted with perplexity = 6 (43 sentences, before and after)." in _captions(at)
    spec = _spec(at)
    assert spec["layout"]["xaxis"]["title"]["text"] == "t-SNE 1 (perplexity = 6)"
    proj = at.session_state["_projections"][(run.run_id, "tsne", "last")]
    assert proj.parameters == {"perplexity": 6.0}
    assert at.number_input(key="proj_perplexity").disabled is False
    assert not any(c.startswith("Not used") for c in _captions(at))
    # t-SNE's axes have no units: no one scale for both (it squeezed the points into a strip); each axis spans
    # the points and 6% of their extent either side
    assert "scaleanchor" not in spec["layout"]["yaxis"]
    xy = np.concatenate([proj.before, proj.after])
    for axis, j in (("xaxis", 0), ("yaxis", 1)):
        lo, hi, span = xy[:, j].min(), xy[:, j].max(), np.ptp(xy[:, j])
        assert spec["layout"][axis]["range"] == pytest.approx([lo - 0.06 * span, hi + 0.06 * span])
    np.testing.assert_array_equal(proj.after, project(emb.before, emb.after, "tsne", perplexity=6).after)
    # the search: two matches, counted; every other point dimmed
    matches = [i for i, s in enumerate(emb.sentences) if "capital" in s.lower()]
    assert [emb.sentences[i] for i in matches] == ["The capital of the country where Melbourne lies is",
                                                   "Cairo is the capital of"]
    assert "2 of 43 sentences match “capital”; the others are dimmed." in _captions(at)
    traces = _point_traces(spec)
    assert sorted(i for t in traces for i in t["customdata"]) == sorted(list(range(n)) * 2)
    for t in traces:
        assert t["marker"]["opacity"] == [1.0 if i in matches else 0.15 for i in t["customdata"]]
    # the arrows of the other sentences are dimmed too (an arrow ends at its sentence's after point)
    at_point = {(float(x), float(y)): i for i, (x, y) in enumerate(proj.after)}
    arrows = {at_point[(a["x"], a["y"])]: a["opacity"] for a in spec["layout"]["annotations"] if a.get("showarrow")}
    assert set(matches) <= set(arrows) and len(arrows) > 30
    assert all((opacity == 0.15) == (i not in matches) for i, opacity in arrows.items()), arrows
    # the legend is not dimmed: each dimmed point trace leaves the legend to a twin at full opacity, same name
    twins = {t["name"]: t for t in spec["data"] if "legend" in (t.get("meta") or {})}
    assert sorted(twins) == sorted({t["name"] for t in traces})  # one entry per group, as without a search
    assert all(t.get("showlegend") is False for t in traces)
    for t in twins.values():
        assert t["x"] == [None] and t["legendrank"] == 999 and "opacity" not in t["marker"]
    # the text labels: with a search, only the matches, each off its after point, in the plot's range
    labels = [t for t in spec["data"] if (t.get("meta") or {}).get("labels") == "sentence"]
    assert len(labels) == 1 and labels[0]["mode"] == "text"
    # which matches fit depends on the fitted layout (t-SNE's coordinates move with the machine's float
    # rounding): every label is a match's, the edit's own first, and the caption counts the ones placed
    labelled = labels[0]["meta"]["sentences"]
    assert labelled and set(labelled) <= set(matches) and labelled == sorted(labelled)
    names = dict(zip(matches, ["The capital of the country …", "Cairo is the capital of"]))
    assert labels[0]["text"] == [names[i] for i in labelled]
    placed = f"Text labels: {len(labelled)} of 2 sentences matching the search"
    assert any(c.startswith(placed) for c in _captions(at))
    matches = labelled  # the placement checks below, for the labels drawn
    assert set(labels[0]["textposition"]) <= {"top center", "bottom center", "middle right", "middle left",
                                              "top right", "top left", "bottom right", "bottom left"}
    (x0, x1), (y0, y1) = spec["layout"]["xaxis"]["range"], spec["layout"]["yaxis"]["range"]
    for i, x, y in zip(matches, _values(labels[0]["x"]), _values(labels[0]["y"])):
        assert (x, y) != tuple(proj.after[i]) and x0 < x < x1 and y0 < y < y1
    # the selection of the link (point 0) with k = 3 euclidean neighbours: ringed, listed and marked in the table
    near_before = [i for i, _ in nearest_neighbours(emb.before, 0, 3, "euclidean")]
    near_after = [i for i, _ in nearest_neighbours(emb.after, 0, 3, "euclidean")]
    rings = {t["meta"]["neighbours"]: t for t in spec["data"] if "neighbours" in (t.get("meta") or {})}
    assert _values(rings["before"]["x"]) == proj.before[near_before, 0].tolist()
    assert _values(rings["after"]["x"]) == proj.after[near_after, 0].tolist()
    assert any(m.value.startswith("**Nearest neighbours of** “Melbourne is a city in”: the 3 nearest (full space, "
                                  "euclidean,") for m in at.markdown)
    table = at.dataframe[0].value
    assert table["#"].iloc[0] == 0 and table["in the plot"].iloc[0] == "selected"
    for i in set(near_before) | set(near_after):
        when = {(True, True): "both", (True, False): "before", (False, True): "after"}[i in near_before,
                                                                                      i in near_after]
        expected = f"near {when}" + (", match" if i in matches else "")
        assert table.loc[table["#"] == i, "in the plot"].item() == expected
    # the link written back carries the same values
    qp = dict(at.query_params)
    assert {k: qp[k] for k in ("proj", "pperp", "pnn", "pmd", "pk", "pdist", "plabels", "pfind", "sel")} == {
        "proj": "tsne", "pperp": "6", "pnn": "30", "pmd": "0.3", "pk": "3", "pdist": "euclidean", "plabels": "1",
        "pfind": "capital", "sel": "0"}


def test_invalid_projection_values_in_a_link_are_listed_and_left_at_their_defaults(melbourne):
    at = open_link({**melbourne, "pk": "99", "pdist": "manhattan", "pnn": "1", "pmd": "far", "pperp": "500",
                    "plabels": "yes", "piso": "4"}, page=PAGE)
    assert_ok(at)
    text = " ".join(w.value for w in at.warning)
    for line in ("pk=99: '99' is not a number of neighbours (a whole number from 1 to 30)",
                 "pdist=manhattan: 'manhattan' is not a distance (choose from euclidean, cosine)",
                 "pnn=1: UMAP n_neighbors must be a whole number from 2 to 200; got 1",
                 "pmd=far: min_dist must be a number; got 'far'",
                 "pperp=500: t-SNE perplexity must be a number from 2 to 100; got 500.0",
                 "piso=4: '4' is not a list of at least two point numbers (e.g. 0,4,7)",
                 "plabels=yes: 'yes' is not on or off (1 or 0)"):
        assert f"- {line}" in text, (line, text)
    assert at.number_input(key="proj_k").value == 5 and at.radio(key="proj_metric").value == "cosine"
    assert at.session_state["proj_n_neighbors"] == 15 and at.session_state["proj_min_dist"] == 0.1
    assert at.toggle(key="proj_labels").value is False
    assert not any("Re-projection" in i.value for i in at.info)


def test_umap_parameters_change_the_fit_and_are_shown(melbourne):
    at = open_link({**melbourne, "proj": "umap", "pnn": "5", "pmd": "0.5"}, page=PAGE)
    assert_ok(at)
    assert at.number_input(key="proj_n_neighbors").value == 5 and at.number_input(key="proj_min_dist").value == 0.5
    assert "UMAP fitted with n_neighbors = 5, min_dist = 0.5 (43 sentences, before and after)." in _captions(at)
    assert _spec(at)["layout"]["xaxis"]["title"]["text"] == "UMAP 1 (n_neighbors = 5, min_dist = 0.5)"
    at.number_input(key="proj_n_neighbors").set_value(20).run()
    assert_ok(at)
    assert "UMAP fitted with n_neighbors = 20, min_dist = 0.5 (43 sentences, before and after)." in _captions(at)
    run = at.session_state["_run"]
    assert at.session_state["_projections"][(run.run_id, "umap", "last")].parameters == {"n_neighbors": 20,
                                                                                         "min_dist": 0.5}
    assert dict(at.query_params)["pnn"] == "20"


def test_re_project_the_matches_then_go_back_to_all(melbourne):
    at = open_link({**melbourne, "pfind": "is a city in", "sel": "5"}, page=PAGE)
    assert_ok(at)
    emb = at.session_state["_run"].embeddings["last"]
    subset = [i for i, s in enumerate(emb.sentences) if "is a city in" in s]
    assert subset == [0, 3, 4, 5, 6, 7, 8, 9, 10, 16, 25]
    assert "11 of 43 sentences match “is a city in”; the others are dimmed." in _captions(at)
    at.button(key="proj-page-iso-find").click().run()
    assert_ok(at)
    assert [i.value for i in at.info if i.value.startswith("Re-projection")] == [
        "Re-projection of 11 sentences (of 43): PCA fitted on these sentences only, before and after. Neighbours, "
        "rings and the table are among them; colours keep the values measured over all 43."]
    spec = _spec(at)
    traces = _point_traces(spec)
    assert sorted(i for t in traces if t["meta"]["when"] == "after" for i in t["customdata"]) == subset
    refit = project(emb.before[subset], emb.after[subset], "pca")
    xs = {i: x for t in traces if t["meta"]["when"] == "after" for i, x in zip(t["customdata"], _values(t["x"]))}
    assert [xs[i] for i in subset] == refit.after[:, 0].tolist()
    table = at.dataframe[0].value
    assert table["#"].tolist() == [5] + [i for i in subset if i != 5]  # the selected sentence first
    assert table["in the plot"].iloc[0] == "selected, match"
    assert dict(at.query_params)["piso"] == ",".join(map(str, subset))
    at.button(key="proj-page-iso-back").click().run()
    assert_ok(at)
    assert not any(i.value.startswith("Re-projection") for i in at.info)
    assert len(at.dataframe[0].value) == 43 and "piso" not in dict(at.query_params)
    assert sorted(i for t in _point_traces(_spec(at)) if t["meta"]["when"] == "after" for i in t["customdata"]) \
        == list(range(43))


def test_a_lassoed_subset_is_re_projected_from_a_link_and_the_table_follows_the_selection(melbourne):
    at = open_link({**melbourne, "piso": "12,38,1,2,0"}, page=PAGE)
    assert_ok(at)
    assert any(i.value.startswith("Re-projection of 5 sentences (of 43)") for i in at.info)
    assert at.dataframe[0].value["#"].tolist() == [0, 1, 2, 12, 38]
    # a point clicked in the plot (the selection a click makes): its row first and marked, its point ringed
    at.session_state["proj_selected"], at.session_state["_proj_lasso"] = 12, [12]
    at.run()
    assert_ok(at)
    table = at.dataframe[0].value
    assert table["#"].iloc[0] == 12 and table["in the plot"].iloc[0] == "selected"
    spec = _spec(at)
    highlight = [t for t in spec["data"] if "selected" in (t.get("meta") or {})]
    after = {i: (x, y) for t in _point_traces(spec) if t["meta"]["when"] == "after"
             for i, x, y in zip(t["customdata"], _values(t["x"]), _values(t["y"]))}
    assert len(highlight) == 1 and (highlight[0]["x"][0], highlight[0]["y"][0]) == after[12]
    # a lasso of three of them re-projects those three
    at.session_state["_proj_lasso"] = [1, 2, 12]
    at.run()
    at.button(key="proj-page-iso-lasso").click().run()
    assert_ok(at)
    assert any(i.value.startswith("Re-projection of 3 sentences (of 43)") for i in at.info)
    assert sorted(at.dataframe[0].value["#"].tolist()) == [1, 2, 12]


def test_raw_embedding_vectors_download_holds_the_numbers_and_the_run_record(melbourne):
    from app.panels.projection import embedding_vectors_npz
    from sss_core.record import RunRecord

    at = open_link({**melbourne, "proj": "pca"}, page=PAGE)
    assert_ok(at)
    buttons = [b.proto.label for b in at.get("download_button")]
    assert "Embedding vectors (.npz)" in buttons
    run = at.session_state["_run"]
    proj = at.session_state["_projections"][(run.run_id, "pca", "last")]
    data = np.load(io.BytesIO(embedding_vectors_npz(run, "last", proj)))  # no pickle needed
    emb = run.embeddings["last"]
    np.testing.assert_array_equal(data["before"], emb.before)
    np.testing.assert_array_equal(data["after"], emb.after)
    assert data["before"].dtype == emb.before.dtype and data["before"].shape == (43, emb.before.shape[1])
    assert data["sentence"].tolist() == list(emb.sentences) and data["group_key"].tolist() == list(emb.groups)
    assert data["group"].tolist() == [GROUP_LABELS[g] for g in emb.groups] and data["group"][0] == "edit prompt"
    assert data["projected"].tolist() == [True] * 43 and str(data["projection_requested"]) == "pca"
    assert str(data["pooling"]) == "last" and str(data["run_id"]) == run.run_id
    assert str(data["record_digest"]) == run.record.digest()
    assert RunRecord.from_dict(json.loads(str(data["record_json"]))).digest() == run.record.digest()
    assert str(data["projection_method"]) == "pca" and json.loads(str(data["projection_parameters"])) == {}
    np.testing.assert_array_equal(data["xy_after"], proj.after)
    mean = np.load(io.BytesIO(embedding_vectors_npz(run, "mean")))
    np.testing.assert_array_equal(mean["after"], run.embeddings["mean"].after)
    assert str(mean["pooling"]) == "mean" and "xy_after" not in mean.files


def test_a_re_projection_that_falls_back_to_pca_says_pca_everywhere_and_marks_the_perplexity_unused(melbourne):
    at = open_link({**melbourne, "proj": "tsne", "pperp": "6", "piso": "0,1,2,3,4,5,6,7"}, page=PAGE)
    assert_ok(at)
    infos = [i.value for i in at.info]
    assert "t-SNE needs at least 15 sentences to say anything about neighbourhoods; there are 8, so this is PCA" \
        in infos
    assert [i for i in infos if i.startswith("Re-projection")] == [
        "Re-projection of 8 sentences (of 43): PCA fitted on these sentences only, before and after. Neighbours, "
        "rings and the table are among them; colours keep the values measured over all 43."]
    assert not any("t-SNE fitted" in text for text in infos + _captions(at))
    # the perplexity asked for is kept (and in the link) but its control is disabled and said to be unused
    assert at.number_input(key="proj_perplexity").value == 6.0 and at.number_input(key="proj_perplexity").disabled
    assert "Not used: this plot is PCA, not t-SNE (the notice below says why), so these parameters play no part " \
           "in it." in _captions(at)
    spec = _spec(at)
    emb = at.session_state["_run"].embeddings["last"]
    refit = project(emb.before[:8], emb.after[:8], "pca")
    assert (refit.method, refit.requested) == ("pca", "pca")
    ev = refit.explained_variance
    assert spec["layout"]["xaxis"]["title"]["text"] == f"PCA 1 ({ev[0]:.0%} of variance)"
    assert spec["layout"]["yaxis"]["title"]["text"] == f"PCA 2 ({ev[1]:.0%} of variance)"
    # PCA keeps one scale on both axes: the ranges have the plot's assumed shape
    assert spec["layout"]["yaxis"]["scaleanchor"] == "x"
    (x0, x1), (y0, y1) = spec["layout"]["xaxis"]["range"], spec["layout"]["yaxis"]["range"]
    assert (x1 - x0) / (y1 - y0) == pytest.approx(920 / (720 - 140))
    assert dict(at.query_params)["pperp"] == "6"


def test_one_selected_sentence_is_singular_and_the_vectors_say_which_sentences_were_re_projected(melbourne):
    from app.panels.projection import embedding_vectors_npz

    at = open_link(melbourne, page=PAGE)
    assert_ok(at)
    at.session_state["proj_selected"], at.session_state["_proj_lasso"] = 12, [12]  # what a click on a point sets
    at.run()
    assert at.button(key="proj-page-iso-lasso").proto.label == "Re-project the 1 selected sentence"
    assert at.button(key="proj-page-iso-lasso").disabled
    at.session_state["_proj_lasso"] = [1, 2, 12]
    at.run()
    assert at.button(key="proj-page-iso-lasso").proto.label == "Re-project the 3 selected sentences"
    at.button(key="proj-page-iso-lasso").click().run()
    assert_ok(at)
    run = at.session_state["_run"]
    proj = at.session_state["_proj_subset_fits"][(run.run_id, "pca", "last", (1, 2, 12))]
    data = np.load(io.BytesIO(embedding_vectors_npz(run, "last", proj, [1, 2, 12])))
    assert data["projected"].tolist() == [i in (1, 2, 12) for i in range(43)]
    assert str(data["projection_method"]) == "pca" and str(data["projection_requested"]) == "pca"
    np.testing.assert_array_equal(data["xy_after"][[1, 2, 12]], proj.after)
    assert np.isnan(data["xy_after"][[0, 3, 42]]).all() and np.isnan(data["xy_before"][0]).all()
    # every sentence's vectors are still there, the groups named as the app names them
    emb = run.embeddings["last"]
    np.testing.assert_array_equal(data["after"], emb.after)
    assert data["group"][0] == "edit prompt" and data["group_key"][0] == "rewrite"
    assert data["group"][12] == "one-hop" and data["group_key"][12] == "one_hop"


def test_the_page_without_an_edit_runs_the_edit_pages_edit_in_one_click():
    from streamlit.testing.v1 import AppTest

    from app.resources import preset_cases
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.switch_page(PAGE)
    at.run()
    assert_ok(at)
    r = preset_cases()[0].request
    request = f"{r.prompt!r} -> {r.target_new!r}"
    assert [i.value for i in at.info] == [
        f"No edit yet in this session. Run the edit the Edit page holds, ft-l+sss on {request} (the first preset "
        "unless you chose another), and see its sentences here; or choose another edit on the Edit page."]
    button = at.button(key="proj-run-default")
    assert button.proto.label == f"Run ft-l+sss on {request}"
    button.click().run()
    assert_ok(at)
    run = at.session_state["_run"]
    assert (run.editor, run.case.request.prompt, run.case.request.target_new) == ("ft-l+sss", r.prompt, r.target_new)
    assert not any("No edit yet" in i.value for i in at.info)
    traces = _point_traces(_spec(at))
    assert sorted(i for t in traces if t["meta"]["when"] == "after" for i in t["customdata"]) == \
        list(range(len(run.embeddings["last"].sentences)))

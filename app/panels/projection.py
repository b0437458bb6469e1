"""The projection panel (Edit and Projection views): the joint 2-D fit of a run's sentence embeddings
with arrows, the colourings, the selected sentence's nearest neighbours ringed and listed, and how far the
2-D moves follow the full-space ones; UMAP/t-SNE parameters, text labels, a search that dims the other
sentences, a re-projection of a chosen subset, a table of the sentences linked both ways with the plot,
and the raw embedding vectors as a download (``embedding_vectors_npz``).
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import figures, resources, state
from app.messages import show_error
from app.panels.common import cached_projection, file_stem, show_frame
from app.panels.projection_plot import LABEL_CHARS, PLOT_MARGIN_PX, decorate
from sss_core import analysis
from sss_core.embeddings import nearest_neighbours
from sss_core.jsonio import to_json
from sss_core.projection import (DEFAULT_MIN_DIST, DEFAULT_N_NEIGHBORS, METHOD_LABELS, METHODS, MIN_DIST_RANGE,
                                 N_NEIGHBORS_RANGE, PARAMETERS, PERPLEXITY_RANGE, project)
from sss_core.sparsity import LAMBDA_UNIT

POOLING_LABELS = {"last": "last token", "mean": "mean of tokens"}


def hover_texts(emb: analysis.EmbeddingSet) -> list[str]:
    """Hover text per sentence: group, top-1 before and after, and how far it moved in the full space."""
    moved = emb.moved
    norm = [float((v.astype("float64") ** 2).sum() ** 0.5) for v in emb.before]
    return [f"{html.escape(s)}<br>group: {analysis.GROUP_LABELS.get(g, g)}"
            f"<br>top-1 before: {html.escape(tb)}<br>top-1 after: {html.escape(ta)}"
            f"<br>moved ‖Δh‖ = {m:.3g} ({m / n if n else 0:.1%} of ‖h‖, full space)"
            for s, g, tb, ta, m, n in zip(emb.sentences, emb.groups, emb.top1_before, emb.top1_after, moved, norm)]


def selected_points(event, fig) -> list[int]:
    """Sentence indices of the points selected (clicked, box or lasso) in the projection."""
    try:
        points = event.selection.points if event is not None else []
    except AttributeError:
        points = (event or {}).get("selection", {}).get("points", [])
    out = []
    for p in points or []:
        idx = p.get("customdata")
        if idx is None and "curve_number" in p:
            trace = fig.data[p["curve_number"]]
            data = trace.customdata
            idx = data[p.get("point_index", p.get("point_number", 0))] if data is not None else None
        if isinstance(idx, (list, tuple)):
            idx = idx[0] if idx else None
        if idx is not None and int(idx) not in out:
            out.append(int(idx))
    return out


COLOUR_BY = {  # colour choice -> what the colour bar says (the measure and its unit)
    "group": "probe group",
    "lambda_max": f"λ_max against its own top answer, log10 ({LAMBDA_UNIT})",
    "knn": "kNN distance",
    "damage": "ΔP(old answer), after − before (probability)",
    "moved": "moved ‖Δh‖ in the full space (hidden-state units)",
}
COLOUR_LABELS = {"group": "group", "lambda_max": "λ_max", "knn": "kNN distance", "damage": "damage ΔP(old)",
                 "moved": "distance moved"}
KNN_UNITS = {"cosine": "mean 1 − cos to the k nearest", "euclidean": "mean euclidean distance to the k nearest, "
                                                                      "hidden-state units"}
DISAGREE = 0.5  # a sentence's rank of 2-D move and of full-space move (each in 0..1) differ by more: flagged


def move_agreement(before_2d, after_2d, moved) -> tuple[float, list[int], list[int]]:
    """How far a projection's arrows follow the full-space moves.

    Returns Spearman rho between each sentence's 2-D move and its full-space move ``moved`` (n,),
    the sentences drawn moving far that barely moved (2-D rank above full-space rank by more than
    ``DISAGREE``), and those that moved far but barely move on screen. Ranks are scaled to 0..1.
    """
    from scipy import stats  # imported here: scipy.stats costs a second at start-up

    m2 = np.linalg.norm(np.asarray(after_2d, float) - np.asarray(before_2d, float), axis=1)
    m = np.asarray(moved, float)
    if len(m) < 3 or np.ptp(m) == 0 or np.ptp(m2) == 0:
        return math.nan, [], []
    rho = float(stats.spearmanr(m2, m).statistic)
    r2, rf = (stats.rankdata(m2) - 1) / (len(m) - 1), (stats.rankdata(m) - 1) / (len(m) - 1)
    exaggerated = [int(i) for i in np.argsort(rf - r2) if r2[i] - rf[i] > DISAGREE]
    hidden = [int(i) for i in np.argsort(r2 - rf) if rf[i] - r2[i] > DISAGREE]
    return rho, exaggerated, hidden


def _sparsity(run: analysis.EditRun, k: int, metric: str, pooling: str):
    """The run's per-sentence sparsity records (``sss_core.sparsity.SentenceSparsity``, in the order of the
    embeddings' sentences) with the kNN distances under (k, metric, pooling); None when the run has none."""
    if not run.sparsity:
        return None
    knn = run.knn
    if (knn.k, knn.metric, knn.pooling) != (k, metric, pooling):
        run = run.with_knn(k, metric, pooling)
    return run.sparsity


def colouring(run: analysis.EditRun, emb: analysis.EmbeddingSet, by: str, k: int = 5, metric: str = "cosine"):
    """The figures.Colouring of ``run``'s sentences for the colour choice ``by`` (a key of COLOUR_BY), or None
    for "group" and for a measure this run does not have (lambda_max and kNN need its sparsity records)."""
    n = len(emb.sentences)
    if by == "moved":
        return figures.Colouring("distance moved", COLOUR_BY["moved"], emb.moved, emb.moved)
    records = _sparsity(run, k, metric, emb.pooling) if by in ("lambda_max", "knn", "damage") else None
    if by == "damage":
        if records is not None:
            d = np.array([r.delta_p_answer for r in records], dtype=float)
        else:  # the probe table's P(old): background sentences have no old answer there
            by_prompt = {r.prompt: r.p_old_after - r.p_old_before for r in run.rows if r.old is not None}
            d = np.array([by_prompt.get(s, math.nan) for s in emb.sentences], dtype=float)
        return figures.Colouring("damage", COLOUR_BY["damage"], d, d, diverging=True)
    if records is None or len(records) != n:
        return None
    if by == "lambda_max":
        return figures.lambda_colouring(records, COLOUR_BY["lambda_max"])
    if by == "knn":
        return figures.Colouring("kNN distance", f"kNN distance, k = {k} ({KNN_UNITS[metric]})",
                                 np.array([r.knn_distance_before for r in records]),
                                 np.array([r.knn_distance_after for r in records]))
    return None


def axis_titles(proj) -> tuple[str, str]:
    """Axis titles of a projection: "PCA 1 (41% of variance)", "UMAP 1 (n_neighbors = 15, min_dist = 0.1)",
    "UMAP 2", ...: the parameters the fit used go on the first axis (so they are in every export of the figure)."""
    name = METHOD_LABELS.get(proj.method, proj.method)
    if proj.explained_variance:
        return tuple(f"{name} {j + 1} ({v:.0%} of variance)" for j, v in enumerate(proj.explained_variance[:2]))
    used = proj.parameters_text() if hasattr(proj, "parameters_text") else ""
    return f"{name} 1" + (f" ({used})" if used else ""), f"{name} 2"


def faithfulness_note(proj, emb: analysis.EmbeddingSet) -> None:
    """Say on screen how far the 2-D arrows follow the full-space moves, and where they do not."""
    rho, exaggerated, hidden = move_agreement(proj.before, proj.after, emb.moved)
    if math.isnan(rho):
        return
    name = METHOD_LABELS.get(proj.method, proj.method)
    head = (f"Arrow length here vs distance moved in the full space: Spearman ρ = {rho:.2f} over "
            f"{len(emb.sentences)} sentences ({name}).")
    if rho >= 0.8 and not exaggerated and not hidden:
        st.caption(head + " The 2-D moves follow the full-space moves.")
        return
    parts = [head]
    if exaggerated:
        parts.append(f"Drawn moving far but barely moved ({len(exaggerated)}): "
                     + "; ".join(f"“{emb.sentences[i]}”" for i in exaggerated[:4]) + ("; ..." if len(exaggerated) > 4
                                                                                       else "") + ".")
    if hidden:
        parts.append(f"Moved far but barely move here ({len(hidden)}): "
                     + "; ".join(f"“{emb.sentences[i]}”" for i in hidden[:4]) + ("; ..." if len(hidden) > 4 else "")
                     + ".")
    parts.append("Read the hover's ‖Δh‖ (full space) or colour by distance moved; a PCA arrow is never longer than the full-space move, a UMAP or t-SNE arrow can be.")
    with st.container(key="proj-faithfulness"):
        st.warning(" ".join(parts), icon=":material/straighten:")


def clear_selection() -> None:
    """Forget the projection's selected point(s) (the Clear selection button's callback)."""
    st.session_state.pop("proj_selected", None)
    st.session_state.pop("_proj_lasso", None)


def _projection_choices(run: analysis.EditRun) -> tuple[str, str, str, int, str]:
    """The projection panel's widgets: (method, pooling, colour by, k, kNN metric), kept in session state."""
    state.setdefault(state.PROJ_METHOD, "pca")
    poolings = list(run.embeddings)
    if st.session_state.get(state.PROJ_POOLING) not in poolings:
        st.session_state[state.PROJ_POOLING] = poolings[0]
    state.setdefault(state.PROJ_COLOUR, "group")
    state.setdefault(state.PROJ_K, 5)
    state.setdefault(state.PROJ_METRIC, "cosine")
    c1, c2, c3 = st.columns([2, 2, 3])
    method = c1.radio("Projection", METHODS, key=state.PROJ_METHOD, horizontal=True,
                      format_func=lambda m: METHOD_LABELS[m],
                      help="One joint fit over the before and after points. PCA is deterministic and linear: "
                           "sentences the edit did not move stay put. UMAP/t-SNE show neighbourhoods but "
                           "distort distances.")
    pooling = c2.radio("Sentence embedding", poolings, key=state.PROJ_POOLING, horizontal=True,
                       format_func=lambda p: POOLING_LABELS.get(p, p),
                       help="The last hidden state (after the final norm) at the last token, or averaged "
                            "over the sentence's tokens")
    by = c3.radio("Colour by", list(COLOUR_BY), key=state.PROJ_COLOUR, horizontal=True,
                  format_func=lambda c: COLOUR_LABELS[c],
                  help="λ_max against each sentence's own top answer and the kNN distance among these sentences "
                       "(full space), before (hollow) and after (filled); damage: the change of the old answer's "
                       "probability; distance moved: ‖Δh‖ in the full space")
    c4, c5 = st.columns([1, 2])
    k = int(c4.number_input("k nearest neighbours", min_value=1, max_value=state.PROJ_K_MAX, step=1, key=state.PROJ_K,
                            help="Ringed around the selected point, listed below it, and the k of the kNN distance"))
    metric = c5.radio("kNN distance", ("cosine", "euclidean"), key=state.PROJ_METRIC, horizontal=True,
                      help="cosine: 1 − cos; euclidean: in hidden-state units. Both in the full embedding space.")
    return method, pooling, by, k, metric


def _lasso(n: int) -> list[int]:
    """The sentence indices (below ``n``) of the last box or lasso selection in the projection."""
    return [i for i in st.session_state.get("_proj_lasso", []) if 0 <= i < n]


def _selection(emb: analysis.EmbeddingSet, key: str) -> int | None:
    """The selected sentence (None: none); with several lassoed, a select box picks whose neighbours to show.

    The selection lives in session state, not in the chart: a chart redrawn with other rings, colours
    or another method is a new widget with an empty selection, and the selection must survive that.
    """
    ss = st.session_state
    n = len(emb.sentences)
    lasso = _lasso(n)
    sel = ss.get("proj_selected")
    sel = sel if isinstance(sel, int) and 0 <= sel < n else None
    if sel is not None and len(lasso) > 1:
        sel = st.selectbox(f"{len(lasso)} sentences selected; neighbours of", lasso, index=lasso.index(sel)
                           if sel in lasso else 0, format_func=lambda i: emb.sentences[i], key=f"{key}-pick")
        ss["proj_selected"] = sel
    return sel




def asked_parameters(method: str) -> dict:
    """The parameters asked for ``method`` (UMAP: n_neighbors, min_dist; t-SNE: perplexity, None = automatic), read
    from session state (their widgets' values, or the defaults), as ``project``'s keywords ({} for PCA). Read before
    the fit, so that the widgets can be drawn after it and say whether the fit used them (``_method_parameters``)."""
    state.setdefault(state.PROJ_N_NEIGHBORS, DEFAULT_N_NEIGHBORS)
    state.setdefault(state.PROJ_MIN_DIST, DEFAULT_MIN_DIST)
    state.setdefault(state.PROJ_PERPLEXITY, None)
    ss = st.session_state
    if method == "umap":
        return {"n_neighbors": int(ss[state.PROJ_N_NEIGHBORS]), "min_dist": float(ss[state.PROJ_MIN_DIST])}
    if method == "tsne":
        perp = ss[state.PROJ_PERPLEXITY]
        return {"perplexity": None if perp is None else float(perp)}
    return {}


def _method_parameters(method: str, proj) -> None:
    """The asked method's parameter widgets (UMAP: n_neighbors, min_dist; t-SNE: perplexity, empty = automatic),
    their values kept in session state (and the link). When the fit ``proj`` fell back to another method (PCA), the
    widgets are disabled and a caption says they were not used, and why (None: the fit failed; drawn as usual)."""
    unused = proj is not None and proj.method != method
    if method == "umap":
        c1, c2, note = st.columns([1, 1, 2])
        c1.number_input("UMAP n_neighbors", min_value=N_NEIGHBORS_RANGE[0], max_value=N_NEIGHBORS_RANGE[1],
                        step=1, key=state.PROJ_N_NEIGHBORS, disabled=unused,
                        help="How many neighbours UMAP keeps for each point: small values show local "
                             f"structure, large values the global one (default {DEFAULT_N_NEIGHBORS}; at most "
                             "the number of distinct points minus one is used)")
        c2.number_input("UMAP min_dist", min_value=MIN_DIST_RANGE[0], max_value=MIN_DIST_RANGE[1], step=0.05,
                        key=state.PROJ_MIN_DIST, format="%.2f", disabled=unused,
                        help=f"How tightly UMAP packs neighbours together (default {DEFAULT_MIN_DIST})")
    elif method == "tsne":
        c1, note = st.columns([1, 3])
        c1.number_input("t-SNE perplexity", min_value=PERPLEXITY_RANGE[0], max_value=PERPLEXITY_RANGE[1],
                        step=1.0, key=state.PROJ_PERPLEXITY, placeholder="automatic", disabled=unused,
                        help="About how many neighbours each point attends to. Empty: automatic, (m − 1) / 3 "
                             "for m distinct points, within 2..30; below m in any case")
    else:
        return
    if unused:
        with note.container(key="proj-parameters-unused"):
            st.caption(f"Not used: this plot is {METHOD_LABELS[proj.method]}, not {METHOD_LABELS[method]} (the "
                       "notice below says why), so these parameters play no part in it.")


def _search(emb: analysis.EmbeddingSet, shown: list[int]) -> tuple[str, list[int] | None]:
    """The search box and its count: (the text, the shown sentences' indices that contain it, ignoring case),
    or (text, None) when the box is empty."""
    state.setdefault(state.PROJ_SEARCH, "")
    state.setdefault(state.PROJ_LABELS, False)
    c1, c2 = st.columns([3, 1])
    text = c1.text_input("Find sentences", key=state.PROJ_SEARCH, placeholder="text in a sentence, e.g. Paris",
                         help="The sentences containing this text (ignoring case) are highlighted, the others dimmed")
    c2.toggle("Text labels", key=state.PROJ_LABELS,
              help="Write the edit's own probes (or, with a search, the matching sentences) beside their points "
                   f"after the edit: the first {LABEL_CHARS} characters, where a label overlaps nothing; the full "
                   "text is in each point's hover")
    query = text.strip().lower()
    if not query:
        return text, None
    matches = [i for i in shown if query in emb.sentences[i].lower()]
    with st.container(key="proj-search-count"):
        st.caption(f"{len(matches)} of {len(shown)} sentences match “{text.strip()}”" +
                   ("; the others are dimmed." if matches else "."))
    return text, matches


def _isolated(n: int) -> list[int] | None:
    """The sentences (indices below ``n``, at least two) re-projected on their own, or None: all of them."""
    subset = st.session_state.get(state.PROJ_ISOLATED)
    if not subset:
        return None
    subset = sorted({int(i) for i in subset if 0 <= int(i) < n})
    return subset if len(subset) >= 2 else None


def isolate(indices) -> None:
    """Re-project only these sentences (a button's callback); None or fewer than two: back to all of them."""
    indices = sorted(set(indices or ()))
    if len(indices) >= 2:
        st.session_state[state.PROJ_ISOLATED] = indices
    else:
        st.session_state.pop(state.PROJ_ISOLATED, None)


def _sentences(count: int, what: str = "") -> str:
    """"1 selected sentence", "3 selected sentences": a count of sentences in words."""
    return f"{count} {what}sentence{'' if count == 1 else 's'}"


def _isolation_controls(n: int, subset: list[int] | None, matches: list[int] | None, key: str) -> None:
    """Buttons: re-project the search's matches or the lassoed sentences on their own, or go back to all ``n``."""
    lasso = _lasso(n)
    c1, c2, c3 = st.columns(3)
    m = len(matches or ())
    c1.button(f"Re-project the {_sentences(m, 'matching ')}", key=f"{key}-iso-find", on_click=isolate,
              args=(matches,), disabled=m < 2 or matches == subset,
              help="Fit the projection again on these sentences only (at least two)")
    c2.button(f"Re-project the {_sentences(len(lasso), 'selected ')}", key=f"{key}-iso-lasso", on_click=isolate,
              args=(lasso,), disabled=len(lasso) < 2 or sorted(lasso) == subset,
              help="Box- or lasso-select points in the plot (at least two), then fit the projection again on them only")
    c3.button(f"Back to all {n} sentences", key=f"{key}-iso-back", on_click=isolate, args=(None,),
              disabled=subset is None)


def _subset(emb: analysis.EmbeddingSet, idx: list[int]) -> analysis.EmbeddingSet:
    """The sentences ``idx`` of ``emb``, in that order."""
    return dataclasses.replace(emb, sentences=tuple(emb.sentences[i] for i in idx),
                               groups=tuple(emb.groups[i] for i in idx), before=emb.before[idx], after=emb.after[idx],
                               top1_before=tuple(emb.top1_before[i] for i in idx),
                               top1_after=tuple(emb.top1_after[i] for i in idx))


def _fit(run: analysis.EditRun, emb: analysis.EmbeddingSet, method: str, pooling: str, params: dict,
         subset: list[int] | None):
    """The projection of ``emb`` (the run's sentences, or the re-projected ``subset`` of them) by ``method`` with
    ``params``, fitted once per (run, method, pooling[, subset]) and refitted when the parameters change;
    its notice shown. None (the error shown) when the fit fails."""
    if subset is None:
        cache, ck = state.projection_cache(), (run.run_id, method, pooling)  # the CSV export reads this one
    else:
        cache = st.session_state.setdefault("_proj_subset_fits", {})
        for old in [c for c in cache if c[0] != run.run_id]:
            del cache[old]
        ck = (run.run_id, method, pooling, tuple(subset))
    return cached_projection(cache, ck, emb.before, emb.after, method,
                             **{k: v for k, v in params.items() if PARAMETERS[k] == method})


PLOT_WIDTH_PX = 920  # the plot area's width, px, on the Projection page at a 1440 px window (measured: 926)
PAGE_WIDTH_PX = 980  # the page's width there, px: the tables' (a table in a narrower column scales its columns)
def sentence_frame(emb: analysis.EmbeddingSet, shown: list[int], sel: int | None, rings: tuple,
                   matches: list[int] | None) -> pd.DataFrame:
    """The table of the sentences in the plot (run indices ``shown``), the selected one first: its number, text,
    group, top-1 before and after, distance moved, and what marks it in the plot ("selected"; "near before", "near
    after", "near both": among the selected one's k nearest before / after / both; "match": the search's), joined by
    ", ". ``rings``: (before, after) run indices of the selected one's neighbours."""
    order = ([sel] if sel in shown else []) + [i for i in shown if i != sel]
    moved = emb.moved
    marks = []
    for i in order:
        mark = ["selected"] if i == sel else []
        near = [w for w, ring in zip(("before", "after"), rings) if i in ring]
        if near:
            mark.append("near " + ("both" if len(near) == 2 else near[0]))
        if matches is not None and i in matches:
            mark.append("match")
        marks.append(", ".join(mark))
    return pd.DataFrame({"#": order, "sentence": [emb.sentences[i] for i in order],
                         "group": [analysis.GROUP_LABELS.get(emb.groups[i], emb.groups[i]) for i in order],
                         "top-1 before": [emb.top1_before[i] for i in order],
                         "top-1 after": [emb.top1_after[i] for i in order],
                         "moved ‖Δh‖": [round(float(moved[i]), 4) for i in order], "in the plot": marks})


# column widths (px) that put every column of the tables inside the page's PAGE_WIDTH_PX at a 1440 px window (the
# sentences table's row markers take about 33 px more); a longer cell ends in "…", its full text in the plot's hover
SENTENCE_COLUMNS = {"#": 44, "sentence": 280, "group": 150, "top-1 before": 125, "top-1 after": 125,
                    "moved ‖Δh‖": 80, "in the plot": 130}
NEIGHBOUR_COLUMNS = {"rank": 50, "before": 290, "distance before": 115, "kept": 50, "after": 290,
                     "distance after": 115, "new": 50}


ROW_MARKERS_PX = 40  # the sentences table's row markers (check boxes), about 33 px, not scaled


def column_widths(widths: dict[str, int], table_px: float) -> dict:
    """st.dataframe's column_config giving each column its width in ``widths`` (px at ``PAGE_WIDTH_PX``), scaled to a
    table ``table_px`` wide (a table in a narrower column, e.g. the Edit page's two thirds, keeps every column)."""
    scale = min(1.0, (table_px - ROW_MARKERS_PX) / (PAGE_WIDTH_PX - ROW_MARKERS_PX))
    return {c: st.column_config.Column(width=max(30, int(w * scale))) for c, w in widths.items()}


def _sentence_table(df: pd.DataFrame, sel: int | None, key: str, table_px: float = PAGE_WIDTH_PX) -> None:
    """The sentences table, linked both ways with the plot: the selected point's row comes first and is
    highlighted; choosing a row selects its point (ringed, with its neighbours listed)."""
    def paint(row):
        return ["background-color: #FFF3B0; font-weight: bold" if row["#"] == sel else "" for _ in row]

    st.markdown("**Sentences in the plot**: choose a row to select its point; a point clicked in the plot is the "
                "first row here, highlighted. *In the plot*: near before / after / both: one of the selected "
                "sentence's k nearest (full space) before / after the edit / both; match: it contains the search text.")
    with st.container(key=f"{key}-rows-box"):
        event = st.dataframe(df.style.apply(paint, axis=1).format({"moved ‖Δh‖": "{:.4f}"}), hide_index=True,
                             width="stretch", on_select="rerun", selection_mode="single-row",
                             key=f"{key}-rows-{sel}-{len(df)}", height=min(38 + 35 * len(df), 320),
                             column_config=column_widths(SENTENCE_COLUMNS, table_px))
    rows = event.selection.rows if event is not None else []
    if rows:
        picked = int(df["#"].iloc[rows[0]])
        if picked != sel:
            st.session_state["proj_selected"], st.session_state["_proj_lasso"] = picked, [picked]
            st.rerun()


def embedding_vectors_npz(run: analysis.EditRun, pooling: str, proj=None, subset: list[int] | None = None) -> bytes:
    """The raw sentence embeddings of ``run`` under ``pooling`` as a NumPy .npz archive (``np.load`` reads it
    without pickle): ``before`` and ``after`` (n, d_model) exactly as measured (the model's last hidden state,
    float32) for all n sentences, ``sentence``, ``group`` (as the app names it: "edit prompt", "paraphrase", ...),
    ``group_key`` (the core's key: "rewrite", "paraphrase", ...), ``top1_before``, ``top1_after`` (n,),
    ``pooling``, ``run_id``, ``record_digest`` (the run record's id, ``RunRecord.digest``; "" without a record) and
    ``record_json`` (the record that replays the run; "" without one). With ``proj`` (the projection on screen, of
    all the sentences, or of the re-projected ``subset``: run sentence indices in ``proj``'s order):
    ``projected`` (n,) bool, the sentences the fit was of; ``projection_method`` (the method used),
    ``projection_requested`` (the one asked for; they differ when UMAP or t-SNE fell back to PCA),
    ``projection_parameters`` (JSON of the values used), ``xy_before``, ``xy_after`` (n, 2; NaN for a sentence
    outside the subset)."""
    emb = run.embeddings[pooling]
    n = len(emb.sentences)
    record = getattr(run, "record", None)
    arrays = {"sentence": np.array(emb.sentences, dtype=str),
              "group": np.array([analysis.GROUP_LABELS.get(g, g) for g in emb.groups], dtype=str),
              "group_key": np.array(emb.groups, dtype=str),
              "top1_before": np.array(emb.top1_before, dtype=str), "top1_after": np.array(emb.top1_after, dtype=str),
              "before": emb.before, "after": emb.after, "pooling": np.array(pooling), "run_id": np.array(run.run_id),
              "record_digest": np.array(record.digest() if record is not None else ""),
              "record_json": np.array(to_json(record.to_dict()) if record is not None else "")}
    rows = list(range(n)) if subset is None else list(subset)
    if proj is not None and len(proj.before) == len(rows):
        projected = np.zeros(n, dtype=bool)
        projected[rows] = True
        xy_before, xy_after = np.full((n, 2), np.nan), np.full((n, 2), np.nan)
        xy_before[rows], xy_after[rows] = proj.before, proj.after
        arrays.update(projected=projected, projection_method=np.array(proj.method),
                      projection_requested=np.array(proj.requested), xy_before=xy_before, xy_after=xy_after,
                      projection_parameters=np.array(json.dumps(proj.parameters, sort_keys=True)))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def projection_link_values() -> dict:
    """The projection's controls as a link's values (query key -> value, ``state.LINK_FIELDS``), for
    ``state.write_query_params(..., **projection_link_values())``."""
    ss = st.session_state
    return {"proj": ss.get(state.PROJ_METHOD), "pool": ss.get(state.PROJ_POOLING), "sel": ss.get("proj_selected"),
            "pk": ss.get(state.PROJ_K), "pdist": ss.get(state.PROJ_METRIC), "pnn": ss.get(state.PROJ_N_NEIGHBORS),
            "pmd": ss.get(state.PROJ_MIN_DIST), "pperp": ss.get(state.PROJ_PERPLEXITY),
            "plabels": True if ss.get(state.PROJ_LABELS) else None, "pfind": ss.get(state.PROJ_SEARCH),
            "piso": ss.get(state.PROJ_ISOLATED)}


def _shown_colouring(run: analysis.EditRun, emb: analysis.EmbeddingSet, by: str, k: int, metric: str,
                     shown: list[int]):
    """``colouring`` of the run's sentences, cut to the ``shown`` ones (a re-projected subset keeps the values
    measured over all sentences); None (and a notice) when it cannot be had."""
    try:
        colour = colouring(run, emb, by, k, metric)
    except Exception as exc:  # noqa: BLE001 - e.g. bad kNN settings
        show_error(exc, "Cannot colour by that")
        colour = None
    if by != "group" and colour is None:
        st.info(f"This run has no {COLOUR_LABELS[by]} per sentence (it needs the core's sparsity records); "
                "coloured by group instead.")
    if colour is not None and len(shown) != len(emb.sentences):
        colour = dataclasses.replace(colour, before=np.asarray(colour.before)[shown],
                                     after=np.asarray(colour.after)[shown])
    return colour


def _apply_chart_pick(picked: list[int], sel: int | None, n: int, chart_key: str) -> None:
    """Make a click, box or lasso in the chart the selection. A chart keeps reporting its last selection on
    every rerun, so a pick is taken once: a row chosen in the table or Clear selection is not undone by it."""
    ss = st.session_state
    if not picked or ss.get("_proj_chart_pick") == (chart_key, picked):
        return
    ss["_proj_chart_pick"] = (chart_key, picked)
    if sel not in picked or sorted(picked) != sorted(_lasso(n) or [sel]):
        ss["proj_selected"], ss["_proj_lasso"] = picked[0], picked
        st.rerun()  # draw the rings of the new selection


def _fit_notes(proj, subset: list[int] | None, n: int) -> None:
    """Say on screen what was fitted: a re-projection of a subset, and the parameters the fit used; both name the
    method the fit used (``proj.method``: PCA when UMAP or t-SNE fell back to it), not the one asked for."""
    name = METHOD_LABELS[proj.method]
    if subset is not None:
        with st.container(key="proj-isolated"):
            st.info(f"Re-projection of {len(subset)} sentences (of {n}): {name} fitted on these sentences only, "
                    "before and after. Neighbours, rings and the table are among them; colours keep the values "
                    f"measured over all {n}.", icon=":material/filter_center_focus:")
    if proj.parameters:
        with st.container(key="proj-parameters"):
            st.caption(f"{METHOD_LABELS[proj.method]} fitted with {proj.parameters_text()} "
                       f"({len(proj.before)} sentences, before and after).")


def projection_panel(run: analysis.EditRun, key: str, height: int = 560, plot_width: int = PLOT_WIDTH_PX):
    """Method, its parameters, embedding and colour choices, search and labels; the joint projection (of all the
    run's sentences, or of a re-projected subset) with arrows; the selected point's k nearest neighbours ringed
    and listed; the sentences table linked both ways with the plot; the raw vectors as a download. ``height``: the
    figure's, px; ``plot_width``: its plot area's expected width at a 1440 px window, px (the Projection page's
    ``PLOT_WIDTH_PX``; less in a narrower column): the text labels are placed, and the tables' columns sized, for it."""
    if not run.embeddings:
        st.info("This run has no embeddings.")
        return None
    method, pooling, by, k, metric = _projection_choices(run)
    params = asked_parameters(method)
    parameter_slot = st.container()  # the parameter widgets, drawn once the fit says whether it used them
    full = run.embeddings[pooling]
    n = len(full.sentences)
    subset = _isolated(n)
    shown = subset or list(range(n))
    emb = full if subset is None else _subset(full, subset)
    _, matches = _search(full, shown)
    # Compile UMAP in the background once the first results are on screen (not earlier: the compile
    # holds the GIL and would slow the first edit); a UMAP asked for meanwhile waits for it.
    warm = resources.umap_warmup()
    if method == "umap" and not warm.done.is_set():
        with st.spinner("Compiling UMAP (once per server start, about 10-15 s)..."):
            warm.done.wait(timeout=120)
    proj = _fit(run, emb, method, pooling, params, subset)
    with parameter_slot:
        _method_parameters(method, proj)
    if proj is None:
        return None
    _fit_notes(proj, subset, n)
    colour = _shown_colouring(run, full, by, k, metric, shown)
    sel = _selection(full, key)  # in session state, so that it survives a redrawn chart
    local = shown.index(sel) if sel in shown else None
    rings = ((), ())
    if local is not None:
        rings = ([i for i, _ in nearest_neighbours(emb.before, local, k, metric)],
                 [i for i, _ in nearest_neighbours(emb.after, local, k, metric)])
    fig = figures.projection_figure(proj.before, proj.after, emb.groups, hover_texts(emb), labels=analysis.GROUP_LABELS,
                                    height=height, colour=colour, axis_titles=axis_titles(proj), neighbours=rings,
                                    highlight=() if local is None else (local,))
    label_note = decorate(fig, proj, emb, shown, matches, bool(st.session_state.get(state.PROJ_LABELS)),
                           (plot_width, max(height - PLOT_MARGIN_PX, 1)))
    chart_key = f"{key}-{run.run_id}-{method}-{pooling}" + ("" if subset is None else
                                                           f"-iso-{','.join(map(str, subset))}")
    event = st.plotly_chart(fig, key=chart_key, on_select="rerun", selection_mode=("points", "box", "lasso"),
                            width="stretch")
    _apply_chart_pick(selected_points(event, fig), sel, n, chart_key)
    if label_note:
        with st.container(key="proj-labels-note"):
            st.caption(label_note)
    variance = (f" The two PCA axes hold {sum(proj.explained_variance):.0%} of the variance."
                if proj.explained_variance else "")
    st.caption("Hollow: before the edit; filled: after; arrows go from before to after. 2-D distances are "
               "approximate (a projection of a " + f"{emb.before.shape[1]}-dimensional space);" +
               " the hover's ‖Δh‖ is measured in the full space." + variance +
               " Click a point, or lasso several, to ring and list its k nearest neighbours before vs after; the "
               "selection stays when you switch between PCA, UMAP and t-SNE.")
    faithfulness_note(proj, emb)
    _isolation_controls(n, subset, matches, key)
    near = tuple([shown[j] for j in ring] for ring in rings)
    table_px = plot_width * PAGE_WIDTH_PX / PLOT_WIDTH_PX  # the tables' width in the same column
    _sentence_table(sentence_frame(full, shown, sel if local is not None else None, near, matches),
                    sel if local is not None else None, f"{key}-{run.run_id}", table_px)
    if local is not None:
        _neighbour_list(emb, local, k, metric, f"{key}-nn-{run.run_id}", table_px)
        st.button("Clear selection", key=f"{key}-clear", on_click=clear_selection)
    st.download_button("Embedding vectors (.npz)", lambda: embedding_vectors_npz(run, pooling, proj, subset),
                       f"{file_stem(run)}-{pooling}-vectors.npz", "application/octet-stream",
                       key=f"{key}-vectors-{run.run_id}", on_click="ignore",
                       help="Each sentence's embedding before and after (the model's last hidden state, "
                            f"{POOLING_LABELS.get(pooling, pooling)}), with its text and group, the run's id and "
                            "its run record, and the 2-D coordinates on screen (field 'projected': the sentences "
                            "of a re-projected subset): numpy.load reads it")
    return fig


def _neighbour_list(emb: analysis.EmbeddingSet, i: int, k: int, metric: str, key: str,
                    table_px: float = PAGE_WIDTH_PX) -> None:
    """The k nearest neighbours of sentence ``i`` of ``emb``, before and after, in the full space."""
    distance = "1 − cos" if metric == "cosine" else "euclidean"
    st.markdown(f"**Nearest neighbours of** “{emb.sentences[i]}”: the {k} nearest (full space, {distance}, "
                "the kNN distance chosen above; "
                f"marked in the plot: {figures.NEIGHBOUR_RINGS['before']['words']} before, "
                f"{figures.NEIGHBOUR_RINGS['after']['words']} after)")
    show_frame(pd.DataFrame(analysis.neighbour_table(emb, i, k, metric)), key=key,
               formats={"distance before": ".4f", "distance after": ".4f"},
               column_config=column_widths(NEIGHBOUR_COLUMNS, table_px))

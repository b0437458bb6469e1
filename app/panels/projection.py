"""The projection panel (Edit and Projection views): the joint 2-D fit of a run's sentence embeddings
with arrows, the colourings, the selected sentence's nearest neighbours ringed and listed, and how far the
2-D moves follow the full-space ones.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
import streamlit as st

from app import figures, resources, state
from app.messages import show_error
from app.panels.common import cached_projection, show_frame
from sss_core import analysis
from sss_core.embeddings import nearest_neighbours
from sss_core.projection import METHOD_LABELS, METHODS
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
    """Axis titles of a projection: "PCA 1 (41% of variance)", "UMAP 2", ..."""
    name = METHOD_LABELS.get(proj.method, proj.method)
    if proj.explained_variance:
        return tuple(f"{name} {j + 1} ({v:.0%} of variance)" for j, v in enumerate(proj.explained_variance[:2]))
    return f"{name} 1", f"{name} 2"


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
    k = int(c4.number_input("k nearest neighbours", min_value=1, max_value=30, step=1, key=state.PROJ_K,
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


def projection_panel(run: analysis.EditRun, key: str, height: int = 560):
    """Method, embedding and colour choices, the joint projection with arrows, the selected point's k
    nearest neighbours ringed and listed, and how far the 2-D moves follow the full-space ones."""
    if not run.embeddings:
        st.info("This run has no embeddings.")
        return None
    method, pooling, by, k, metric = _projection_choices(run)
    emb = run.embeddings[pooling]
    # Compile UMAP in the background once the first results are on screen (not earlier: the compile
    # holds the GIL and would slow the first edit); a UMAP asked for meanwhile waits for it.
    warm = resources.umap_warmup()
    if method == "umap" and not warm.done.is_set():
        with st.spinner("Compiling UMAP (once per server start, about 10-15 s)..."):
            warm.done.wait(timeout=120)
    cache = state.projection_cache()
    ck = (run.run_id, method, pooling)
    proj = cached_projection(cache, ck, emb.before, emb.after, method, "")
    if proj is None:
        return None
    try:
        colour = colouring(run, emb, by, k, metric)
    except Exception as exc:  # noqa: BLE001 - e.g. bad kNN settings
        show_error(exc, "Cannot colour by that")
        colour = None
    if by != "group" and colour is None:
        st.info(f"This run has no {COLOUR_LABELS[by]} per sentence (it needs the core's sparsity records); "
                "coloured by group instead.")
    sel = _selection(emb, key)  # in session state, so that it survives a redrawn chart
    rings = ((), ())
    if sel is not None:
        rings = ([i for i, _ in nearest_neighbours(emb.before, sel, k, metric)],
                 [i for i, _ in nearest_neighbours(emb.after, sel, k, metric)])
    fig = figures.projection_figure(proj.before, proj.after, emb.groups, hover_texts(emb), labels=analysis.GROUP_LABELS,
                                    height=height, colour=colour, axis_titles=axis_titles(proj), neighbours=rings,
                                    highlight=() if sel is None else (sel,))
    event = st.plotly_chart(fig, key=f"{key}-{run.run_id}-{method}-{pooling}", on_select="rerun",
                            selection_mode=("points", "box", "lasso"), width="stretch")
    picked = selected_points(event, fig)
    if picked and (sel not in picked or sorted(picked) != sorted(_lasso(len(emb.sentences)) or [sel])):
        st.session_state["proj_selected"], st.session_state["_proj_lasso"] = picked[0], picked
        st.rerun()  # draw the rings of the new selection
    variance = (f" The two PCA axes hold {sum(proj.explained_variance):.0%} of the variance."
                if proj.explained_variance else "")
    st.caption("Hollow: before the edit; filled: after; arrows go from before to after. 2-D distances are "
               "approximate (a projection of a " + f"{emb.before.shape[1]}-dimensional space);" +
               " the hover's ‖Δh‖ is measured in the full space." + variance +
               " Click a point, or lasso several, to ring and list its k nearest neighbours before vs after; the "
               "selection stays when you switch between PCA, UMAP and t-SNE.")
    faithfulness_note(proj, emb)
    if sel is not None:
        distance = "1 − cos" if metric == "cosine" else "euclidean"
        st.markdown(f"**Nearest neighbours of** “{emb.sentences[sel]}”: the {k} nearest (full space, {distance}, "
                    "the kNN distance chosen above; "
                    f"marked in the plot: {figures.NEIGHBOUR_RINGS['before']['words']} before, "
                    f"{figures.NEIGHBOUR_RINGS['after']['words']} after)")
        show_frame(pd.DataFrame(analysis.neighbour_table(emb, sel, k, metric)), key=f"{key}-nn-{run.run_id}")
        st.button("Clear selection", key=f"{key}-clear", on_click=clear_selection)
    return fig

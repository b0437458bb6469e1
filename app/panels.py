"""Result panels shared by several views: the run's caption and metrics, the probe table, the weight
delta, the projection with nearest neighbours, and the export buttons.

Views stay thin: they arrange these panels under the input widgets of app.inputs. Every panel reads
and writes session state only through app.state, and draws figures only from app.figures.
"""

from __future__ import annotations

import html
import io
import math
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app import figures, records, resources, state
from app.hypothesis import PREDICTS, correlation_frame, hypothesis_rows, pair_label
from app.messages import show_error
from sss_core import analysis
from sss_core.editors import EDITORS
from sss_core.embeddings import nearest_neighbours
from sss_core.jsonio import to_json
from sss_core.projection import METHOD_LABELS, METHODS, project
from sss_core.sparsity import LAMBDA_UNIT

POOLING_LABELS = {"last": "last token", "mean": "mean of tokens"}
MISSING = figures.MISSING  # the one spelling of a missing value (no C, no probe of a group, NaN) on every view
LAMBDA_FORMAT = ".2e"  # lambda_max spans decades (1e-6 .. 1e1): scientific, 3 significant digits
STYLED_CELLS = 50_000  # tables up to this many cells get the app's number formats and MISSING
TOOK = 1.0  # reliability below this: the edit did not take (the model does not give the new answer)


def _missing(x: Any) -> bool:
    """None or NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fmt(x: float | None, spec: str = ".3g") -> str:
    """A number for a metric card; ``MISSING`` for None or NaN."""
    return MISSING if _missing(x) else format(x, spec)


def fmt_lambda(x: float | None) -> str:
    """lambda_max as shown everywhere in the app: 3 significant digits, scientific (8.34e-06)."""
    return _fmt(x, LAMBDA_FORMAT)


def shown_c(editor: str, c: float | None) -> float | None:
    """C as shown for a run of ``editor``: None for an editor without an SSS term (registry: no C
    field, or SSS not used), so "ft-l C=0" is never shown."""
    spec = EDITORS.get(editor)
    return c if c is not None and spec is not None and spec.uses_sss and spec.c_field else None


def run_label(run: analysis.EditRun, prefix: str = "") -> str:
    """A short name of a run: "A: ft-l+sss C=0.9", or "A: ft-l" for an editor without C."""
    c = shown_c(run.editor, run.c)
    return f"{prefix}{run.editor}" + (f" C={c:g}" if c is not None else "")


def run_caption(run: analysis.EditRun) -> str:
    """One line of Markdown naming the editor (and its C where it uses SSS), the model and the request."""
    r = run.case.request
    c = shown_c(run.editor, run.c)
    c = f", C = {c:g}" if c is not None else ""
    return (f"**{run.editor}**{c} on `{run.model_name.rsplit('/', 1)[-1]}`: {r.prompt!r} -> **{r.target_new}** "
            f"(run `{run.run_id}`, {run.seconds_total:.1f} s){records.caption_settings(run.record)}")


def edit_took(run: analysis.EditRun) -> bool:
    """Whether the edit took: reliability (the edit prompt gives the new target) is 1; NaN counts as not."""
    rel = run.result.metrics.get("reliability", math.nan)
    return not _missing(rel) and rel >= TOOK


def run_flags(run: analysis.EditRun) -> list[str]:
    """Warnings about the run's outcome itself (the request's own warnings are in ``run.warnings``)."""
    if edit_took(run):
        return []
    rel = run.result.metrics.get("reliability", math.nan)
    return [f"The edit did not take: reliability {_fmt(rel, '.2f')} (the edited model does not give "
            f"{run.case.request.target_new!r} for the edit prompt). Its other metrics and λ_max describe a "
            "model that was not edited as asked; try more steps, another layer or another editor."]


def run_notices(run: analysis.EditRun) -> None:
    """The run's outcome flags and the request's warnings, each as a warning box."""
    for w in (*run_flags(run), *run.warnings):
        st.warning(w)


def earlier_run_notice(view: str, run, described: str | None = None) -> None:
    """Mark results on screen that are not those of the last attempt: it failed, or the inputs changed.

    ``described``: the inputs the results came from, when they differ from the form's (None if equal).
    """
    failed = state.failed_attempt(view)
    if failed is not None and run is not None:
        st.warning(f"Earlier run: the results below are from before your last attempt, which failed "
                   f"({failed}).", icon=":material/history:")
    elif described is not None:
        st.info(f"Earlier run: the results below are for {described}; the inputs above have changed "
                "since. Run again to update them.", icon=":material/history:")


def metrics_row(run: analysis.EditRun) -> None:
    """lambda_max before and after the edit and the four EasyEdit metrics as cards; the run's warnings.

    The change of lambda_max is shown as a plain number without an arrow, and not at all when the
    edit did not take: a drop in lambda_max then says nothing about a successful sparse edit.
    """
    res = run.result
    cols = st.columns(6)
    lb, la = res.lambda_max_before, res.lambda_max_after
    cols[0].metric(LAMBDA_NEW_BEFORE, fmt_lambda(lb),
                   help="SSS metric (paper Eq. 9) of the edit prompt against the new target")
    took = edit_took(run)
    delta = None if _missing(la) or _missing(lb) or not took else format(la - lb, "+" + LAMBDA_FORMAT)
    cols[1].metric(LAMBDA_NEW_AFTER, fmt_lambda(la), delta=delta, delta_color="off", delta_arrow="off",
                   help=None if took else "no change shown: the edit did not take")
    for col, name in zip(cols[2:], ("reliability", "generality", "locality", "portability")):
        col.metric(name, _fmt(res.metrics.get(name, math.nan), ".2f"))
    st.caption(lambda_caption(run))
    run_notices(run)


LAMBDA_NEW_BEFORE = "λ_max before (new target)"
LAMBDA_NEW_AFTER = "λ_max after (new target)"


def lambda_caption(run: analysis.EditRun) -> str:
    """One line under the metric cards: lambda_max against the old target too, and what a drop means.

    Against the new target, lambda_max is a function of that target's NLL (``sss_core.sparsity``): every
    edit that makes the target likely drives it down, plain FT-L as much as FT-L+SSS. The caption says
    so, so that a drop is not read as the SSS term's doing.
    """
    el = run.edit_lambda
    old = ""
    if el is not None and el.old_target is not None and not _missing(el.old_before):
        old = (f"Against the old target {el.old_target!r}: {fmt_lambda(el.old_before)} before, "
               f"{fmt_lambda(el.old_after)} after. ")
    return (old + "λ_max against the new target falls whenever an edit makes that target likely, with or "
            "without the SSS term (it is mostly the target's confidence); what the SSS term adds shows in "
            "Compare (same edit with C = 0) and in the Hypothesis view.")



def cached_projection(cache: dict, key, before: np.ndarray, after: np.ndarray, method: str, what: str):
    """The projection of ``before``/``after`` (each (n, d_model)) by ``method``, fitted once per ``key``
    in ``cache``; its notice shown. None (the error shown) when the fit fails."""
    if key not in cache:
        try:
            with st.spinner(f"Fitting {METHOD_LABELS[method]}{what}..."):
                cache[key] = project(before, after, method)
        except Exception as exc:  # noqa: BLE001
            show_error(exc, f"{METHOD_LABELS[method]} failed")
            return None
    proj = cache[key]
    if proj.message:
        st.info(proj.message)
    return proj

def show_frame(df: pd.DataFrame, key: str, formats: dict[str, str] | None = None,
               column_config: dict | None = None) -> None:
    """``st.dataframe`` with missing values as ``MISSING`` and lambda_max columns scientific.

    ``formats``: column -> format spec (".3f"); columns named like "λ_max ..." or "lambda_max..."
    get ``LAMBDA_FORMAT`` unless given.
    """
    specs = {c: LAMBDA_FORMAT for c in df.columns if "λ_max" in str(c) or "lambda_max" in str(c)}
    specs.update({c: f for c, f in (formats or {}).items() if c in df.columns})

    def formatter(spec: str):
        return lambda v: MISSING if _missing(v) else format(v, spec)

    # in a keyed container ("st-key-<key>-box" in the page), so a browser test can find this table
    with st.container(key=f"{key}-box"):
        if df.size > STYLED_CELLS:  # styling every cell of a large bench table costs seconds per rerun
            st.dataframe(df, hide_index=True, width="stretch", key=key, column_config=column_config)
            return
        styler = df.style.format({c: formatter(f) for c, f in specs.items()}, na_rep=MISSING)
        st.dataframe(styler, hide_index=True, width="stretch", key=key, column_config=column_config)


def link_problems_notice() -> None:
    """The invalid values of the link this session was opened with, until the user dismisses them."""
    problems = state.link_problems()
    if problems:
        st.warning("This link had values that could not be used; they were left at their defaults:\n\n"
                   + "\n".join(f"- {p}" for p in problems), icon=":material/link_off:")
        st.button("Dismiss", key="dismiss_link_problems", on_click=state.dismiss_link_problems)


def update_norm_warnings(weights: dict[str, float], steps) -> list[str]:
    """One warning naming the edits of a sequential history whose update outgrows the weight it changes.

    ``weights``: parameter -> Frobenius norm of the unedited weight; ``steps``: SequentialSteps.
    An update larger than the weight itself rewrites the layer rather than adding a fact to it; ROME
    does this under sequential edits with its defaults (docs/editors.md, "ROME under sequential edits").
    """
    over = []  # (edit number, editor, parameter, update norm, weight norm)
    for s in steps:
        for name, norm in (s.edit.delta_norms() or {}).items():
            w = weights.get(name)
            if w and norm > w:
                over.append((s.n, s.editor, name, norm, w))
    if not over:
        return []
    worst = max(over, key=lambda o: o[3] / o[4])
    edits = ", ".join(f"{n} ({e})" for n, e in dict.fromkeys((o[0], o[1]) for o in over))
    return [f"Updates larger than the weight they change, at edit(s) {edits}: the largest, edit {worst[0]}'s "
            f"update of {worst[2]}, has norm {worst[3]:.3g} against the weight's own {worst[4]:.3g} "
            f"({worst[3] / worst[4]:.1f}x). Updates this large overwrite what the layer knew: expect locality and "
            "unedited facts to collapse as edits accumulate (docs/editors.md, ROME under sequential edits)."]


def probe_frame(run: analysis.EditRun) -> pd.DataFrame:
    """The probability table as a DataFrame (what the Edit page shows and the CSV export holds;
    ``figures.probe_frame``, the same table as the inspect page's)."""
    return figures.probe_frame(run, analysis.GROUP_LABELS)


def probe_table(run: analysis.EditRun, key: str = "probes", compact: bool = False) -> pd.DataFrame:
    """Draw the probability table (see probe_frame, probe_display) with its caption; returns the full
    DataFrame (what the CSV export holds).

    ``compact`` (half-width columns, Compare) keeps only ``figures.COMPACT_COLUMNS``.
    """
    df = probe_frame(run)
    shown = df[list(figures.COMPACT_COLUMNS)] if compact else figures.probe_display(df)
    formats = {c: ".3f" for c in shown.columns if c.startswith("P(")}
    formats["score"] = ".2f"
    small = {c: st.column_config.Column(c, width="small") for c in shown.columns if c not in ("prompt",)}
    show_frame(shown, key=f"{key}-{run.run_id}", formats=formats, column_config={
        **small,
        "top-1": st.column_config.TextColumn("top-1", width="small",
                                             help="same, or FLIPPED: ✓ wanted by the edit, ✗ damage"),
        "score": st.column_config.Column("score", width="small",
                                         help="EasyEdit metric: accuracy, or agreement for locality"),
        "prompt": st.column_config.TextColumn("prompt", width="medium")})
    st.caption("P(·) is the probability of the whole answer given the prompt (teacher forced). "
               "Top-1 is the most likely next token. ✓: a flip the edit wants (edit prompt, paraphrases, "
               "aliases); ✗: a flip that damages knowledge the edit should leave alone. Every column, "
               "ΔP(new) included, is in the probe table CSV.")
    return df


def delta_panel(run: analysis.EditRun):
    """The weight delta per parameter (Frobenius norm) as a bar chart; returns the figure, or None (no delta)."""
    if run.delta_norms:
        fig = figures.delta_norm_figure(run.delta_norms)
        st.plotly_chart(fig, key=f"delta-{run.run_id}", width="stretch")
        return fig
    st.info(f"{run.editor} does not change the model's weights (it keeps the edit outside them), so there "
            "is no weight delta to show.")
    return None


def _hover(emb: analysis.EmbeddingSet) -> list[str]:
    """Hover text per sentence: group, top-1 before and after, and how far it moved in the full space."""
    moved = emb.moved
    norm = [float((v.astype("float64") ** 2).sum() ** 0.5) for v in emb.before]
    return [f"{html.escape(s)}<br>group: {analysis.GROUP_LABELS.get(g, g)}"
            f"<br>top-1 before: {html.escape(tb)}<br>top-1 after: {html.escape(ta)}"
            f"<br>moved ‖Δh‖ = {m:.3g} ({m / n if n else 0:.1%} of ‖h‖, full space)"
            for s, g, tb, ta, m, n in zip(emb.sentences, emb.groups, emb.top1_before, emb.top1_after, moved, norm)]


def _selected(event, fig) -> list[int]:
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


def projection_panel(run: analysis.EditRun, key: str, height: int = 560):
    """Method, embedding and colour choices, the joint projection with arrows, the selected point's k
    nearest neighbours ringed and listed, and how far the 2-D moves follow the full-space ones."""
    if not run.embeddings:
        st.info("This run has no embeddings.")
        return None
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
    # The selection lives in session state, not in the chart: a chart redrawn with other rings, colours
    # or another method is a new widget with an empty selection, and the selection must survive that.
    ss = st.session_state
    n = len(emb.sentences)
    lasso = [i for i in ss.get("_proj_lasso", []) if 0 <= i < n]
    sel = ss.get("proj_selected")
    sel = sel if isinstance(sel, int) and 0 <= sel < n else None
    if sel is not None and len(lasso) > 1:
        sel = st.selectbox(f"{len(lasso)} sentences selected; neighbours of", lasso, index=lasso.index(sel)
                           if sel in lasso else 0, format_func=lambda i: emb.sentences[i], key=f"{key}-pick")
        ss["proj_selected"] = sel
    rings = ((), ())
    if sel is not None:
        rings = ([i for i, _ in nearest_neighbours(emb.before, sel, k)],
                 [i for i, _ in nearest_neighbours(emb.after, sel, k)])
    fig = figures.projection_figure(proj.before, proj.after, emb.groups, _hover(emb), labels=analysis.GROUP_LABELS,
                                    height=height, colour=colour, axis_titles=axis_titles(proj), neighbours=rings,
                                    highlight=() if sel is None else (sel,))
    event = st.plotly_chart(fig, key=f"{key}-{run.run_id}-{method}-{pooling}", on_select="rerun",
                            selection_mode=("points", "box", "lasso"), width="stretch")
    picked = _selected(event, fig)
    if picked and (sel not in picked or sorted(picked) != sorted(lasso or [sel])):
        ss["proj_selected"], ss["_proj_lasso"] = picked[0], picked
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
        st.markdown(f"**Nearest neighbours of** “{emb.sentences[sel]}”: the {k} nearest (full space, euclidean; "
                    "ringed in the plot: dotted before, solid after)")
        show_frame(pd.DataFrame(analysis.neighbour_table(emb, sel, k)), key=f"{key}-nn-{run.run_id}")
        st.button("Clear selection", key=f"{key}-clear", on_click=clear_selection)
    return fig


def embeddings_csv(run: analysis.EditRun, projections: dict) -> str:
    """Sentences, groups, distance moved and every projection computed so far, as CSV."""
    emb = next(iter(run.embeddings.values()))
    df = pd.DataFrame({"sentence": emb.sentences, "group": emb.groups, "top1_before": emb.top1_before,
                       "top1_after": emb.top1_after, "moved_full_space": emb.moved})
    for (rid, method, pooling), proj in projections.items():
        if rid == run.run_id:
            for j, axis in enumerate("xy"):
                df[f"{method}_{pooling}_{axis}_before"] = proj.before[:, j]
                df[f"{method}_{pooling}_{axis}_after"] = proj.after[:, j]
    return df.to_csv(index=False)


def run_json(run: analysis.EditRun) -> str:
    """The "Config + results (JSON)" export: strict JSON (NaN and Infinity as null, ``sss_core.jsonio``);
    the model is named by ``LoadedModel.name``, never by a path of the server."""
    return to_json(run.to_json_dict(), indent=True)


def export_buttons(run: analysis.EditRun, figs: dict[str, Any], key: str = "export") -> None:
    """Download the run's config and results (JSON), tables (CSV) and figures (standalone HTML)."""
    stem = f"sss-{run.editor}-{run.run_id}"
    projections = dict(state.projection_cache())  # the callables below run outside the script thread
    cols = st.columns(3 + len(figs))
    cols[0].download_button("Config + results (JSON)", lambda: run_json(run),
                            f"{stem}.json", "application/json", key=f"{key}-json-{run.run_id}", on_click="ignore")
    cols[1].download_button("Probe table (CSV)", lambda: probe_frame(run).to_csv(index=False), f"{stem}-probes.csv",
                            "text/csv", key=f"{key}-csv-{run.run_id}", on_click="ignore")
    cols[2].download_button("Embeddings (CSV)", lambda: embeddings_csv(run, projections) if run.embeddings else "",
                            f"{stem}-embeddings.csv", "text/csv", key=f"{key}-emb-{run.run_id}", on_click="ignore",
                            disabled=not run.embeddings)
    for col, (name, fig) in zip(cols[3:], figs.items()):
        if fig is not None:
            r = run.case.request
            title = f"SSS Lab: {name.lower()}, {run_label(run)}, {r.prompt!r} -> {r.target_new!r}"
            col.download_button(f"{name} (HTML)", lambda fig=fig, title=title: figures.figure_html(fig, title),
                                f"{stem}-{name.lower().replace(' ', '-')}.html", "text/html",
                                key=f"{key}-html-{name}-{run.run_id}", on_click="ignore")


def chart_with_table(fig, df: pd.DataFrame, stem: str, key: str, table_label: str = "Table",
                     title: str = "SSS Lab") -> None:
    """A figure, the table behind it, and both as downloads: the table as CSV, the figure as HTML
    (``title`` is the HTML page's title)."""
    st.plotly_chart(fig, key=f"{key}-fig", width="stretch")
    show_frame(df, key=f"{key}-table")
    c1, c2 = st.columns(2)
    with c1:
        frame_csv_button(df, f"{table_label} (CSV)", f"{stem}.csv", key=f"{key}-csv")
    c2.download_button("Figure (HTML)", lambda: figures.figure_html(fig, title), f"{stem}.html", "text/html",
                       key=f"{key}-html", on_click="ignore")


def frame_csv_button(df: pd.DataFrame, label: str, file_name: str, key: str) -> None:
    """A download button for ``df`` as CSV."""
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    st.download_button(label, buf.getvalue(), file_name, "text/csv", key=key, on_click="ignore")


# --- the Hypothesis view --------------------------------------------------------------------------------

def verdict_line(c) -> str:
    """One Markdown line of a correlation (evaluation.hypothesis.Correlation): rho, its CI, the sign the
    paper predicts and the verdict, e.g. "λ_max before ~ damage: ρ = +0.262 (95% CI +0.101 to +0.412, n = 50;
    paper predicts > 0) → **supports**"."""
    if _missing(c.rho):
        return f"{pair_label(c)}: ρ undefined ({c.points} edits; too few, or a constant column)"
    return (f"{pair_label(c)}: ρ = {c.rho:+.3f} (95% CI {c.lo:+.3f} to {c.hi:+.3f}, n = {c.points}; "
            f"paper predicts {PREDICTS[c.expected_sign]}) → **{c.verdict}**")


def _clicked_edit(event, rows: pd.DataFrame) -> tuple | None:
    """(row label, editor) of the point clicked in the hypothesis scatter, or None."""
    try:
        points = event.selection.points if event is not None else []
    except AttributeError:
        points = (event or {}).get("selection", {}).get("points", [])
    for p in points or []:
        data = p.get("customdata")
        if isinstance(data, (list, tuple)) and len(data) == 2 and data[0] in rows.index:
            return data[0], data[1]
    return None


def hypothesis_results(frame: pd.DataFrame, corrs, effects: pd.DataFrame, key: str, c_of,
                       settings: dict[str, str] | None = None) -> None:
    """The Hypothesis view's results: the verdicts, the scatter (a click opens that edit in the Edit
    view), the correlation table and the paired effect of SSS, each with its export.

    ``frame``: the results frame; ``corrs``: ``hypothesis.correlations`` of its single edits;
    ``effects``: ``app.hypothesis.sss_effect_frame``; ``c_of(editor)``: the C an edit of that editor
    ran with (None: no C), for the Edit view; ``settings``: editor -> the settings it ran with, in words
    (shown above the verdicts and as a column of the correlations' CSV).
    """
    rows = hypothesis_rows(frame)
    if settings:
        st.markdown("**Settings of each editor in these edits:** "
                    + "; ".join(f"{name}: {text}" for name, text in settings.items()))
    if rows.empty:
        st.info("No single edit finished without an error yet: nothing to correlate.")
        return
    x_columns = [x for x in figures.HYPOTHESIS_X if x in rows and rows[x].notna().any()]
    st.subheader("Verdicts: does sparsity before the edit predict the damage?")
    with st.container(key=f"{key}-verdicts"):
        for editor in dict.fromkeys(c.editor for c in corrs):
            lines = [verdict_line(c) for c in corrs if c.editor == editor and c.y == "locality_drop"]
            st.markdown(f"**{editor}**\n\n" + "\n".join(f"- {line}" for line in lines))
    if "knn_distance" not in rows:
        st.info("These results carry no k-NN distance and no target NLL (a report's cases.csv keeps neither; "
                "the bench stores them in results.jsonl): only λ_max before ~ damage is shown, without the "
                "partial correlation.")
    rho = {(c.editor, c.x): c.rho for c in corrs if c.y == "locality_drop" and c.control is None}
    fig = figures.hypothesis_scatter(rows, x_columns, rho)
    event = st.plotly_chart(fig, key=f"{key}-scatter-{len(rows)}", on_select="rerun", selection_mode="points",
                            width="stretch")
    st.caption("One point per edit. Sparse = small λ_max or large kNN distance; the paper predicts less damage "
               "there (ρ of λ_max ~ damage > 0, ρ of kNN distance ~ damage < 0). Click a point to open that "
               "edit in the Edit view, where it is run again (a world fact gets the world's probes, so its "
               "neighbours may be sampled differently from this run's).")
    clicked = _clicked_edit(event, rows)
    if clicked is not None:
        row = rows.loc[clicked[0]]
        editor = clicked[1] if clicked[1] in EDITORS else row["editor"]
        state.open_in_edit(row["prompt"], None, row["target_new"], editor, c_of(editor),
                           resources.preset_for(row["prompt"], row["target_new"]))
        st.switch_page("app/views/edit.py")
    st.subheader("Spearman ρ per editor, with the partial ρ given the target's NLL")
    table = correlation_frame(corrs, settings)
    show_frame(table, key=f"{key}-corr", formats={"ρ (Spearman)": "+.3f", "CI low": "+.3f", "CI high": "+.3f",
                                                  "p": ".2g"})
    st.caption("95% CI: bootstrap over edit prompts (an edit prompt repeated under several seeds is resampled "
               "as one cluster); 'supports' / 'contradicts': the CI excludes 0 on / against the side the paper "
               "predicts. '| target NLL' partials the new target's NLL (J of Eq. 8) out of both ranks: λ_max is "
               "a gradient of J, so a surprising target raises λ_max and the size of the edit alike. "
               "The statistics are the bench report's (sss_core.evaluation.hypothesis).")
    c1, c2 = st.columns(2)
    with c1:
        frame_csv_button(table, "Correlations (CSV)", "sss-hypothesis.csv", key=f"{key}-corr-csv")
    c2.download_button("Scatter (HTML)", lambda: figures.figure_html(fig, "SSS Lab: the sparse-space hypothesis"),
                       "sss-hypothesis.html", "text/html", key=f"{key}-scatter-html", on_click="ignore")
    st.subheader("What SSS changed, paired")
    if effects.empty:
        st.info("No editor ran both with and without SSS on the same edits (e.g. ft-l and ft-l+sss): no paired "
                "effect to show.")
        return
    chart_with_table(figures.sss_effect_figure(effects), effects, "sss-effect", key=f"{key}-effect",
                     table_label="Paired effect", title="SSS Lab: the paired effect of SSS")
    st.caption("Same seed, same case, editor with SSS minus the same editor without, per metric (a fraction; "
               "the chart in percentage points), with the bench report's bootstrap 95% CI over cases.")


# --- Compare: what B did differently from A -----------------------------------------------------------------

SAME_P = 1e-6  # probabilities closer than this count as identical
SAME_COSINE = 0.9999  # weight deltas at least this parallel (and of equal norm) count as the same edit


def paired_probe_frame(a: analysis.EditRun, b: analysis.EditRun) -> pd.DataFrame:
    """Per probe of the shared request: the change of P(old answer) under A, under B, and A minus B
    (``analysis.paired_probe_differences``), with the same difference for P(new) and the top-1 after each.
    Probes only one run has are left out; ΔP(old) is NaN where the old answer is unknown (portability)."""
    rows_a = {(r.group, r.prompt): r for r in a.rows}
    rows_b = {(r.group, r.prompt): r for r in b.rows}
    out = []
    for d in analysis.paired_probe_differences(a, b):
        r, q = rows_a[(d["group"], d["prompt"])], rows_b[(d["group"], d["prompt"])]
        out.append({"group": analysis.GROUP_LABELS.get(r.group, r.group), "prompt": r.prompt, "old answer": r.old,
                    "ΔP(old) A": d["delta_p_old_a"], "ΔP(old) B": d["delta_p_old_b"], "ΔP(old) A − B": d["difference"],
                    "ΔP(new) A − B": (r.p_new_after - r.p_new_before) - (q.p_new_after - q.p_new_before),
                    "top-1 after A": r.top1_after, "top-1 after B": q.top1_after,
                    "same top-1": r.top1_after == q.top1_after})
    return pd.DataFrame(out, columns=["group", "prompt", "old answer", "ΔP(old) A", "ΔP(old) B", "ΔP(old) A − B",
                                      "ΔP(new) A − B", "top-1 after A", "top-1 after B", "same top-1"])


def delta_cosine_of(a: analysis.EditRun, b: analysis.EditRun) -> tuple[dict[str, float], float | None]:
    """The cosine between A's and B's weight deltas: per parameter (``analysis.delta_cosine``) and over all
    edited parameters together (None when either run changed no weight, or a parameter's cosine is NaN).

    The overall cosine combines the core's per-parameter cosines with the delta norms:
    cos = sum_p cos_p ||a_p|| ||b_p|| / (||a|| ||b||), the cosine of the concatenated deltas.
    """
    per = analysis.delta_cosine(a, b)
    na, nb = a.delta_norms or {}, b.delta_norms or {}
    if not per or any(_missing(v) for v in per.values()) or set(per) - set(na) - set(nb):
        return per, None
    total_a = math.sqrt(sum(na.get(p, 0.0) ** 2 for p in per))
    total_b = math.sqrt(sum(nb.get(p, 0.0) ** 2 for p in per))
    if total_a == 0 or total_b == 0:
        return per, None
    return per, sum(per[p] * na.get(p, 0.0) * nb.get(p, 0.0) for p in per) / (total_a * total_b)


def same_edit_text(a: analysis.EditRun, b: analysis.EditRun, paired: pd.DataFrame,
                   cosine: float | None) -> str | None:
    """A sentence saying that A and B made the same edit, when they did; else None.

    Same edit: every probability of every probe equal (within ``SAME_P``) with the same top-1; or the
    same top-1 on every probe and weight deltas of equal norm with cosine at least ``SAME_COSINE``.
    """
    if paired.empty or len(paired) != len(a.rows) or not paired["same top-1"].all():
        return None
    rows_b = {(r.group, r.prompt): r for r in b.rows}
    identical = all(abs(getattr(r, f) - getattr(rows_b[(r.group, r.prompt)], f)) <= SAME_P
                    or (_missing(getattr(r, f)) and _missing(getattr(rows_b[(r.group, r.prompt)], f)))
                    for r in a.rows for f in ("p_old_before", "p_old_after", "p_new_before", "p_new_after"))
    if identical or analysis.same_weight_edit(a, b):
        return (f"A and B made the same edit: on all {len(paired)} probes the top-1 prediction and every "
                f"probability (P(old), P(new), before and after) agree to within {SAME_P:g}.")
    norms_a, norms_b = a.delta_norms or {}, b.delta_norms or {}
    same_norms = set(norms_a) == set(norms_b) and all(
        abs(norms_a[k] - norms_b[k]) <= 1e-3 * max(norms_a[k], norms_b[k], 1e-12) for k in norms_a)
    if cosine is not None and cosine >= SAME_COSINE and same_norms:
        return (f"A and B made the same edit: the same top-1 prediction on all {len(paired)} probes, and weight "
                f"deltas of the same norm with cosine {cosine:.6f}.")
    return None


def compare_projection_panel(runs, labels: list[str], key: str):
    """A and B on one joint projection (one fit over both runs' before and after embeddings), side by side
    with shared axes; a sentence picked here is ringed in both. Returns the figure, or None."""
    a, b = runs
    common = [p for p in a.embeddings if p in b.embeddings]
    if not common:
        st.info("These runs have no embeddings to project.")
        return None
    ea, eb = a.embeddings[common[0]], b.embeddings[common[0]]
    if ea.sentences != eb.sentences:
        st.info("A and B embedded different sentences; no joint projection.")
        return None
    state.setdefault("cmp_proj_method", "pca")
    method = st.radio("Joint projection", METHODS, key="cmp_proj_method", horizontal=True,
                      format_func=lambda m: METHOD_LABELS[m],
                      help="One fit over A's and B's before and after embeddings: both panels share its "
                           "coordinates, so a point in the same place is the same place.")
    cache = state.projection_cache()
    ck = ("compare", a.run_id, b.run_id, method, common[0])
    proj = cached_projection(cache, ck, np.concatenate([ea.before, eb.before]),
                             np.concatenate([ea.after, eb.after]), method, " over both runs")
    if proj is None:
        return None
    n = len(ea.sentences)
    state.setdefault("cmp_selected", None)
    sel = st.session_state.get("cmp_selected")
    sel = sel if isinstance(sel, int) and 0 <= sel < n else None
    coords = {labels[0]: (proj.before[:n], proj.after[:n]), labels[1]: (proj.before[n:], proj.after[n:])}
    fig = figures.joint_projection_figure(coords, ea.groups, {labels[0]: _hover(ea), labels[1]: _hover(eb)},
                                          labels=analysis.GROUP_LABELS, highlight=() if sel is None else (sel,),
                                          axis_titles=axis_titles(proj), height=520)
    event = st.plotly_chart(fig, key=f"{key}-joint-{a.run_id}-{b.run_id}-{method}", on_select="rerun",
                            selection_mode="points", width="stretch")
    picked = _selected(event, fig)
    if picked and picked[0] != sel:
        st.session_state["cmp_selected"] = picked[0]
        st.rerun()  # ring it in both panels
    st.caption("One joint fit over A's and B's embeddings before (hollow) and after (filled) the edit; the panels "
               "share their axes. Click a sentence in either panel to ring it in both and compare its move.")
    if sel is not None:
        st.markdown(f"**“{ea.sentences[sel]}”** ({analysis.GROUP_LABELS.get(ea.groups[sel], ea.groups[sel])}): "
                    f"moved ‖Δh‖ = {ea.moved[sel]:.3g} under {labels[0]}, {eb.moved[sel]:.3g} under {labels[1]} "
                    "(full space)")
    return fig


def paired_panel(runs, labels: list[str], key: str) -> pd.DataFrame:
    """The paired differences of A and B: per probe ΔP(old) under A minus under B (table and bars), the norm
    of each weight delta and the cosine between them, the optimisation trajectories, and a sentence when A
    and B made the same edit. Returns the per-probe table."""
    a, b = runs
    paired = paired_probe_frame(a, b)
    per_parameter, cosine = delta_cosine_of(a, b)
    with st.container(key=f"{key}-paired"):
        st.subheader("Paired differences: A minus B")
        same = same_edit_text(a, b, paired, cosine)
        if same:
            st.success(same, icon=":material/drag_handle:")
        names = sorted(set(a.delta_norms or {}) | set(b.delta_norms or {}))
        cols = st.columns(3)
        for col, label, run in zip(cols, labels, runs):
            total = math.sqrt(sum(v ** 2 for v in (run.delta_norms or {}).values())) if run.delta_norms else None
            col.metric(f"‖ΔW‖ {label}", _fmt(total, ".4g"),
                       help="Frobenius norm of the whole weight change (all edited parameters together)")
        cols[2].metric("cos(ΔW A, ΔW B)", _fmt(cosine, ".4f"),
                       help="Cosine between the two flattened weight deltas: 1 = the same direction")
        if names:
            norms = pd.DataFrame([{"parameter": k, f"‖ΔW‖ {labels[0]}": (a.delta_norms or {}).get(k, math.nan),
                                   f"‖ΔW‖ {labels[1]}": (b.delta_norms or {}).get(k, math.nan),
                                   "cosine": per_parameter.get(k, math.nan)} for k in names])
            show_frame(norms, key=f"{key}-norms", formats={c: ".4g" for c in norms.columns if c != "parameter"})
        show_frame(paired, key=f"{key}-probes", formats={c: "+.4f" for c in paired.columns if c.startswith("ΔP")})
        st.caption("ΔP(old) = P(old answer) after − before, under each run; A − B < 0: A took more probability "
                   "from the old answer than B (for a locality probe, more damage). P is the whole answer's "
                   "teacher-forced probability.")
        ok = paired[paired["ΔP(old) A − B"].notna()]
        if not ok.empty:
            fig = figures.paired_difference_figure(list(ok["prompt"]), [r for r in ok["group"]],
                                                   list(ok["ΔP(old) A − B"]), (labels[0], labels[1]))
            st.plotly_chart(fig, key=f"{key}-paired-fig-{a.run_id}-{b.run_id}", width="stretch")
            st.download_button("Paired differences (HTML)", lambda: figures.figure_html(fig, "SSS Lab: A − B"),
                               "sss-compare-paired.html", "text/html", key=f"{key}-paired-html", on_click="ignore")
        frame_csv_button(paired, "Paired differences (CSV)", "sss-compare-paired.csv", key=f"{key}-paired-csv")
        histories = {label: trajectory_of(run) for label, run in zip(labels, runs)}
        histories = {k: v for k, v in histories.items() if v}
        if histories:
            fig = figures.trajectory_figure(histories)
            st.plotly_chart(fig, key=f"{key}-trajectory-{a.run_id}-{b.run_id}", width="stretch")
            st.download_button("Trajectory (HTML)", lambda: figures.figure_html(fig, "SSS Lab: optimisation"),
                               "sss-compare-trajectory.html", "text/html", key=f"{key}-traj-html", on_click="ignore")
        else:
            st.caption("No optimisation trajectory in these runs (an editor without steps, or a core without "
                       "the per-step record).")
    return paired


def trajectory_of(run: analysis.EditRun) -> list[dict]:
    """The run's optimisation trajectory as the core records it (``EditRun.trajectory``): one dict per step
    with "loss" (the edit loss, nats) and "sss" (the SSS term, NaN without it); [] when the editor has no steps."""
    return figures.trajectory_steps(run.trajectory)

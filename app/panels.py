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

import pandas as pd
import streamlit as st

from app import figures, resources, state
from app.messages import show_error
from sss_core import analysis
from sss_core.editors import EDITORS
from sss_core.jsonio import to_json
from sss_core.projection import METHOD_LABELS, METHODS, project

POOLING_LABELS = {"last": "last token", "mean": "mean of tokens"}


def _fmt(x: float | None, spec: str = ".3g") -> str:
    """A number for a metric card; "n/a" for None or NaN."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def run_caption(run: analysis.EditRun) -> str:
    """One line of Markdown naming the editor (and its C where it uses SSS), the model and the request."""
    r = run.case.request
    spec = EDITORS.get(run.editor)
    # run.c is None without a C field; an editor that does not use SSS by default (ft-l) shows no C either
    c = f", C = {run.c:g}" if run.c is not None and spec is not None and spec.uses_sss else ""
    return (f"**{run.editor}**{c} on `{run.model_name.rsplit('/', 1)[-1]}`: {r.prompt!r} -> **{r.target_new}** "
            f"(run `{run.run_id}`, {run.seconds_total:.1f} s)")


def metrics_row(run: analysis.EditRun) -> None:
    """lambda_max before and after the edit and the four EasyEdit metrics as cards; the request's warnings."""
    res = run.result
    cols = st.columns(6)
    lb, la = res.lambda_max_before, res.lambda_max_after
    cols[0].metric("λ_max before", _fmt(lb), help="SSS metric of the edit prompt and new target (paper Eq. 9)")
    cols[1].metric("λ_max after", _fmt(la), delta=None if math.isnan(la - lb) else f"{la - lb:+.3g}",
                   delta_color="off")
    for col, name in zip(cols[2:], ("reliability", "generality", "locality", "portability")):
        col.metric(name, _fmt(res.metrics.get(name, math.nan), ".2f"))
    for w in run.warnings:
        st.warning(w)


def _badge(row: analysis.ProbeRow) -> str:
    """The top-1 column: same, or FLIPPED with a tick where the edit wants it and a cross where it is damage."""
    if not row.flipped:
        return "same"
    if row.wanted_flip is True:
        return "FLIPPED ✓"
    if row.wanted_flip is False:
        return "FLIPPED ✗ damage"
    return "FLIPPED"


def probe_frame(run: analysis.EditRun) -> pd.DataFrame:
    """The probability table as a DataFrame (what the Edit page shows and the CSV export holds)."""
    rows = []
    for r in run.rows:
        rows.append({"group": analysis.GROUP_LABELS.get(r.group, r.group), "prompt": r.prompt,
                     "top-1": _badge(r), "top-1 before": r.top1_before, "top-1 after": r.top1_after,
                     "old answer": r.old or "", "P(old) before": r.p_old_before, "P(old) after": r.p_old_after,
                     "new answer": r.new, "P(new) before": r.p_new_before, "P(new) after": r.p_new_after,
                     "ΔP(new)": r.p_new_after - r.p_new_before, "score": r.score})
    return pd.DataFrame(rows)


def probe_table(run: analysis.EditRun, key: str = "probes") -> pd.DataFrame:
    """Draw the probability table (see probe_frame) with its caption; returns the DataFrame."""
    df = probe_frame(run)
    prob = {c: st.column_config.NumberColumn(c, format="%.3f") for c in df.columns if c.startswith("P(")}
    st.dataframe(df, hide_index=True, key=f"{key}-{run.run_id}", width="stretch", column_config={
        **prob, "ΔP(new)": st.column_config.NumberColumn("ΔP(new)", format="%+.3f"),
        "top-1": st.column_config.TextColumn("top-1", width="medium",
                                             help="same, or FLIPPED: ✓ wanted by the edit, ✗ damage"),
        "score": st.column_config.NumberColumn("score", format="%.2f",
                                               help="EasyEdit metric: accuracy, or agreement for locality"),
        "prompt": st.column_config.TextColumn("prompt", width="large")})
    st.caption("P(·) is the probability of the whole answer given the prompt (teacher forced). "
               "Top-1 is the most likely next token. ✓: a flip the edit wants (edit prompt, paraphrases, "
               "aliases); ✗: a flip that damages knowledge the edit should leave alone.")
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


def projection_panel(run: analysis.EditRun, key: str, height: int = 560):
    """Method choice, the joint projection with arrows, and nearest neighbours of a selected point."""
    if not run.embeddings:
        st.info("This run has no embeddings.")
        return None
    state.setdefault(state.PROJ_METHOD, "pca")
    poolings = list(run.embeddings)
    if st.session_state.get(state.PROJ_POOLING) not in poolings:
        st.session_state[state.PROJ_POOLING] = poolings[0]
    c1, c2 = st.columns(2)
    method = c1.radio("Projection", METHODS, key=state.PROJ_METHOD, horizontal=True,
                      format_func=lambda m: METHOD_LABELS[m],
                      help="One joint fit over the before and after points. PCA is deterministic and linear: "
                           "sentences the edit did not move stay put. UMAP/t-SNE show neighbourhoods but "
                           "distort distances.")
    pooling = c2.radio("Sentence embedding", poolings, key=state.PROJ_POOLING, horizontal=True,
                       format_func=lambda p: POOLING_LABELS.get(p, p),
                       help="The last hidden state (after the final norm) at the last token, or averaged "
                            "over the sentence's tokens")
    emb = run.embeddings[pooling]
    # Compile UMAP in the background once the first results are on screen (not earlier: the compile
    # holds the GIL and would slow the first edit); a UMAP asked for meanwhile waits for it.
    warm = resources.umap_warmup()
    if method == "umap" and not warm.done.is_set():
        with st.spinner("Compiling UMAP (once per server start, about 10-15 s)..."):
            warm.done.wait(timeout=120)
    cache = state.projection_cache()
    ck = (run.run_id, method, pooling)
    if ck not in cache:
        try:
            with st.spinner(f"Fitting {METHOD_LABELS[method]}..."):
                cache[ck] = project(emb.before, emb.after, method)
        except Exception as exc:  # noqa: BLE001
            show_error(exc, f"{METHOD_LABELS[method]} failed")
            return None
    proj = cache[ck]
    if proj.message:
        st.info(proj.message)
    fig = figures.projection_figure(proj.before, proj.after, emb.groups, _hover(emb),
                                    labels=analysis.GROUP_LABELS, height=height)
    event = st.plotly_chart(fig, key=f"{key}-{run.run_id}-{method}-{pooling}", on_select="rerun",
                            selection_mode=("points", "box", "lasso"), width="stretch")
    variance = (f" The two PCA axes hold {sum(proj.explained_variance):.0%} of the variance."
                if proj.explained_variance else "")
    st.caption("Hollow: before the edit; filled: after; arrows go from before to after. 2-D distances are "
               "approximate (a projection of a " + f"{emb.before.shape[1]}-dimensional space);" +
               " the hover's ‖Δh‖ is measured in the full space." + variance +
               " Click a point, or lasso several, to list nearest neighbours before vs after.")
    selected = _selected(event, fig)
    if selected:
        if len(selected) > 1:
            pick = st.selectbox(f"{len(selected)} sentences selected; neighbours of", selected,
                                format_func=lambda i: emb.sentences[i], key=f"{key}-pick")
        else:
            pick = selected[0]
        st.markdown(f"**Nearest neighbours of** “{emb.sentences[pick]}” (full space, euclidean)")
        st.dataframe(pd.DataFrame(analysis.neighbour_table(emb, pick)), hide_index=True, width="stretch",
                     key=f"{key}-nn-{run.run_id}")
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
            col.download_button(f"{name} (HTML)", lambda fig=fig: figures.figure_html(fig),
                                f"{stem}-{name.lower().replace(' ', '-')}.html", "text/html",
                                key=f"{key}-html-{name}-{run.run_id}", on_click="ignore")


def chart_with_table(fig, df: pd.DataFrame, stem: str, key: str, table_label: str = "Table") -> None:
    """A figure, the table behind it, and both as downloads: the table as CSV, the figure as HTML."""
    st.plotly_chart(fig, key=f"{key}-fig", width="stretch")
    st.dataframe(df, hide_index=True, width="stretch", key=f"{key}-table")
    c1, c2 = st.columns(2)
    with c1:
        frame_csv_button(df, f"{table_label} (CSV)", f"{stem}.csv", key=f"{key}-csv")
    c2.download_button("Figure (HTML)", lambda: figures.figure_html(fig), f"{stem}.html", "text/html",
                       key=f"{key}-html", on_click="ignore")


def frame_csv_button(df: pd.DataFrame, label: str, file_name: str, key: str) -> None:
    """A download button for ``df`` as CSV."""
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    st.download_button(label, buf.getvalue(), file_name, "text/csv", key=key, on_click="ignore")

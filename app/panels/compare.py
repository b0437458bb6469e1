"""The Compare view's panels: what run B did differently from run A (paired differences per probe, the
weight deltas and their cosine, the optimisation trajectories) and both runs on one joint projection.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from app import figures, state
from app.panels.common import cached_projection, fmt_number, frame_csv_button, is_missing, show_frame
from app.panels.projection import axis_titles, hover_texts, selected_points
from app.hypothesis import settings_text
from app.same_edits import reason_for
from sss_core import analysis
from sss_core.projection import METHOD_LABELS, METHODS

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
    if not per or any(is_missing(v) for v in per.values()) or set(per) - set(na) - set(nb):
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
                    or (is_missing(getattr(r, f)) and is_missing(getattr(rows_b[(r.group, r.prompt)], f)))
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


def same_scores_text(a: analysis.EditRun, b: analysis.EditRun, paired: pd.DataFrame,
                     cosine: float | None) -> str | None:
    """A sentence when A and B did not make the same edit (``same_edit_text`` is None) but score alike: the same
    top-1 after the edit and the same score on every probe, as the Hypothesis view counts paired cases
    edited alike. None otherwise."""
    if paired.empty or len(paired) != len(a.rows) or not paired["same top-1"].all():
        return None
    scores_b = {(r.group, r.prompt): r.score for r in b.rows}
    if not all(r.score == scores_b[(r.group, r.prompt)] or (is_missing(r.score) and
                                                            is_missing(scores_b[(r.group, r.prompt)]))
               for r in a.rows):
        return None
    weights = f" (cosine {cosine:.4f} between their weight deltas)" if cosine is not None else ""
    return (f"A and B score alike: the same top-1 prediction and the same score on all {len(paired)} probes, "
            f"though not the same edit: their probabilities differ{weights}. The Hypothesis view counts such "
            "a pair as edited alike.")


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
    fig = figures.joint_projection_figure(coords, ea.groups, {labels[0]: hover_texts(ea), labels[1]: hover_texts(eb)},
                                          labels=analysis.GROUP_LABELS, highlight=() if sel is None else (sel,),
                                          axis_titles=axis_titles(proj), height=520)
    event = st.plotly_chart(fig, key=f"{key}-joint-{a.run_id}-{b.run_id}-{method}", on_select="rerun",
                            selection_mode="points", width="stretch")
    picked = selected_points(event, fig)
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
            # the measured reason, where A and B are the FT-L family with and without the SSS term
            reason = reason_for([a.editor, b.editor], {r.editor: settings_text(r.editor, r.record.settings)
                                                       for r in runs if r.record is not None}) \
                if a.editor != b.editor else ""
            st.success(same + (" " + reason if reason else ""), icon=":material/drag_handle:")
        elif (alike := same_scores_text(a, b, paired, cosine)) is not None:
            st.info(alike, icon=":material/drag_handle:")
        names = sorted(set(a.delta_norms or {}) | set(b.delta_norms or {}))
        cols = st.columns(3)
        for col, label, run in zip(cols, labels, runs):
            total = math.sqrt(sum(v ** 2 for v in (run.delta_norms or {}).values())) if run.delta_norms else None
            col.metric(f"‖ΔW‖ {label}", fmt_number(total, ".4g"),
                       help="Frobenius norm of the whole weight change (all edited parameters together)")
        cols[2].metric("cos(ΔW A, ΔW B)", fmt_number(cosine, ".4f"),
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

"""The ripple map panels (Ripple view): every world fact embedded on the unedited model and projected, each
coloured by what an edit did to it; the damaged facts listed; two runs side by side and their paired difference.

The facts' damage is the run's own world-locality reading (``EditRun.world``, made by the shared pipeline
``analysis.run_record``); their embeddings and distances from the edit prompt are ``damage_distance.FactSpace``
(the unedited model, cached per model, pooling and metric); the projection is ``projection.project``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from app.panels.common import frame_csv_button, run_caption, run_label
from sss_core.damage_figures import ripple_figure
from sss_core.evaluation.damage_distance import FactSpace, edit_damage, paired_difference, quantile_edges
from sss_core.evaluation.presets import default_world
from sss_core.projection import METHOD_LABELS, project

DROP_TITLE = "drop in P(old answer), before − after"
DIFF_TITLE = "B − A: drop in P(old answer)"
BINS = 4  # distance bins of the paired difference table (quantiles of the facts' distances)


@st.cache_resource(show_spinner="Embedding the world's facts (once per model, pooling and metric)...", max_entries=4)
def fact_space(_lm, model_name: str, pooling: str, metric: str) -> FactSpace:
    """The world facts embedded on ``_lm`` (unedited; read under its lock), cached across sessions by
    (model_name, pooling, metric)."""
    return FactSpace(_lm.model, _lm.tok, default_world().facts, pooling, metric)


@st.cache_data(show_spinner="Projecting the world's facts...", max_entries=16)
def fact_projection(_space: FactSpace, key: tuple, prompt: str,
                    method: str) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(facts' (n, 2) coordinates, the edit prompt's (2,), a note when the method fell back) from one joint fit
    of the facts and the prompt. ``key`` (model, pooling, metric) names ``_space`` for the cache."""
    with_prompt = np.vstack([_space.embeddings, _space.prompt_embedding(prompt)[None, :]])
    proj = project(with_prompt, method=method)
    return proj.before[:-1], proj.before[-1], proj.message


def damaged_frame(run, distances: np.ndarray) -> pd.DataFrame:
    """The facts that should not change whose top answer changed (``WorldLocality.damaged``), in the world's
    order, with their before/after answers, P(old answer) before/after and distance from the edit prompt."""
    w = run.world
    rows = [{"fact": f"{f.prompt} {f.object}", "relation": f.relation, "top answer before": f.before,
             "top answer after": f.after, "moved": f.direction, "P(old) before": round(f.p_before, 4),
             "P(old) after": round(f.p_after, 4), "distance": round(float(distances[i]), 3)}
            for i, f in enumerate(w.facts) if f.changed and not f.should_change]
    return pd.DataFrame(rows, columns=["fact", "relation", "top answer before", "top answer after", "moved",
                                       "P(old) before", "P(old) after", "distance"])


def hover_texts(run, distances: np.ndarray) -> list[str]:
    """Per world fact: the fact, its top answer before and after, P(old answer) before and after, its distance."""
    return [f"{html.escape(f.prompt)} <b>{html.escape(f.object)}</b><br>top answer: {html.escape(f.before)} → "
            f"{html.escape(f.after)}{' (changed)' if f.changed else ''}<br>P(old answer): {f.p_before:.3f} → "
            f"{f.p_after:.3f}<br>distance from the edit prompt: {d:.3f}"
            for f, d in zip(run.world.facts, distances)]


def _drops(run) -> np.ndarray:
    return np.array([f.p_before - f.p_after for f in run.world.facts])


def run_map(run, space: FactSpace, coords, prompt_xy, label: str, key: str, limit: float) -> None:
    """One run's ripple map, its summary line and its damaged facts (an HTML table: every row in the page)."""
    w, distances = run.world, space.distances(run.case.request.prompt)
    st.markdown(f"#### {label}")
    st.markdown(run_caption(run))
    mean_drop = float(np.mean(_drops(run)[~_edited(run)]))
    st.markdown(f"**{w.n_damaged} of the {len(w.others)} other facts changed their top answer** (world locality "
                f"{w.world_locality:.3f}); mean drop in P(old answer) {mean_drop:+.4f}.")
    fig = ripple_figure(coords, prompt_xy, _drops(run), np.array([f.changed for f in w.facts]), _edited(run),
                        hover_texts(run, distances), DROP_TITLE, limit, height=560)
    st.plotly_chart(fig, key=f"{key}-map-{run.run_id}", width="stretch")
    frame = damaged_frame(run, distances)
    with st.container(key=f"{key}-damaged"):
        moved = frame["moved"].value_counts() if len(frame) else {}
        st.markdown(f"**The {len(frame)} damaged facts** (top answer changed; the edited fact left out): "
                    f"{moved.get('away from the answer', 0)} moved away from the world's answer, "
                    f"{moved.get('to the answer', 0)} moved to it (a near tie tipped the right way, still a change "
                    f"in EasyEdit's locality), {moved.get('between others', 0)} between other tokens.")
        if len(frame):
            with st.container(height=360):
                st.table(frame)
    frame_csv_button(frame, "Damaged facts (CSV)", f"sss-ripple-{key}.csv", key=f"{key}-csv-{run.run_id}")


def _edited(run) -> np.ndarray:
    return np.array([f.should_change for f in run.world.facts])


def paired_panel(runs: Sequence, labels: Sequence[str], space: FactSpace, coords, prompt_xy, key: str) -> None:
    """B minus A on the same facts: counts of facts damaged by one run only or both, the map coloured by the
    difference in the drop of P(old answer), and the difference per distance bin with its interval
    (``damage_distance.paired_difference``: a bootstrap over the facts of this one edit)."""
    a, b = runs
    if [f.prompt for f in a.world.facts] != [f.prompt for f in b.world.facts] or \
            a.case.request.prompt != b.case.request.prompt:
        st.warning("A and B are not the same request on the same world: no paired difference.")
        return
    ca, cb = (np.array([f.changed and not f.should_change for f in r.world.facts]) for r in runs)
    only_a, only_b, both = int((ca & ~cb).sum()), int((cb & ~ca).sum()), int((ca & cb).sum())
    st.markdown(f"**Paired, B − A.** Damaged by A only: **{only_a}**; by B only: **{only_b}**; by both: **{both}** "
                f"({int(cb.sum()) - int(ca.sum()):+d} damaged facts with B).")
    distances = space.distances(a.case.request.prompt)
    diff = _drops(b) - _drops(a)
    hover = [f"{t}<br>B − A drop: {d:+.4f}" for t, d in zip(hover_texts(b, distances), diff)]
    fig = ripple_figure(coords, prompt_xy, diff, ca != cb, _edited(a), hover, DIFF_TITLE,
                        title=f"{labels[1]} minus {labels[0]} (ringed: the top answer changed in one run only)")
    fig.data[1].name = "changed in one run only"
    st.plotly_chart(fig, key=f"{key}-diff-{a.run_id}-{b.run_id}", width="stretch")
    da, db = (edit_damage(r.world, distances, lab, r.case.request.case_id or "edit") for r, lab in zip(runs, labels))
    rows = paired_difference([da], [db], quantile_edges([da], BINS), n_boot=1000)
    table = pd.DataFrame([{"measure": "top answer changed (share)" if r.measure == "top_changed" else
                           "drop in P(old answer) (mean)",
                           "distance bin": f"{r.index + 1}: {r.lo_edge:.3g}–{r.hi_edge:.3g}",
                           "facts": r.facts, "B − A": r.difference, "95% CI low": r.lo, "95% CI high": r.hi, "p": r.p}
                          for r in rows])
    st.caption(f"The difference per distance bin (quantiles of the facts' distances from the edit prompt); intervals "
               f"and p from a bootstrap over this edit's facts, not adjusted for the table's {len(rows)} rows.")
    st.dataframe(table, key=f"{key}-bins", hide_index=True)


def ripple_panel(lm, runs: Sequence, pooling: str, metric: str, method: str, key: str = "rip") -> None:
    """Both runs' maps side by side on one projection of the world, their damaged facts, and the paired
    difference. ``runs``: two EditRuns of one request, each with ``world`` measured."""
    space = fact_space(lm, lm.name, pooling, metric)
    prompt = runs[0].case.request.prompt
    coords, prompt_xy, note = fact_projection(space, (lm.name, pooling, metric), prompt, method)
    st.caption(f"{len(space.facts)} world facts, {METHOD_LABELS.get(method, method)} of their {pooling}-pooled "
               f"last hidden states on the unedited model; the star is the edit prompt. Colour: the drop in "
               f"P(old answer) (red: the edit lowered it); ringed: the top answer changed. Distances: {metric}.")
    if note:
        st.info(note)
    labels = [run_label(r, f"{x}: ") for x, r in zip("AB", runs)]
    limit = max(1e-9, *(float(np.abs(_drops(r)[~_edited(r)]).max(initial=0)) for r in runs))
    for col, run, label, k in zip(st.columns(2), runs, labels, ("a", "b")):
        with col:
            run_map(run, space, coords, prompt_xy, label, f"{key}-{k}", limit)
    st.divider()
    paired_panel(runs, labels, space, coords, prompt_xy, key)

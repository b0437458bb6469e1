"""The Hypothesis view's results: the verdicts, the scatter that opens an edit in the Edit view, the
correlation table and the paired effect of SSS.
"""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from app import figures, resources, state
from app.hypothesis import PREDICTS, correlation_frame, hypothesis_rows, pair_label, per_edit_rows
from app.panels.common import chart_with_table, frame_csv_button, is_missing, show_frame
from app.same_edits import paired_sameness, reason_for
from sss_core.editors import EDITORS
from sss_core.evaluation.hypothesis import how_many_tests

def verdict_line(c) -> str:
    """One Markdown line of a correlation (evaluation.hypothesis.Correlation): rho, its CI, the sign the
    paper predicts and the verdict, e.g. "λ_max before ~ damage: ρ = +0.262 (95% CI +0.101 to +0.412, n = 50;
    paper predicts > 0) → **supports**"."""
    if is_missing(c.rho):
        return f"{pair_label(c)}: ρ undefined ({c.points} edits; too few, or a constant column)"
    adjusted = "" if is_missing(c.p_adjusted) else f", p (BH) = {c.p_adjusted:.2g}"
    return (f"{pair_label(c)}: ρ = {c.rho:+.3f} (95% CI {c.lo:+.3f} to {c.hi:+.3f}, n = {c.points}{adjusted}; "
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


def same_edits_notice(frame: pd.DataFrame, key: str, settings: dict[str, str] | None) -> None:
    """Say, for each editor with SSS and the same editor without, how many paired cases they edited alike;
    when all of them, as a notice with the measured reason (``app.same_edits``; ``settings``: editor -> the
    settings it ran with, in words)."""
    for pair in paired_sameness(frame):
        if pair.identical == pair.pairs:
            reason = reason_for([pair.without_sss, pair.with_sss], settings)
            with st.container(key=f"{key}-same-" + re.sub(r"[^A-Za-z0-9_-]", "-", pair.with_sss)):
                st.info(pair.sentence() + (" " + reason if reason else ""), icon=":material/equal:")
        else:
            st.caption(pair.sentence())


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
    same_edits_notice(frame, key, settings)
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
                                                  "p": ".2g", "p (BH)": ".2g"})
    st.caption("95% CI and p: one bootstrap over edit prompts (an edit prompt repeated under several seeds is "
               "resampled as one cluster; the standard error of Fisher's z), so the CI excludes 0 exactly when "
               f"p < 0.05. This table holds {how_many_tests(corrs)}. 'p (BH)' is p adjusted by "
               "Benjamini-Hochberg over these tests (false discovery rate 5%), and 'supports' / 'contradicts' needs "
               "p (BH) < 0.05 with ρ on / against the side the paper predicts. '| target NLL' partials the new target's NLL (J of Eq. 8) out of both ranks: λ_max is "
               "a gradient of J, so a surprising target raises λ_max and the size of the edit alike. "
               "The statistics are the bench report's (sss_core.evaluation.hypothesis).")
    c1, c2, c3 = st.columns(3)
    with c1:
        frame_csv_button(table, "Correlations (CSV)", "sss-hypothesis.csv", key=f"{key}-corr-csv")
    with c3:  # the rows the table was computed from: one per edit, with the measures and each editor's settings
        frame_csv_button(per_edit_rows(frame, settings), "Per-edit rows (CSV)", "sss-hypothesis-edits.csv",
                         key=f"{key}-rows-csv")
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

"""Compare: two editors, or one editor at two values of C, on the same request, side by side."""

import pandas as pd
import streamlit as st

from app import figures, inputs, panels, state

st.title("Compare two edits")
st.caption("The same request edited twice, A and B, each on the unedited model. Advanced settings come from the "
           "Edit page's expander for each editor.")

lm = inputs.model_picker()
request = inputs.request_picker()
col_a, col_b = st.columns(2)
with col_a:
    st.subheader("A")
    state.setdefault("cmp_editor_a", "ft-l")
    a = inputs.editor_picker("cmp_editor_a", "cmp_c_a", advanced=False, label="Editor A")
with col_b:
    st.subheader("B")
    state.setdefault("cmp_editor_b", "ft-l+sss")
    b = inputs.editor_picker("cmp_editor_b", "cmp_c_b", advanced=False, label="Editor B")

if st.button("Run both", type="primary", disabled=lm is None, key="run_compare"):
    runs = tuple(inputs.run_edit_with_status(lm, choice, request, with_background=False) for choice in (a, b))
    if all(r is not None for r in runs):
        state.set_compare_runs(runs)

runs = state.compare_runs()
if runs:
    labels = [f"A: {runs[0].editor}" + (f" C={runs[0].c:g}" if runs[0].c is not None else ""),
              f"B: {runs[1].editor}" + (f" C={runs[1].c:g}" if runs[1].c is not None else "")]
    if labels[0][3:] == labels[1][3:]:
        labels = ["A", "B"]
    st.divider()
    fig = figures.metrics_comparison_figure({label: r.result.metrics for label, r in zip(labels, runs)},
                                            title="A vs B")
    st.plotly_chart(fig, key=f"cmp-metrics-{runs[0].run_id}", width="stretch")
    summary = pd.DataFrame([{"run": label, "editor": r.editor, "C": r.c, "λ_max before": r.result.lambda_max_before,
                             "λ_max after": r.result.lambda_max_after, "seconds": r.seconds_edit,
                             **{k: r.result.metrics.get(k) for k in figures.METRIC_ORDER}}
                            for label, r in zip(labels, runs)])
    st.dataframe(summary, hide_index=True, width="stretch", key="cmp-summary")
    cols = st.columns(2)
    for col, label, run in zip(cols, labels, runs):
        with col:
            st.markdown(f"#### {label}")
            st.markdown(panels.run_caption(run))
            for w in run.warnings:
                st.warning(w)
            panels.probe_table(run, key=f"cmp-{label[0]}")
    panels.frame_csv_button(summary, "Summary (CSV)", "sss-compare.csv", key="cmp-csv")
    st.download_button("Metrics chart (HTML)", lambda: figures.figure_html(fig), "sss-compare.html", "text/html",
                       key="cmp-html", on_click="ignore")

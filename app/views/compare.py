"""Compare: two editors, or one editor at two values of C, on the same request: side by side, on one joint
projection, and as paired differences (A minus B)."""

import pandas as pd
import streamlit as st

from app import figures, inputs, panels, records, state

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

pressed = st.button("Run both", type="primary", disabled=lm is None, key="run_compare")
from_link = not pressed and state.take_link_run()  # a shared link re-runs the comparison it showed
linked = (records.from_link(state.LINK_RECORD), records.from_link(state.LINK_RECORD_B)) if from_link else (None, None)
if (pressed or from_link) and lm is not None:
    if all(r is not None for r in linked):  # exactly the two runs the link recorded
        runs = tuple(records.replay_with_status(lm, record) for record in linked)
    else:
        runs = tuple(inputs.run_edit_with_status(lm, choice, request, with_background=False) for choice in (a, b))
    if all(r is not None for r in runs):
        state.set_compare_runs(runs)
        state.set_failed_attempt("compare", None)
    else:  # the pair still on screen, if any, is an earlier one
        state.set_failed_attempt("compare", " and ".join(f"{x} ({ch.editor}, {request.describe()})"
                                                         for x, r, ch in zip("AB", runs, (a, b)) if r is None)
                                 + " failed")

runs = state.compare_runs()
state.write_link(request.prompt, request.subject, request.target,
                 {"a": a.editor, "ca": a.c, "b": b.editor, "cb": b.c,
                  "rec": records.link_text(runs[0]) if runs else None,
                  "recb": records.link_text(runs[1]) if runs else None}, ran=bool(runs))
if runs:
    labels = [panels.run_label(runs[0], "A: "), panels.run_label(runs[1], "B: ")]
    if labels[0][3:] == labels[1][3:]:
        labels = ["A", "B"]
    st.divider()
    shown = [inputs.differs(r, choice, request) for r, choice in zip(runs, (a, b))]
    panels.earlier_run_notice("compare", runs, " and ".join(f"{x}: {d}" for x, d in zip("AB", shown) if d) or None)
    fig = figures.metrics_comparison_figure({label: r.result.metrics for label, r in zip(labels, runs)},
                                            title="A vs B")
    st.plotly_chart(fig, key=f"cmp-metrics-{runs[0].run_id}", width="stretch")
    summary = pd.DataFrame([{"run": label, "editor": r.editor, "C": panels.shown_c(r.editor, r.c),
                             "λ_max before (new target)": r.result.lambda_max_before,
                             "λ_max after (new target)": r.result.lambda_max_after, "seconds": r.seconds_edit,
                             **{k: r.result.metrics.get(k) for k in figures.METRIC_ORDER}}
                            for label, r in zip(labels, runs)])
    panels.show_frame(summary, key="cmp-summary", formats={"C": "g", "seconds": ".2f",
                                                           **{k: ".2f" for k in figures.METRIC_ORDER}})
    panels.paired_panel(runs, labels, key="cmp")
    st.subheader("A and B on one projection")
    joint_fig = panels.compare_projection_panel(runs, labels, key="cmp")
    cols = st.columns(2)
    for col, label, run in zip(cols, labels, runs):
        with col:
            st.markdown(f"#### {label}")
            st.markdown(panels.run_caption(run))
            panels.run_notices(run)
            panels.probe_table(run, key=f"cmp-{label[0]}", compact=True)
    panels.frame_csv_button(summary, "Summary (CSV)", "sss-compare.csv", key="cmp-csv")
    title = f"SSS Lab: compare {labels[0]} vs {labels[1]}, {runs[0].case.request.prompt!r}"
    st.download_button("Metrics chart (HTML)", lambda: figures.figure_html(fig, title, runs), "sss-compare.html", "text/html",
                       key="cmp-html", on_click="ignore")
    if joint_fig is not None:
        st.download_button("Joint projection (HTML)", lambda: figures.figure_html(joint_fig, title, runs),
                           "sss-compare-projection.html", "text/html", key="cmp-proj-html", on_click="ignore")

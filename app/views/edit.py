"""Edit: pick a model, an editor, C and a fact; run the edit; see what it did."""

import streamlit as st

from app import inputs, panels, state

st.title("Edit a fact")
st.caption("Write one new fact into the model, measure it, and revert: the shared model is never left edited.")

lm = inputs.model_picker()
left, right = st.columns([1, 2])
with left:
    choice = inputs.editor_picker()
with right:
    request = inputs.request_picker()
state.write_query_params(request.prompt, request.subject, request.target, choice.editor, choice.c)

if st.button("Run edit", type="primary", disabled=lm is None, key="run_edit"):
    run = inputs.run_edit_with_status(lm, choice, request)
    if run is not None:
        state.set_last_run(run)

run = state.last_run()
if run is not None:
    st.divider()
    st.markdown(panels.run_caption(run))
    panels.metrics_row(run)
    st.subheader("Predictions before and after")
    panels.probe_table(run, key="edit-probes")
    proj_col, delta_col = st.columns([2, 1])
    with proj_col:
        st.subheader("Projection of the sentences around the edit")
        proj_fig = panels.projection_panel(run, key="edit-proj", height=520)
    with delta_col:
        st.subheader("Which weights changed")
        delta_fig = panels.delta_panel(run)
    st.subheader("Export")
    panels.export_buttons(run, {"Projection": proj_fig, "Weight delta": delta_fig}, key="edit-export")

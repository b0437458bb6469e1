"""Edit: pick a model, an editor, C and a fact; run the edit; see what it did."""

import streamlit as st

from app import inputs, panels, records, state
from app.panels.projection import projection_link_values
from sss_core import analysis

st.title("Edit a fact")
st.caption("Write one new fact into the model, measure it, and revert: the shared model is never left edited.")
st.page_link("app/views/story.py", label="Teaching? The Class story tells the paper's story in five steps",
             icon=":material/co_present:")

lm = inputs.model_picker()
left, right = st.columns([1, 2])
with left:
    choice = inputs.editor_picker()
with right:
    request = inputs.request_picker()

world = st.checkbox("Also score every fact of the world (world locality, a few seconds more)", key="world_locality",
                    help="Reads the top answer of all 2,116 facts of the built-in world before and after the edit: "
                         "world locality is the share of the facts the edit should not change whose top answer did "
                         "not change, beside the sampled locality of the few neighbour probes. Only meaningful on a "
                         "model that knows the world (the shipped one).")
pressed = st.button("Run edit", type="primary", disabled=lm is None, key="run_edit")
from_link = not pressed and state.take_link_run()  # a shared link re-runs the results it showed
linked = records.from_link(state.LINK_RECORD) if from_link else None
if (pressed or from_link) and lm is not None:
    if linked is not None:  # exactly the run the link recorded: settings, probes, seed, analysis options
        records.replay_and_keep(lm, linked, "edit")
    else:
        inputs.run_and_keep(lm, choice, request, "edit", from_link=from_link, world=world)
records.load_run_control(lm)

run = state.last_run()
if run is not None:
    st.divider()
    panels.earlier_run_notice("edit", run, inputs.differs(run, choice, request))
    st.markdown(panels.run_caption(run))
    panels.metrics_row(run)
    panels.salience_panel(run)
    panels.world_panel(run)
    notice = analysis.current_answer_notice(run)  # the target was already the answer: what the edit still did
    if notice is not None:
        st.warning(notice)
    st.subheader("Predictions before and after")
    panels.probe_table(run, key="edit-probes")
    proj_col, delta_col = st.columns([2, 1])
    with proj_col:
        st.subheader("Projection of the sentences around the edit")
        proj_fig = panels.projection_panel(run, key="edit-proj", height=520, plot_width=590)  # 2/3 of the page
    with delta_col:
        st.subheader("Which weights changed")
        delta_fig = panels.delta_panel(run)
    st.subheader("Export")
    panels.export_buttons(run, {"Projection": proj_fig, "Weight delta": delta_fig}, key="edit-export")
    records.link_caption(run)
state.write_query_params(request.prompt, request.subject, request.target, choice.editor, choice.c,
                         ran=run is not None, rec=records.link_text(run),  # the run on screen, exactly
                         **projection_link_values())  # and every projection control

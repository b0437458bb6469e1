"""Projection: the last edit's neighbourhood, full width, with neighbours of a selected point."""

import streamlit as st

from app import inputs, panels, records, state
from app.panels.projection import projection_link_values

st.title("Projection")
st.caption("The sentences around the last edit (edit prompt, paraphrases, neighbours, unrelated attributes and "
           "other world facts as background), embedded with the model's last hidden states before and after.")
run = state.last_run()
if run is None and state.take_link_run():  # a shared link to this page: redo the edit it showed
    lm = inputs.model_from_state()
    linked = records.from_link(state.LINK_RECORD)
    if lm is not None and linked is not None:  # exactly the run the link recorded
        run = records.replay_and_keep(lm, linked, "edit")
    elif lm is not None:
        run = inputs.run_and_keep(lm, inputs.editor_from_state(), inputs.request_from_state(), "edit",
                                  from_link=True)
if run is None:
    choice, request = inputs.editor_from_state(), inputs.request_from_state()
    with st.container(key="proj-no-edit"):
        st.info(f"No edit yet in this session. Run the edit the Edit page holds, {choice.editor} on "
                f"{request.describe()} (the first preset unless you chose another), and see its sentences here; or "
                "choose another edit on the Edit page.", icon=":material/info:")
        c1, c2 = st.columns(2)
        go_run = c1.button(f"Run {choice.editor} on {request.describe()}", key="proj-run-default", type="primary")
        c2.page_link("app/views/edit.py", label="Choose another edit on the Edit page", icon=":material/edit:")
    if go_run:
        lm = inputs.model_from_state()
        if lm is not None and inputs.run_and_keep(lm, choice, request, "edit") is not None:
            st.rerun()  # draw the page of the new run, without the notice above
if run is not None:
    panels.earlier_run_notice("edit", run)
    st.markdown(panels.run_caption(run))
    fig = panels.projection_panel(run, key="proj-page", height=720)
    if fig is not None:
        panels.export_buttons(run, {"Projection": fig}, key="proj-export")
    r = run.case.request
    state.write_query_params(r.prompt, r.subject, r.target_new, run.editor, panels.shown_c(run.editor, run.c),
                             ran=True, rec=records.link_text(run), **projection_link_values())

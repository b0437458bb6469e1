"""Projection: the last edit's neighbourhood, full width, with neighbours of a selected point."""

import streamlit as st

from app import panels, state

st.title("Projection")
st.caption("The sentences around the last edit (edit prompt, paraphrases, neighbours, unrelated attributes and "
           "other world facts as background), embedded with the model's last hidden states before and after.")
run = state.last_run()
if run is None:
    st.info("No edit yet in this session: run one on the Edit page, then come back.")
    st.page_link("app/views/edit.py", label="Go to the Edit page", icon=":material/edit:")
else:
    st.markdown(panels.run_caption(run))
    fig = panels.projection_panel(run, key="proj-page", height=720)
    if fig is not None:
        panels.export_buttons(run, {"Projection": fig}, key="proj-export")

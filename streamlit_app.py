"""SSS Lab: the router. Page config and navigation only; each page lives in app/views/."""

import streamlit as st

from app import panels, records, resources, state
from sss_core.editors import EDITORS
from sss_core.projection import METHODS

st.set_page_config(page_title="SSS Lab", page_icon=":material/hub:", layout="wide")
state.keep_widget_values()
state.load_query_params(resources.preset_for, list(EDITORS), METHODS)
records.adopt_link_records()  # a link's run records shown in the forms; the views replay them
records.show_pending_record()  # a run loaded by "Load a run" shown in the form
panels.link_problems_notice()

pages = [
    st.Page("app/views/edit.py", title="Edit", icon=":material/edit:", default=True),
    st.Page("app/views/projection.py", title="Projection", icon=":material/scatter_plot:"),
    st.Page("app/views/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("app/views/sweep.py", title="C sweep", icon=":material/tune:"),
    st.Page("app/views/hypothesis.py", title="Hypothesis", icon=":material/query_stats:"),
    st.Page("app/views/ripple.py", title="Ripple map", icon=":material/blur_on:"),
    st.Page("app/views/sequential.py", title="Sequential", icon=":material/playlist_add:"),
    st.Page("app/views/results.py", title="Results", icon=":material/folder_open:"),
    st.Page("app/views/story.py", title="Class story", icon=":material/co_present:"),
    st.Page("app/views/about.py", title="About", icon=":material/school:"),
]
st.navigation(pages).run()

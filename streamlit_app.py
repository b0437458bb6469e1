"""SSS Lab: the router. Page config and navigation only; each page lives in app/views/."""

import sys

import streamlit as st

st.set_page_config(page_title="SSS Lab", page_icon=":material/hub:", layout="wide")


def _imported(name: str) -> bool:
    """Is module ``name`` fully imported (not absent, not half-way through another thread's import)?"""
    spec = getattr(sys.modules.get(name), "__spec__", None)
    return spec is not None and not getattr(spec, "_initializing", False)


# The first page of a fresh server waits for the editing core's imports (torch, transformers, scipy: about
# 2.5 s on two cores, begun by the launcher's preload); say so on screen instead of leaving the page blank.
starting = None if all(map(_imported, ("app.panels", "sss_core.analysis"))) else st.empty()
if starting is not None:
    starting.info("Starting SSS Lab: loading the editing core (torch, transformers), a few seconds once per "
                  "server start...", icon=":material/hourglass_top:")

from app import panels, records, resources, state  # noqa: E402 - after the notice above
from sss_core import analysis  # noqa: E402,F401 - what the views use; imported here, under the notice
from sss_core.editors import EDITORS  # noqa: E402
from sss_core.projection import METHODS  # noqa: E402

if starting is not None:
    starting.empty()
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

"""Ripple map: every world fact on one projection, coloured by what an edit did to it; two edits side by side
(e.g. FT-L and FT-L+SSS, or one editor at two values of C) and their paired difference."""

import streamlit as st

from app import inputs, panels, records, state
from app.panels import ripple
from sss_core.projection import METHOD_LABELS, METHODS

RUNS = "_ripple_runs"  # session state: the (A, B) runs on screen, each with its world reading

st.title("Ripple map")
st.caption("The same request edited twice, A and B, each on the unedited model; every fact of the built-in world "
           "is read before and after each edit (world locality). Only meaningful on a model that knows the world "
           "(the shipped one). Advanced settings come from the Edit page's expander for each editor.")

lm = inputs.model_picker()
request = inputs.request_picker()
col_a, col_b = st.columns(2)
with col_a:
    st.session_state.setdefault("rip_editor_a", "ft-l")
    a = inputs.editor_picker("rip_editor_a", "rip_c_a", advanced=False, label="Editor A")
with col_b:
    st.session_state.setdefault("rip_editor_b", "ft-l+sss")
    b = inputs.editor_picker("rip_editor_b", "rip_c_b", advanced=False, label="Editor B")
opt_pool, opt_metric, opt_method = st.columns(3)
pooling = opt_pool.radio("Embedding", ("mean", "last"), key="rip_pooling", horizontal=True,
                         format_func=panels.POOLING_LABELS.get)
metric = opt_metric.radio("Distance", ("euclidean", "cosine"), key="rip_metric", horizontal=True,
                          format_func={"euclidean": "Euclidean", "cosine": "1 − cos"}.get)
method = opt_method.selectbox("Projection", METHODS, key="rip_method", format_func=METHOD_LABELS.get,
                              help="PCA is deterministic and fast; UMAP and t-SNE of 2,117 points take longer")

pressed = st.button("Run both", type="primary", disabled=lm is None, key="run_ripple")
from_link = not pressed and state.take_link_run()  # a shared link re-runs the two edits it showed
linked = (records.from_link(state.LINK_RECORD), records.from_link(state.LINK_RECORD_B)) if from_link else (None, None)
if (pressed or from_link) and lm is not None:
    if all(r is not None for r in linked):  # exactly the two runs the link recorded (world locality included)
        made = tuple(records.replay_with_status(lm, record) for record in linked)
    else:
        made = tuple(inputs.run_edit_with_status(lm, choice, request, with_background=False, world=True)
                     for choice in (a, b))
    if all(r is not None for r in made):
        st.session_state[RUNS] = made

runs = st.session_state.get(RUNS)
state.write_link(request.prompt, request.subject, request.target,
                 {"ra": a.editor, "rca": a.c, "rb": b.editor, "rcb": b.c, "rpool": pooling, "rdist": metric,
                  "rproj": method, "rec": records.link_text(runs[0]) if runs else None,
                  "recb": records.link_text(runs[1]) if runs else None}, ran=bool(runs))
if runs and lm is not None:
    st.divider()
    if any(r.model_name != lm.name for r in runs):
        st.warning(f"These runs were made on {runs[0].model_name}, not on the model named above: run them again.")
    else:
        ripple.ripple_panel(lm, runs, pooling, metric, method)

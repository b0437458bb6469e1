"""Sequential: edits accumulate on top of each other; watch locality decay as n grows; undo the last."""

import pandas as pd
import streamlit as st

from app import figures, inputs, panels, resources, state
from app.messages import show_error
from sss_core import analysis
from sss_core.types import Probe

MAX_EDITS = 50

st.title("Sequential editing")
st.caption("Each edit is made on the model as the previous ones left it, and scored right after it is applied "
           "(the paper's Table 2). Locality is also measured on 40 fixed world facts against the unedited "
           "model, and retention re-checks every earlier edit. Between clicks the shared model is unedited: "
           "this session's edits are replayed, extended and reverted under the model's lock.")

lm = inputs.model_picker()
request = inputs.request_picker()
choice = inputs.editor_picker("seq_editor", "seq_c", advanced=False)
history = state.sequential_history()


def _step(case):
    """Stack one more edit of ``case`` on this session's history (taking the baseline first if needed)."""
    baseline = state.sequential_baseline()
    if baseline is None:
        probes = [Probe(c.request.prompt, c.request.ground_truth or c.request.target_new, "neighbour")
                  for c in resources.sequential_probe_cases()]
        baseline = analysis.sequential_baseline(lm, probes)
        state.set_sequential_baseline(baseline)
    history.append(analysis.sequential_step(lm, history, baseline, choice.editor, choice.overrides, case))


c1, c2, c3, c4 = st.columns([1.2, 1.6, 1, 1])
apply_one = c1.button("Apply this edit", type="primary", disabled=lm is None or len(history) >= MAX_EDITS,
                      key="seq_apply")
k = c2.number_input("presets to apply", 1, 20, 5, key="seq_k", label_visibility="collapsed")
apply_k = c2.button(f"Apply the next {k} presets", disabled=lm is None or len(history) >= MAX_EDITS, key="seq_apply_k")
undo = c3.button("Undo last", disabled=not history, key="seq_undo")
reset = c4.button("Reset", disabled=not history, key="seq_reset")

if undo:
    history.pop()  # its edit object goes with it; the model itself was reverted after the step
if reset:
    state.reset_sequential()
    history = state.sequential_history()
if apply_one or apply_k:
    with st.status("Applying edits...", expanded=True) as status:
        try:
            if apply_one:
                status.write(f"Edit {len(history) + 1}: {request.describe()}")
                _step(request.build(lm))
            else:
                done = {s.request.prompt for s in history}
                todo = [c for c in resources.preset_cases() if c.request.prompt not in done][:int(k)]
                for case in todo[:MAX_EDITS - len(history)]:
                    status.write(f"Edit {len(history) + 1}: {case.request.prompt!r} -> {case.request.target_new!r}")
                    _step(case)
            status.update(label=f"{len(history)} edits in the history", state="complete", expanded=False)
        except Exception as exc:  # noqa: BLE001
            status.update(label="The edit failed", state="error")
            show_error(exc, "The edit failed")

if history:
    df = pd.DataFrame([s.as_dict() for s in history])
    fig = figures.sequential_figure([s.n for s in history], {
        "locality (fixed probes)": [s.locality_fixed for s in history],
        "retention (all edits so far)": [s.retention for s in history],
        "reliability (this edit)": [s.metrics.get("reliability") for s in history],
        "locality (this edit's probes)": [s.metrics.get("locality") for s in history]})
    panels.chart_with_table(fig, df, "sss-sequential", key=f"seq-{len(history)}", table_label="History")
else:
    st.info("No edits yet: apply the request above, or a batch of world presets.")

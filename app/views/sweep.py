"""C sweep: one edit at several values of C; reliability, generality, locality and lambda_max against C."""

import pandas as pd
import streamlit as st

from app import figures, inputs, panels, state
from app.messages import show_error
from sss_core import analysis

st.title("C sweep")
st.caption("C weighs the SSS term against the edit loss: L_all = (1 - C) * L_edit + C * SSS. C = 0 is the plain "
           "editor. C = 1 still edits: lambda_max is measured against the new target, so lowering it makes "
           "the target likely (France -> Rome at C = 1: reliability 1.00). Each point is its own edit on the "
           "unedited model.")

lm = inputs.model_picker()
request = inputs.request_picker()
choice = inputs.editor_picker("sweep_editor", advanced=False, label="Editor (with SSS)", only_with_c=True,
                              show_c=False)
state.setdefault("sweep_cs", [0.0, 0.25, 0.5, 0.75, 0.9, 1.0])
grid = [round(0.05 * i, 2) for i in range(21)]
cs = st.multiselect("Values of C", grid, key="sweep_cs")

pressed = st.button("Run sweep", type="primary", disabled=lm is None or not cs, key="run_sweep")
if (pressed or state.take_link_run()) and lm is not None and cs:  # a shared link re-runs the sweep it showed
    bar = st.progress(0.0, text="Starting")
    try:
        case = request.build(lm)
        points = analysis.sweep_c(lm, choice.editor, choice.overrides, case, sorted(cs),
                                  progress=lambda i, c: bar.progress(i / len(cs), text=f"C = {c:g}"))
        bar.progress(1.0, text="Done")
        state.set_sweep({"editor": choice.editor, "request": case.request, "points": points, "cs": sorted(cs)})
        state.set_failed_attempt("sweep", None)
    except Exception as exc:  # noqa: BLE001 - shown as a message
        bar.empty()
        show_error(exc, "The sweep failed")
        state.set_failed_attempt("sweep", f"{choice.editor}, {request.describe()}: {str(exc)[:200]}")

sweep = state.sweep()
state.write_link(request.prompt, request.subject, request.target, {"sweep": choice.editor, "cs": sorted(cs)},
                 ran=bool(sweep))
if sweep:
    pts = sweep["points"]
    r = sweep["request"]
    same = (sweep["editor"] == choice.editor and r.prompt == request.prompt and r.target_new == request.target
            and sweep.get("cs") == sorted(cs))
    panels.earlier_run_notice("sweep", sweep, None if same else
                              f"{sweep['editor']}, {r.prompt!r} -> {r.target_new!r}, "
                              f"C = {', '.join(f'{p.c:g}' for p in pts)}")
    st.markdown(f"**{sweep['editor']}**: {r.prompt!r} -> **{r.target_new}**")
    keys = ("reliability", "generality", "locality")
    fig = figures.sweep_figure([p.c for p in pts], {k: [p.metrics.get(k) for p in pts] for k in keys},
                               [p.lambda_max_after for p in pts], pts[0].lambda_max_before)
    df = pd.DataFrame([{"C": p.c, **{k: p.metrics.get(k) for k in (*keys, "portability")},
                        "λ_max before (new target)": p.lambda_max_before, "λ_max after (new target)": p.lambda_max_after,
                        "seconds": p.seconds} for p in pts])
    panels.chart_with_table(fig, df, "sss-sweep", key="sweep", title=f"SSS Lab: C sweep of {sweep['editor']}, "
                            f"{r.prompt!r} -> {r.target_new!r}")

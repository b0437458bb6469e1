"""C sweep: one edit at several values of C; reliability, generality, locality and lambda_max against C."""

import pandas as pd
import streamlit as st

from app import figures, inputs, panels, records, serving, state
from app.messages import show_error
from app.hypothesis import settings_text
from app.same_edits import reason_for, sweep_sameness
from sss_core import analysis
from sss_core.editors import EDITORS, shipped_checkpoints

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
if EDITORS[choice.editor].c_role == "checkpoint":  # a trained editor's C is its checkpoint's: only those exist
    grid = [round(c, 2) for c in shipped_checkpoints(choice.editor)]
    st.info(f"{choice.editor} is trained: its C is the C its checkpoint was trained with, so the sweep offers only "
            f"the shipped checkpoints' C ({', '.join(f'{c:g}' for c in grid)}); each row names its checkpoint. "
            f"Train another with `sss-lab train {choice.editor.split('+')[0]} --sss-c C --data world --out DIR`.")
    st.session_state["sweep_cs"] = [c for c in st.session_state.get("sweep_cs", []) if c in grid] or grid
max_cs = serving.limit("sweep_cs")  # per session; the server's owner sets it (docs/app.md, "Serve a class")
if len(st.session_state.get("sweep_cs") or []) > max_cs:  # e.g. a link's cs above this server's limit
    st.session_state["sweep_cs"] = st.session_state["sweep_cs"][:max_cs]
cs = st.multiselect("Values of C", grid, key="sweep_cs", max_selections=max_cs,
                    help=serving.limit_note("sweep_cs"))

pressed = st.button("Run sweep", type="primary", disabled=lm is None or not cs, key="run_sweep")
from_link = not pressed and state.take_link_run()  # a shared link re-runs the sweep it showed
linked = records.from_link(state.LINK_RECORD) if from_link else None
if (pressed or from_link) and lm is not None and cs:
    bar = st.progress(0.0, text="Starting")
    try:
        # a link's record gives the exact case and settings (C is each point's own)
        editor, overrides, case = ((linked.editor, linked.overrides(), linked.case) if linked is not None
                                   else (choice.editor, choice.overrides, request.build(lm)))
        with serving.Turns(lm.model, st.empty()) as turns:  # one turn per C: other sessions' edits go between them

            def _next_c(i: int, c: float) -> None:
                bar.progress(i / len(cs), text=f"C = {c:g}")
                turns.next(f"C sweep, C = {c:g}")

            points = analysis.sweep_c(lm, editor, overrides, case, sorted(cs), progress=_next_c)
        bar.progress(1.0, text="Done")
        state.set_sweep(state.SweepState(editor, case.request, tuple(points), tuple(sorted(cs))))
        state.set_failed_attempt("sweep", None)
    except Exception as exc:  # noqa: BLE001 - shown as a message
        bar.empty()
        show_error(exc, "The sweep failed")
        state.set_failed_attempt("sweep", f"{choice.editor}, {request.describe()}: {str(exc)[:200]}")

sweep = state.sweep()
first = sweep.points[0] if sweep and sweep.points else None
state.write_link(request.prompt, request.subject, request.target,
                 {"sweep": choice.editor, "cs": sorted(cs), "rec": records.link_text(first)}, ran=bool(sweep))
if sweep:
    pts, r = sweep.points, sweep.request
    same = (sweep.editor == choice.editor and r.prompt == request.prompt and r.target_new == request.target
            and list(sweep.cs) == sorted(cs))
    panels.earlier_run_notice("sweep", sweep, None if same else
                              f"{sweep.editor}, {r.prompt!r} -> {r.target_new!r}, "
                              f"C = {', '.join(f'{p.c:g}' for p in pts)}")
    st.markdown(f"**{sweep.editor}**: {r.prompt!r} -> **{r.target_new}**")
    settings = {sweep.editor: settings_text(sweep.editor, pts[0].record.settings)} if pts[0].record else None
    unchanged = sweep_sameness(pts, reason_for([sweep.editor], settings))
    if unchanged:
        with st.container(key="sweep-same"):
            st.info(unchanged, icon=":material/equal:")
    keys = ("reliability", "generality", "locality")
    fig = figures.sweep_figure([p.c for p in pts], {k: [p.metrics.get(k) for p in pts] for k in keys},
                               [p.lambda_max_after for p in pts], pts[0].lambda_max_before)
    df = pd.DataFrame([{"C": p.c, **{k: p.metrics.get(k) for k in (*keys, "portability")},
                        "λ_max before (new target)": p.lambda_max_before, "λ_max after (new target)": p.lambda_max_after,
                        "seconds": p.seconds, **({"checkpoint": p.checkpoint} if p.checkpoint else {})} for p in pts])
    panels.chart_with_table(fig, df, "sss-sweep", key="sweep", title=f"SSS Lab: C sweep of {sweep.editor}, "
                            f"{r.prompt!r} -> {r.target_new!r}", runs=pts,
                            formats={"C": "g", "seconds": ".2f", **{k: ".2f" for k in (*keys, "portability")}})

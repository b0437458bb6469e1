"""Sequential: edits accumulate on top of each other; watch locality decay as n grows; undo the last."""

import pandas as pd
import streamlit as st

from app import figures, inputs, panels, resources, serving, state
from app.messages import show_error
from sss_core import analysis
from sss_core.editors.base import model_lock
from sss_core.record import LINK_LIMIT, pack_records
from sss_core.types import Probe

MAX_EDITS = serving.limit("sequential")  # per session; the server's owner sets it (docs/app.md, "Serve a class")

st.title("Sequential editing")
st.caption("Each edit is made on the model as the previous ones left it, and scored right after it is applied "
           "(the paper's Table 2). Locality is also measured on 40 fixed world facts against the unedited "
           "model, and retention re-checks every earlier edit still meant to hold (an edit that a later edit of the "
           "same fact replaced is superseded and left out). Between clicks the shared model is unedited: "
           "this session's edits are replayed, extended and reverted under the model's lock.")

lm = inputs.model_picker()
request = inputs.request_picker()
choice = inputs.editor_picker("seq_editor", "seq_c", advanced=False)
history = state.sequential_history()


def _step(case, editor: str | None = None, overrides: dict | None = None, box=None):
    """Stack one more edit of ``case`` on this session's history (taking the baseline first if needed);
    ``editor`` and ``overrides``: another editor or settings than those picked (a shared link's history).
    Each step is one turn of the shared model (``serving.st_turn``; its notice in ``box`` when given), so
    other sessions' edits go between the steps of a batch."""
    with serving.st_turn(lm.model, f"sequential edit {len(history) + 1}", box):
        _stack(case, editor, overrides)


def _stack(case, editor: str | None, overrides: dict | None):
    """The body of ``_step``, in its turn."""
    baseline = state.sequential_baseline()
    if baseline is None:
        probes = [Probe(c.request.prompt, c.request.ground_truth or c.request.target_new, "neighbour")
                  for c in resources.sequential_probe_cases()]
        baseline = analysis.sequential_baseline(lm, probes)
        state.set_sequential_baseline(baseline)
    if overrides is not None:
        pass  # a link's step: exactly its recorded settings
    elif editor is None or editor == choice.editor:
        editor, overrides = choice.editor, choice.overrides
    else:
        overrides = inputs.choice_for(editor, choice.c).overrides
    history.append(analysis.sequential_step(lm, history, baseline, editor, overrides, case))


def _weight_norms(names) -> dict[str, float]:
    """Frobenius norm of each named parameter of the unedited model (read under the model's lock)."""
    params = dict(lm.model.named_parameters())
    with model_lock(lm.model):
        return {n: params[n].detach().float().norm().item() for n in names if n in params}


def _link_history() -> str | None:
    """The history's steps as run records for a link (each step's editor, settings and case, typed or
    uploaded ones included); None when there is none or they are too long for a link."""
    if not history or any(s.record is None for s in history):
        return None
    text = pack_records([s.record for s in history])
    return text if len(text) <= LINK_LIMIT else None


def _replay(records) -> None:
    """Replay a link's history, step by step, with each step's recorded editor, settings and case."""
    failure = None
    with st.status("Replaying the link's edits...", expanded=True) as status:
        try:
            box = st.empty()
            for record in records[:MAX_EDITS]:
                r = record.case.request
                status.write(f"Edit {len(history) + 1} ({record.editor}): {r.prompt!r} -> {r.target_new!r}")
                _step(record.case, record.editor, record.overrides(), box)
            status.update(label=f"{len(history)} edits in the history", state="complete", expanded=False)
        except Exception as exc:  # noqa: BLE001 - shown below the box, where it is seen
            status.update(label=f"The replay failed at edit {len(history) + 1}", state="error", expanded=False)
            failure = exc
    if failure is not None:
        show_error(failure, f"The replay failed at edit {len(history) + 1}")


c1, c2, c3, c4 = st.columns([1.2, 1.6, 1, 1])
apply_one = c1.button("Apply this edit", type="primary", disabled=lm is None or len(history) >= MAX_EDITS,
                      key="seq_apply", help=serving.limit_note("sequential"))
k = c2.number_input("presets to apply", 1, 20, 5, key="seq_k", label_visibility="collapsed")
apply_k = c2.button(f"Apply the next {k} presets", disabled=lm is None or len(history) >= MAX_EDITS, key="seq_apply_k")
undo = c3.button("Undo last", disabled=not history, key="seq_undo")
reset = c4.button("Reset", disabled=not history, key="seq_reset")

if undo:
    history.pop()  # its edit object goes with it; the model itself was reverted after the step
if reset:
    state.reset_sequential()
    history = state.sequential_history()
linked = st.session_state.pop(state.LINK_STEPS, None)
shared = state.link_steps()
if linked and lm is not None and not history:  # a shared link's history as run records: replay it exactly
    state.clear_link_steps()
    _replay(linked)
elif shared and lm is not None and not history:  # an older link's history of preset ids: replay it, edit by edit
    state.clear_link_steps()
    failure = None
    with st.status("Replaying the link's edits...", expanded=True) as status:
        try:
            box = st.empty()
            for editor, case_id in shared[:MAX_EDITS]:
                case = resources.preset_by_id(case_id)
                if case is None:
                    st.warning(f"The link's edit {case_id!r} is not a preset here; the replay stops before it.")
                    break
                status.write(f"Edit {len(history) + 1} ({editor}): {case.request.prompt!r} -> "
                             f"{case.request.target_new!r}")
                _step(case, editor, box=box)
            status.update(label=f"{len(history)} edits in the history", state="complete", expanded=False)
        except Exception as exc:  # noqa: BLE001 - shown below the box, where it is seen
            status.update(label=f"The replay failed at edit {len(history) + 1}", state="error", expanded=False)
            failure = exc
    if failure is not None:
        show_error(failure, f"The replay failed at edit {len(history) + 1}")
elif shared:
    state.clear_link_steps()
if apply_one or apply_k:
    failure = None
    with st.status("Applying edits...", expanded=True) as status:
        try:
            if apply_one:
                status.write(f"Edit {len(history) + 1}: {request.describe()}")
                _step(request.build(lm))
            else:
                done = {s.request.prompt for s in history}
                todo = [c for c in resources.preset_cases() if c.request.prompt not in done][:int(k)]
                box = st.empty()
                for case in todo[:MAX_EDITS - len(history)]:
                    status.write(f"Edit {len(history) + 1}: {case.request.prompt!r} -> {case.request.target_new!r}")
                    _step(case, box=box)
            status.update(label=f"{len(history)} edits in the history", state="complete", expanded=False)
        except Exception as exc:  # noqa: BLE001 - shown below the box, where it is seen
            status.update(label=f"Edit {len(history) + 1} failed; the history keeps the {len(history)} before it",
                          state="error", expanded=False)
            failure = exc
    if failure is not None:  # the reason under the box, not inside it
        show_error(failure, f"Edit {len(history) + 1} failed")

packed = _link_history()
state.write_link(request.prompt, request.subject, request.target,
                 {"seq": choice.editor, "seqC": choice.c, "seqrec": packed})
if history:
    if packed is None:
        st.caption(f"The history's {len(history)} edits are too long to travel in a link (over {LINK_LIMIT} "
                   "characters): a link to this page opens the form only.")
    names = {n for s in history for n in (s.edit.delta_norms() or {})}
    for w in panels.update_norm_warnings(_weight_norms(names), history):
        st.warning(w)
    df = pd.DataFrame([s.as_dict() for s in history])
    fig = figures.sequential_figure([s.n for s in history], {
        "locality (fixed probes)": [s.locality_fixed for s in history],
        "retention (edits still meant to hold)": [s.retention for s in history],
        "reliability (this edit)": [s.metrics.get("reliability") for s in history],
        "locality (this edit's probes)": [s.metrics.get("locality") for s in history]})
    st.caption(f"After edit {history[-1].n}: {analysis.retention_note(history[-1])}.")
    # on the page: every column in view at 1440 px (the retention counts are said above; the CSV has them)
    shown = df.drop(columns=["retention counts"])
    widths = {"n": 40, "editor": 80, "prompt": 170, "target_new": 100, "this edit: reliability": 80,
              "this edit: generality": 80, "this edit: locality": 80, "lambda_max_after": 85,
              "locality (fixed probes)": 95, "retention (edits still meant to hold)": 80, "seconds": 70}
    labels = {"this edit: reliability": "reliability", "this edit: generality": "generality",
              "this edit: locality": "locality", "lambda_max_after": "λ_max after", "locality (fixed probes)":
              "locality (fixed)", "retention (edits still meant to hold)": "retention"}
    helps = {"this edit: reliability": "this edit's own probes", "this edit: generality": "this edit's own probes",
             "this edit: locality": "this edit's own probes", "lambda_max_after": "λ_max of this edit after it",
             "locality (fixed probes)": "the probes fixed before the first edit",
             "retention (edits still meant to hold)": "share of the edits still meant to hold that still hold"}
    panels.chart_with_table(fig, df, "sss-sequential", key=f"seq-{len(history)}", table_label="History",
                            title=f"SSS Lab: {len(history)} sequential edits", shown=shown,
                            formats={"seconds": ".2f", **{c: ".2f" for c in labels if c != "lambda_max_after"}},
                            column_config={c: st.column_config.Column(labels.get(c, c), width=w, help=helps.get(c))
                                           for c, w in widths.items()})
else:
    st.info("No edits yet: apply the request above, or a batch of world presets.")

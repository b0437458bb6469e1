"""Run records in the app: what a link or a loaded export carries, put into the widgets and replayed.

A view's link carries the record of each run on screen (``rec``, and ``recb`` for Compare's B) as
``RunRecord.to_link`` text, so opening it replays exactly that run (settings, typed or uploaded
probes, model, seed, analysis options) through ``analysis.run_record``; the form shows what it can
of the record (editor, C, advanced settings, request, model). A record longer than
``record.LINK_LIMIT`` characters does not travel in the link: the page says so and offers the
JSON export, which "Load a run" reads back.
"""

from __future__ import annotations

import typing

import streamlit as st

from app import resources, serving, state
from app.messages import run_with_status, show_error
from sss_core import analysis
from sss_core.editors import EDITORS
from sss_core.errors import SSSError
from sss_core.evaluation.presets import case_for_request
from sss_core.models import LoadedModel
from sss_core.record import LINK_LIMIT, SHIPPED_MODEL_NAME, RunRecord, load_record
from sss_core.types import EditRequest


def link_text(run) -> str | None:
    """The run's record as link text; None when the run has none or it is too long for a link."""
    record = getattr(run, "record", None)
    if record is None:
        return None
    text = record.to_link()
    return text if len(text) <= LINK_LIMIT else None


def link_caption(run) -> None:
    """Say on the page when a run's record is too long to travel in its link (and what to do instead)."""
    record = getattr(run, "record", None)
    if record is not None and link_text(run) is None:
        st.caption(f"This run's record ({len(record.to_link())} characters, {len(record.case.probes)} probes) is too "
                   "long for a link: the link opens the form only. Export the JSON below and share it; "
                   "'Load a run' on the Edit page replays it exactly.")


def _widget_value(editor: str, name: str, value):
    """A config value as the advanced-settings widget of ``name`` holds it (see ``inputs.config_widgets``)."""
    kind = typing.get_type_hints(EDITORS[editor].config_cls).get(name)
    if kind in (bool, int, float) or typing.get_origin(kind) is typing.Literal:
        return value
    return "None" if value is None else str(tuple(value) if isinstance(value, list) else value)


def show_in_widgets(record: RunRecord, editor_key: str = state.EDITOR, c_key: str = state.C,
                    with_request: bool = True) -> None:
    """Put ``record`` into the form: editor, C, the advanced settings it changed, the model and (with
    ``with_request``) the request: its world preset when the case is that preset's, else typed text
    with its paraphrases and neighbours."""
    ss = st.session_state
    spec = EDITORS[record.editor]
    ss[editor_key] = record.editor
    if record.c is not None:
        ss[c_key] = round(float(record.c), 2)
    for name, value in record.overrides().items():
        if name != spec.c_field:
            ss[state.config_key(record.editor, name)] = _widget_value(record.editor, name, value)
    ss[state.MODEL] = state.DEFAULT_MODEL_NAME if record.model.name == SHIPPED_MODEL_NAME else record.model.name
    if not with_request:
        return
    r = record.case.request
    preset = resources.preset_by_id(resources.preset_for(r.prompt, r.target_new))
    if preset is not None and preset == record.case:
        ss[state.REQ_SOURCE], ss[state.PRESET] = state.SOURCES[0], preset.request.case_id
        return
    ss[state.REQ_SOURCE] = state.SOURCES[1]
    ss[state.TYPED_PROMPT], ss[state.TYPED_TARGET], ss[state.TYPED_SUBJECT] = r.prompt, r.target_new, r.subject or ""
    world = set(case_for_request(EditRequest(r.prompt, r.target_new, r.subject)).probes)  # what the form adds itself
    typed = [p for p in record.case.probes if p not in world]
    ss[state.TYPED_PARAPHRASES] = "\n".join(p.prompt for p in typed if p.group == "paraphrase")
    ss[state.TYPED_NEIGHBOURS] = "\n".join(p.prompt for p in typed if p.group == "neighbour")


def replay_with_status(lm: LoadedModel, record: RunRecord, view: str | None = None):
    """Run ``record`` exactly (``analysis.run_record``) in its turn, inside st.status; errors become messages.

    Returns the EditRun, or None after showing why (a failure is recorded for ``view``).
    """
    return run_with_status(lm.model, f"Replaying the recorded run of {record.editor}...", f"replay of {record.editor}",
                           lambda progress: analysis.run_record(lm, record, progress=progress),
                           lambda run: f"Done: the recorded run replayed in {run.seconds_total:.2f}s", view,
                           "The recorded run could not be replayed")


def replay_and_keep(lm: LoadedModel, record: RunRecord, view: str = "edit", keep_selection: bool = True):
    """Replay ``record`` and keep it as the session's last run (see ``replay_with_status``)."""
    run = replay_with_status(lm, record, view)
    if run is not None:
        state.set_last_run(run, keep_selection=keep_selection)
    return run


def load_run_control(lm: LoadedModel | None) -> None:
    """"Load a run": a JSON export (the app's or ``sss-lab edit --json``) replayed exactly, its record
    shown in the form. Errors (not a run, another model) are shown as one line."""
    with st.expander("Load a run (a JSON export)"):
        st.caption("Replays a run exported by this app ('Config + results (JSON)') or by `sss-lab edit --json`: "
                   "the same model, editor, settings, probes, seed and analysis options, so the same numbers.")
        upload = st.file_uploader("Run JSON", type=["json"], key="load_run_file")
        if upload is None or lm is None:
            return
        if not st.button("Replay this run", key="load_run_go"):
            return
        try:
            record = load_record(upload.getvalue().decode("utf-8", errors="replace"))
        except SSSError as exc:
            show_error(exc, f"Could not read {upload.name}")
            return
        run = replay_and_keep(lm, record, "edit", keep_selection=False)
        if run is not None:  # the form's widgets exist already in this script run: show the record in the next
            st.session_state[PENDING] = record
            st.rerun()


PENDING = "_record_for_the_form"  # a loaded run's record, put into the form at the start of the next script run


def show_pending_record() -> None:
    """Put a record loaded by "Load a run" into the form, before any widget is drawn (the router calls it)."""
    record = st.session_state.pop(PENDING, None)
    if isinstance(record, RunRecord):
        show_in_widgets(record)


def adopt_link_records() -> None:
    """Once per session, after ``state.load_query_params``: show a link's records in the forms (A in the
    Edit page's and Compare's A, B in Compare's B)."""
    ss = st.session_state
    if ss.get("_records_adopted"):
        return
    ss["_records_adopted"] = True
    a, b = ss.get(state.LINK_RECORD), ss.get(state.LINK_RECORD_B)
    if isinstance(a, RunRecord):
        show_in_widgets(a)
        show_in_widgets(a, "cmp_editor_a", "cmp_c_a", with_request=False)
        ss["sweep_editor"] = a.editor
    if isinstance(b, RunRecord):
        show_in_widgets(b, "cmp_editor_b", "cmp_c_b", with_request=False)


def from_link(key: str) -> RunRecord | None:
    """The record a link carried under ``key`` (``state.LINK_RECORD`` or ``LINK_RECORD_B``), taken once."""
    value = st.session_state.pop(key, None)
    return value if isinstance(value, RunRecord) else None


def same_record(run, record: RunRecord | None) -> bool:
    """Whether ``run`` was made from ``record`` (same digest)."""
    return record is not None and getattr(run, "record", None) is not None and run.record.digest() == record.digest()


def caption_settings(record: RunRecord | None) -> str:
    """The settings of a run that differ from its editor's defaults, for the run caption ("" when none)."""
    if record is None:
        return ""
    spec = EDITORS[record.editor]
    changed = {k: v for k, v in record.overrides().items() if k != spec.c_field}
    if not changed:
        return ""
    return "; settings changed from the defaults: " + ", ".join(f"{k} = {v}" for k, v in sorted(changed.items()))


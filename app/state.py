"""Typed accessors over ``st.session_state`` and the URL's query parameters.

Widget values live under the keys named here; results live under private keys ("_run", ...) and are
read and written only through these functions, so a view never spells a session key itself.

The URL carries the request, the editor and C (``?prompt=...&subject=...&target=...&editor=...&C=0.9``)
so a link reproduces an edit; ``load_query_params`` reads them once per session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import streamlit as st

# Widget keys shared between pages. Streamlit forgets a widget's value when a page that does not
# draw it runs; ``keep_widget_values`` re-saves these keys at the top of every run to prevent that.
MODEL = "model_name"
EDITOR = "editor"
C = "C"
REQ_SOURCE = "req_source"
PRESET = "preset"
TYPED_PROMPT, TYPED_SUBJECT, TYPED_TARGET = "typed_prompt", "typed_subject", "typed_target"
TYPED_PARAPHRASES, TYPED_NEIGHBOURS = "typed_paraphrases", "typed_neighbours"
UPLOAD_CHOICE = "upload_choice"
PROJ_METHOD, PROJ_POOLING = "proj_method", "proj_pooling"
PERSISTENT = (MODEL, EDITOR, C, REQ_SOURCE, PRESET, TYPED_PROMPT, TYPED_SUBJECT, TYPED_TARGET, TYPED_PARAPHRASES,
              TYPED_NEIGHBOURS, UPLOAD_CHOICE, PROJ_METHOD, PROJ_POOLING, "cmp_editor_a", "cmp_c_a", "cmp_editor_b",
              "cmp_c_b", "sweep_editor", "sweep_cs", "seq_editor", "seq_c", "results_dir")
CONFIG_PREFIX = "cfg:"  # advanced editor settings: "cfg:<editor>:<field>"

SOURCES = ("World preset", "Type a fact", "Upload EasyEdit JSON")
DEFAULT_MODEL_NAME = "default"
QUERY_KEYS = ("prompt", "subject", "target", "editor", "C")


def config_key(editor: str, field: str) -> str:
    """The session-state key of one editor setting's widget, e.g. ``cfg:ft-l:lr``."""
    return f"{CONFIG_PREFIX}{editor}:{field}"


def keep_widget_values() -> None:
    """Re-save shared widget values so they survive a switch to a page that does not draw them."""
    ss = st.session_state
    for key in list(ss.keys()):
        if key in PERSISTENT or str(key).startswith(CONFIG_PREFIX):
            ss[key] = ss[key]


def setdefault(key: str, value: Any) -> None:
    """Give a widget its first value through session state (never both this and ``value=``)."""
    if key not in st.session_state:
        st.session_state[key] = value


# --- query parameters ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SharedParams:
    """What a shared link carries."""

    prompt: str | None = None
    subject: str | None = None
    target: str | None = None
    editor: str | None = None
    c: float | None = None


def read_query_params() -> SharedParams:
    """The shared-link parameters of the URL; a C that is not a number is left out."""
    qp = st.query_params
    c = None
    if "C" in qp:
        try:
            c = float(qp["C"])
        except ValueError:
            c = None
        if c is not None and (math.isnan(c) or not 0.0 <= c <= 1.0):
            c = None
    return SharedParams(qp.get("prompt") or None, qp.get("subject") or None, qp.get("target") or None,
                        qp.get("editor") or None, c)


def load_query_params(preset_for, editors) -> SharedParams | None:
    """Once per session: put a shared link's request, editor and C into the widgets' state.

    ``preset_for(prompt, target)`` returns a preset id or None; ``editors`` are the valid names.
    """
    if st.session_state.get("_qp_loaded"):
        return None
    st.session_state["_qp_loaded"] = True
    params = read_query_params()
    if params.editor in editors:
        st.session_state[EDITOR] = params.editor
    if params.c is not None:
        st.session_state[C] = round(params.c, 2)
    if params.prompt and params.target:
        preset = preset_for(params.prompt, params.target)
        if preset is not None:
            st.session_state[REQ_SOURCE] = SOURCES[0]
            st.session_state[PRESET] = preset
        else:
            st.session_state[REQ_SOURCE] = SOURCES[1]
            st.session_state[TYPED_PROMPT] = params.prompt
            st.session_state[TYPED_TARGET] = params.target
            st.session_state[TYPED_SUBJECT] = params.subject or ""
    return params


def write_query_params(prompt: str | None, subject: str | None, target: str | None, editor: str,
                       c: float | None) -> None:
    """Mirror the current request, editor and C in the URL (only when they changed)."""
    new = {"editor": editor}
    if prompt:
        new["prompt"] = prompt
    if subject:
        new["subject"] = subject
    if target:
        new["target"] = target
    if c is not None:
        new["C"] = f"{c:g}"
    current = {k: st.query_params.get(k) for k in QUERY_KEYS if k in st.query_params}
    if current != new:
        st.query_params.from_dict(new)


# --- results of this session ---------------------------------------------------------------------

def last_run():
    """The last EditRun of this session (sss_core.analysis.EditRun) or None."""
    return st.session_state.get("_run")


def set_last_run(run) -> None:
    """Keep ``run`` as this session's last edit; the projections of the one before are dropped."""
    st.session_state["_run"] = run
    st.session_state["_projections"] = {}


def projection_cache() -> dict:
    """(run_id, method, pooling) -> sss_core.projection.Projection, for the last run only."""
    return st.session_state.setdefault("_projections", {})


def compare_runs() -> tuple | None:
    """The (A, B) EditRuns of the last comparison in this session, or None."""
    return st.session_state.get("_compare")


def set_compare_runs(runs: tuple) -> None:
    """Keep the (A, B) EditRuns of a comparison."""
    st.session_state["_compare"] = runs


def sweep() -> dict | None:
    """{"editor", "request", "points": [SweepPoint]} of the last C sweep."""
    return st.session_state.get("_sweep")


def set_sweep(value: dict) -> None:
    """Keep the last C sweep (see ``sweep``)."""
    st.session_state["_sweep"] = value


def sequential_history() -> list:
    """The SequentialStep list of this session (the model itself is never left edited)."""
    return st.session_state.setdefault("_seq_history", [])


def sequential_baseline():
    """The SequentialBaseline of this session's history (the unedited model's predictions), or None."""
    return st.session_state.get("_seq_baseline")


def set_sequential_baseline(baseline) -> None:
    """Keep the baseline that later steps of the history are compared with."""
    st.session_state["_seq_baseline"] = baseline


def reset_sequential() -> None:
    """Forget this session's sequential history and its baseline."""
    st.session_state["_seq_history"] = []
    st.session_state.pop("_seq_baseline", None)


def uploaded_cases() -> tuple[str, list] | None:
    """(file name, [EditCase]) of the last EasyEdit file uploaded, or None."""
    return st.session_state.get("_uploaded")


def set_uploaded_cases(name: str, cases: list) -> None:
    """Keep the cases read from an uploaded file, under its name (see ``uploaded_cases``)."""
    st.session_state["_uploaded"] = (name, cases)

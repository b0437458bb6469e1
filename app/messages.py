"""Messages for the user: errors a user can cause are shown as one line, never as a traceback."""

from __future__ import annotations

import logging

import streamlit as st

from sss_core.errors import SSSError

log = logging.getLogger(__name__)


def show_error(exc: BaseException, what: str = "That did not work") -> None:
    """A message for the user, never a traceback. Unexpected errors are logged with their traceback."""
    if isinstance(exc, (SSSError, ValueError, KeyError, FileNotFoundError)):
        st.error(f"{what}: {exc}")
    else:
        log.exception("unexpected error in the app")
        st.error(f"{what}: unexpected {type(exc).__name__}: {exc}. The model was restored; details are in "
                 "the server log.")


def run_with_status(model, title: str, what: str, work, done, view: str | None = None, failure: str = "It failed"):
    """Run ``work(progress)`` in its turn for the shared ``model`` (``serving.st_turn``: it waits for the
    edits queued before it, saying how many), inside ``st.status(title)``, ``progress`` writing each stage
    there. Returns what ``work`` returns, its status box labelled ``done(result)``; or None after an
    error shown as a message under ``failure`` (the model is already restored). ``view``: whose results
    this replaces; its failed attempt is recorded (``state.set_failed_attempt``: ``what`` and the error)
    or cleared, so the view marks results still on screen as an earlier run's."""
    from app import serving, state

    with st.status(title, expanded=True) as status:
        try:
            with serving.st_turn(model, what):
                result = work(status.write)
        except Exception as exc:  # noqa: BLE001 - shown to the user; the model is already restored
            status.update(label=failure, state="error", expanded=True)
            show_error(exc, failure)
            if view is not None:
                state.set_failed_attempt(view, f"{what}: {str(exc)[:200]}")
            return None
        status.update(label=done(result), state="complete", expanded=False)
    if view is not None:
        state.set_failed_attempt(view, None)
    return result

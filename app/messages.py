"""Messages for the user: errors a user can cause are shown as one line, never as a traceback."""

from __future__ import annotations

import logging
import re

import streamlit as st

from sss_core.errors import SSSError

log = logging.getLogger(__name__)
LONG_QUOTE = 120  # a quoted input longer than this (characters) is shortened in a message
SHOWN_QUOTE = 60  # characters of it that are shown
LONG_MESSAGE = 1000  # a message still longer than this (characters) is cut there


QUOTED = re.compile("'([^']{%d,})'|\"([^\"]{%d,})\"" % (LONG_QUOTE + 1, LONG_QUOTE + 1))


def shorten_quotes(text: str) -> str:
    """``text`` with every quoted input longer than ``LONG_QUOTE`` characters cut to its start and its length,
    e.g. "'The capital of France is The capital...' (3000 characters)": an error that quotes a pasted page
    names it without repeating it (the input itself stays in its box)."""
    def cut(m: re.Match) -> str:
        quoted = m.group(1) if m.group(1) is not None else m.group(2)
        mark = "'" if m.group(1) is not None else '"'
        return f"{mark}{quoted[:SHOWN_QUOTE]}...{mark} ({len(quoted)} characters)"
    text = QUOTED.sub(cut, text)
    return text if len(text) <= LONG_MESSAGE else text[:LONG_MESSAGE] + f"... ({len(text)} characters in all)"


def show_error(exc: BaseException, what: str = "That did not work") -> None:
    """A message for the user, never a traceback, quoted inputs shortened (``shorten_quotes``). Unexpected
    errors are logged with their traceback."""
    if isinstance(exc, (SSSError, ValueError, KeyError, FileNotFoundError)):
        st.error(shorten_quotes(f"{what}: {exc}"))
    else:
        log.error("unexpected error in the app", exc_info=exc)
        st.error(shorten_quotes(f"{what}: unexpected {type(exc).__name__}: {exc}. The model was restored; details "
                                "are in the server log."))


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

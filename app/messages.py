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

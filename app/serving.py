"""Serving a class: one model shared by many sessions, a fair queue for it, and what the server shows.

A teacher starts one server for the room (``sss-lab-app --server.address 0.0.0.0``); every browser
session runs in its own thread and all of them share one model behind ``sss_core.locks.model_lock``.
That lock is not fair: a thread that releases it and takes it again in a loop (a Hypothesis run of
N edits) can keep every other session waiting until it is done. Here:

- **a FIFO queue per model** (``TurnQueue``): each unit of work (one edit, one C of a sweep, one step
  of a sequential batch) takes a ticket and waits until every earlier ticket is done, then holds the
  model's lock for its turn. A long run takes a new ticket per unit, so it goes to the back of the
  queue between its edits and a single edit of another session runs after at most the unit under
  way. A waiting session is told how many edits are ahead of it (``st_turn``);
- **what this server may show** (``check_folder``, ``check_model``): the folders the Results and
  Hypothesis views may read and the models the model box may load, checked when the app is served
  beyond this machine (``protected``) and refused with a message naming the setting that adds them;
- **per-session limits** (``limits``): the largest N of the Hypothesis view, the number of C values
  of a sweep and the length of a sequential history.

Settings (environment variables of the server's owner; docs/app.md, "Serve a class"):
``SSS_LAB_SERVING`` (``auto``: protected when ``server.address`` is not a loopback address; ``class``:
always; ``local``: never), ``SSS_LAB_RESULTS_DIRS`` and ``SSS_LAB_MODELS`` (more folders and models,
separated by ``os.pathsep``), ``SSS_LAB_MAX_HYPOTHESIS_N``, ``SSS_LAB_MAX_SWEEP_CS``,
``SSS_LAB_MAX_SEQUENTIAL``.

Example:
    >>> with st_turn(lm.model, "ft-l edit"):
    ...     run = analysis.analyse_edit(lm, ...)
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from sss_core.errors import SSSError
from sss_core.locks import LOCK_OWNER, model_lock

log = logging.getLogger(__name__)

SERVING_ENV = "SSS_LAB_SERVING"  # auto (default) | class | local
RESULTS_DIRS_ENV = "SSS_LAB_RESULTS_DIRS"
MODELS_ENV = "SSS_LAB_MODELS"
DEFAULT_RESULTS_DIRS = ("runs", "docs/results")  # relative to the server's working directory
DEFAULT_MODEL_NAME = "default"
REFRESH_S = 1.0  # a waiting Streamlit session redraws its notice this often: a Stop, rerun or closed tab ends its wait
POLL_S = 0.25  # how often a waiting session looks at its place in the queue (it is also woken on every change)


# --- the queue ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ticket:
    """One unit of work waiting for (or holding) the model: its place, whose it is, and what it is."""

    number: int
    session: str
    what: str


class TurnQueue:
    """A first-come, first-served queue for one model's lock.

    ``turn`` takes a ticket, waits until no earlier ticket is left, then holds the model's lock until
    the block ends. A thread already in a turn (or holding the model's lock) enters a nested turn at
    once: it already has the model.
    """

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self._cond = threading.Condition()
        self._tickets: list[Ticket] = []  # in order; the first one holds the model (or is about to)
        self._numbers = itertools.count(1)
        self._local = threading.local()

    def snapshot(self) -> list[Ticket]:
        """The tickets in the queue, the one holding the model first."""
        with self._cond:
            return list(self._tickets)

    def ahead_of(self, session: str) -> int | None:
        """How many tickets are ahead of ``session``'s first ticket; None when it has none."""
        with self._cond:
            return next((i for i, t in enumerate(self._tickets) if t.session == session), None)

    def _wait(self, ticket: Ticket, on_wait: Callable[[int], None] | None, poll: float,
              refresh: float | None) -> None:
        """Block until ``ticket`` is first; ``on_wait(ahead)`` each time the number ahead of it changes,
        and again every ``refresh`` seconds when given."""
        shown, last = None, 0.0
        while True:
            with self._cond:
                ahead = self._tickets.index(ticket)
                if ahead == 0:
                    return
                due = refresh is not None and time.monotonic() - last >= refresh
                if ahead == shown and not due:
                    self._cond.wait(poll)
                    continue
            shown, last = ahead, time.monotonic()
            if on_wait is not None:  # outside the condition: drawing a notice may take a while, or raise
                on_wait(ahead)

    @contextlib.contextmanager
    def turn(self, session: str, what: str, on_wait: Callable[[int], None] | None = None,
             poll: float = POLL_S, refresh: float | None = None) -> Iterator[Ticket | None]:
        """Hold the model for one unit of work, after every unit queued before it.

        ``on_wait(ahead)`` is called (in this thread) when the ticket has to wait, each time the
        number of tickets ahead of it changes and, with ``refresh``, every ``refresh`` seconds (a
        Streamlit session redraws its notice, which is where a rerun or a closed tab interrupts it).
        The ticket leaves the queue when the block ends, also when waiting or the work raised.
        Yields the ticket, or None for a nested turn.
        """
        owned = getattr(self.lock, "_is_owned", lambda: False)()  # RLock's own test; held outside a turn
        if getattr(self._local, "inside", False) or owned:
            yield None
            return
        with self._cond:
            ticket = Ticket(next(self._numbers), session, what)
            self._tickets.append(ticket)
        try:
            self._wait(ticket, on_wait, poll, refresh)
            with self.lock:
                self._local.inside = True
                try:
                    yield ticket
                finally:
                    self._local.inside = False
        finally:
            with self._cond:
                self._tickets.remove(ticket)
                self._cond.notify_all()


_QUEUES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its TurnQueue; goes with the model
_QUEUES_GUARD = threading.Lock()


def queue_for(model) -> TurnQueue:
    """The queue of ``model``'s lock (a model that shares another's lock shares its queue too)."""
    while getattr(model, LOCK_OWNER, None) is not None:
        model = getattr(model, LOCK_OWNER)
    with _QUEUES_GUARD:
        if model not in _QUEUES:
            _QUEUES[model] = TurnQueue(model_lock(model))
        return _QUEUES[model]


def waiting_message(ahead: int) -> str:
    """What a waiting session reads: 'Waiting for the model: 2 edits ahead of yours'."""
    return f"Waiting for the model: {ahead} edit{'' if ahead == 1 else 's'} ahead of yours"


def waited_message(seconds: float, most: int) -> str:
    """What stays on the page once the turn came: how long it waited and behind how many edits."""
    return (f"Waited {seconds:.1f} s for the model ({most} edit{' was' if most == 1 else 's were'} ahead of "
            "yours; other sessions share it).")


def session_id() -> str:
    """This Streamlit session's id (the thread's name outside a Streamlit script)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else threading.current_thread().name


@contextlib.contextmanager
def st_turn(model, what: str, box=None) -> Iterator[None]:
    """``queue_for(model).turn`` for a Streamlit session: while it waits, an info box where this is
    called (or in ``box``, an ``st.empty()`` a loop reuses) says how many edits are ahead of it; once
    its turn came, a caption there says how long it waited."""
    import streamlit as st

    start, most, shown = time.monotonic(), 0, False

    def notice(ahead: int) -> None:
        nonlocal box, most, shown
        if box is None:
            box = st.empty()
        most, shown = max(most, ahead), True
        box.info(waiting_message(ahead), icon=":material/hourglass_top:")

    with queue_for(model).turn(session_id(), what, notice, refresh=REFRESH_S):
        if shown:
            box.caption(waited_message(time.monotonic() - start, most))
        yield


class Turns:
    """One turn after another for a loop whose units are called back (``analysis.sweep_c``'s progress):
    ``next(what)`` ends the turn under way and queues for the next, ``close()`` ends the last one."""

    def __init__(self, model, box=None) -> None:
        self.model, self.box = model, box  # box: the st.empty() every turn's notice goes to
        self._stack = contextlib.ExitStack()

    def next(self, what: str) -> None:
        """End the turn under way (if any) and wait for a new one, behind everyone queued meanwhile."""
        self._stack.close()
        self._stack.enter_context(st_turn(self.model, what, self.box))

    def close(self) -> None:
        """End the turn under way (if any)."""
        self._stack.close()

    def __enter__(self) -> "Turns":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- who the server is for ---------------------------------------------------------------------------------------

class NotServed(SSSError):
    """A folder or a model this server does not show (the message names the setting that adds it)."""


def is_loopback(address: str | None) -> bool:
    """Whether a ``server.address`` listens on this machine only (None or '' is every interface: no)."""
    address = (address or "").strip().strip("[]")
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name or an interface address: reachable from elsewhere


def server_address() -> str | None:
    """The address the Streamlit server listens on (its ``server.address`` option; None: every interface)."""
    from streamlit import config

    return config.get_option("server.address")


_RUNNING = object()  # protected()'s default: the address of the server this runs in


def protected(address: str | None | object = _RUNNING) -> bool:
    """Whether folders, models and limits are those of a served class (see SERVING_ENV), for the
    running server or, given ``address``, for a server listening there."""
    mode = os.environ.get(SERVING_ENV, "auto").strip().lower()
    if mode in ("class", "local"):
        return mode == "class"
    if mode != "auto":
        log.warning("%s=%r is not auto, class or local; auto is used", SERVING_ENV, mode)
    return not is_loopback(server_address() if address is _RUNNING else address)  # type: ignore[arg-type]


def _listed(env: str) -> list[str]:
    """The entries of an ``os.pathsep``-separated variable, stripped, empty ones left out."""
    return [e.strip() for e in os.environ.get(env, "").split(os.pathsep) if e.strip()]


def results_roots() -> list[str]:
    """The folders whose contents the Results and Hypothesis views may read, as given (not resolved)."""
    return list(dict.fromkeys([*DEFAULT_RESULTS_DIRS, *_listed(RESULTS_DIRS_ENV)]))


def _shown(root: str) -> str:
    """A root folder as the refusal names it: 'runs/'."""
    return root.rstrip("/\\") + "/"


def check_folder(path: str | Path) -> Path:
    """``path`` resolved (``..`` and symlinks followed), when this server may show it; else NotServed.

    Allowed: anything when not ``protected()``; else a folder equal to or inside one of
    ``results_roots()`` once both are resolved, so ``runs/../../etc`` and a link under ``runs/``
    pointing outside are refused.
    """
    resolved = Path(path).expanduser().resolve()
    if not protected():
        return resolved
    roots = results_roots()
    if any(resolved.is_relative_to(Path(r).expanduser().resolve()) for r in roots):
        return resolved
    raise NotServed(f"{path} is not among the folders this server shows ({', '.join(map(_shown, roots))}); "
                    f"the server's owner can add it with {RESULTS_DIRS_ENV}")


def allowed_folder(path: str | Path) -> bool:
    """Whether ``check_folder`` accepts ``path``."""
    try:
        check_folder(path)
    except NotServed:
        return False
    return True


def allowed_models() -> list[str]:
    """The models the model box may load: 'default' (the shipped one) and those of SSS_LAB_MODELS."""
    return list(dict.fromkeys([DEFAULT_MODEL_NAME, *_listed(MODELS_ENV)]))


def _same_model(a: str, b: str) -> bool:
    """Whether two model names are the same: equal text, or the same folder once resolved."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def check_model(name: str, resolve_default: Callable[[str], str] | None = None) -> str:
    """``name`` ('' is 'default') when this server may load it; else NotServed.

    ``resolve_default``: what 'default' stands for (``resources.model_path``), so typing the shipped
    model's own folder is the same as 'default'.
    """
    name = (name or "").strip() or DEFAULT_MODEL_NAME
    if not protected():
        return name
    allowed = allowed_models()
    candidates = [*allowed, *([resolve_default(DEFAULT_MODEL_NAME)] if resolve_default else [])]
    if any(_same_model(name, a) for a in candidates):
        return name
    raise NotServed(f"{name} is not among the models this server loads ({', '.join(allowed)}); "
                    f"the server's owner can add it with {MODELS_ENV}")


# --- per-session limits ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limit:
    """One per-session limit: its variable, today's value on this machine, and a served class's default."""

    env: str
    local: int
    served: int
    what: str


LIMITS = {
    "hypothesis_n": Limit("SSS_LAB_MAX_HYPOTHESIS_N", 200, 100, "world edits per Hypothesis run"),
    "sweep_cs": Limit("SSS_LAB_MAX_SWEEP_CS", 21, 11, "values of C per sweep"),
    "sequential": Limit("SSS_LAB_MAX_SEQUENTIAL", 50, 20, "edits in a sequential history"),
}


def limit(name: str, served: bool | None = None) -> int:
    """The limit ``name`` of LIMITS: its variable when set to a positive number, else the served default
    when ``served`` (default: ``protected()``), else today's."""
    spec = LIMITS[name]
    raw = os.environ.get(spec.env, "").strip()
    if raw:
        try:
            if int(raw) >= 1:
                return int(raw)
        except ValueError:
            pass
        log.warning("%s=%r is not a positive number; the default is used", spec.env, raw)
    return spec.served if (protected() if served is None else served) else spec.local


def limit_note(name: str) -> str:
    """One line naming a limit and the variable that sets it."""
    spec = LIMITS[name]
    return f"This server allows at most {limit(name)} {spec.what} per session (set by {spec.env})."


def served_summary(address: str | None) -> str | None:
    """What a server listening on ``address`` protects, in a few lines for its owner's terminal; None
    when it is not protected (``protected(address)``: this machine only, or SSS_LAB_SERVING=local)."""
    if not protected(address):
        return None
    limits = "; ".join(f"{limit(n, True)} {spec.what} ({spec.env})" for n, spec in LIMITS.items())
    return (f"SSS Lab is served beyond this machine ({address or 'every interface'}), without authentication: put a "
            "reverse proxy with basic auth (or a VPN) in front of it (docs/app.md, 'Serve a class').\n"
            f"Folders shown: {', '.join(map(_shown, results_roots()))} (more with {RESULTS_DIRS_ENV}); "
            f"models loaded: {', '.join(allowed_models())} (more with {MODELS_ENV}).\n"
            f"Per session at most: {limits}.")

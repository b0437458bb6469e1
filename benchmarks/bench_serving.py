"""Load test of the app: N concurrent browser sessions against a real `streamlit run`, each running the
default edit and then a Compare; time to results, errors, server memory and cross-talk.

    python benchmarks/bench_serving.py --sessions 1,5,10,20 --json bench_serving.json
    python benchmarks/bench_serving.py --sessions 1,2 --timeout 240      # quick

For each level N (a fresh server per level, so its memory and CPU figures are that level's own):

1. Start `python -m streamlit run streamlit_app.py` on a free 127.0.0.1 port (as the browser tests do)
   and wait for /_stcore/health.
2. Warm it up with one untimed session (an edit and a Compare of a preset no measured session uses),
   then wait until the server's CPU is quiet (its UMAP warm-up thread done), at most 90 s.
3. Start N sessions at once: N browser contexts of ONE headless chromium, driven from one asyncio loop
   (each context is its own Streamlit session). Session i takes the world preset i (all different):
   it opens ``/?prompt=..&subject=..&target=..&editor=ft-l+sss&run=1`` (the Edit view's default
   editor and settings on that request, run by the link), waits until the script run showing the
   metric cards has finished, reads the cards and the caption; then opens
   ``/compare?prompt=..&subject=..&target=..&run=1`` (Compare's defaults, A ft-l against B ft-l+sss)
   and waits likewise for its summary table.
4. Time to results is from the navigation's start to that finished run with the results on screen.
   An error is a session that timed out (``--timeout`` per session, both steps), showed a Streamlit
   exception box, a traceback or "The edit failed", or whose results could not be read.
5. Cross-talk: before the server starts, every request's expected numbers are computed in this
   process (``sss_core.analysis.analyse_edit`` on the default model, same editors and settings). A
   session counts as cross-talk when its page shows a caption of another request, or cards / summary
   cells that are not its own request's numbers (to the digits shown: ``_close``); the JSON says
   what was shown and whose request it matched, if any.
6. Server memory: its resident set after the warm-up, sampled every 0.25 s during the level with its
   high-water mark (VmHWM) at the end (the peak), and 10 s after every session's context closed. The
   server's CPU seconds over the level; how busy the whole machine's cores were over it (/proc/stat:
   the browser shares them with the server, and so does anything else running); the 1-min load
   average at the start and its maximum.

Every wait is bounded: ``--timeout`` per session, ``--time-limit`` for the whole run (levels not
started by then are reported as skipped); the server and the browser are stopped on every exit.
Traffic goes to 127.0.0.1 only. Needs Debian's chromium (``--chromium``) and the playwright package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
# as tests/e2e/browser_support.py (CHROMIUM_FLAGS, VIEWPORT); copied so the script does not import a test module
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 2400}
EDIT_EDITOR = "ft-l+sss"  # the Edit view's default editor (its C at the default, 0.9)
COMPARE = ("ft-l", "ft-l+sss")  # Compare's default A and B
WARMUP_PRESET = -1  # the last preset: no measured session uses it (at most N_PRESETS - 1 sessions)
METRICS = ("reliability", "generality", "locality", "portability")
LAMBDA_BEFORE, LAMBDA_AFTER = "λ_max before (new target)", "λ_max after (new target)"

# JS predicates, polled by page.wait_for_function: the session's script run has finished (Streamlit's
# idle marker) and either its results or an error are on screen.
_FAILED = """(document.querySelector('[data-testid="stException"]') !== null
              || document.body.innerText.includes('The edit failed')
              || document.body.innerText.includes('Traceback'))"""
_IDLE = """document.querySelector('[data-test-script-state="notRunning"]') !== null"""
EDIT_DONE = f"""() => {_IDLE} && (document.querySelectorAll('[data-testid="stMetric"]').length >= 6 || {_FAILED})"""
COMPARE_DONE = f"""() => {_IDLE} && ((document.querySelector('.st-key-cmp-summary-box table') !== null
    && document.querySelectorAll('.st-key-cmp-summary-box table tr').length >= 3
    && document.body.innerText.includes('A and B on one projection')) || {_FAILED})"""
CAPTION = re.compile(r"on default-model: ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") (?:->|→) (.+?) \(run ")


# --- expected numbers, computed in this process ----------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    """What one request's edit gives: lambda_max before/after and the metrics, per editor."""

    prompt: str
    subject: str | None
    target: str
    by_editor: dict  # editor -> {"λ_max before (new target)": x, "λ_max after (new target)": y, metric: v}


def expected_numbers(n: int) -> tuple[list[Expected], Expected]:
    """The expected numbers of the first ``n`` world presets (the sessions') and of the warm-up preset."""
    from sss_core.analysis import analyse_edit
    from sss_core.evaluation.presets import presets
    from sss_core.models import DEFAULT_MODEL, load_model

    from app.resources import N_PRESETS  # the presets the app offers: real countries and cities first

    cases = presets("test", N_PRESETS, real_first=True)
    if n > len(cases) - 1:
        raise SystemExit(f"at most {len(cases) - 1} sessions: each takes its own preset, one is the warm-up's")
    lm = load_model(os.environ.get("SSS_LAB_MODEL") or DEFAULT_MODEL, device="cpu")
    out = []
    for case in list(cases[:n]) + [cases[WARMUP_PRESET]]:
        by_editor = {}
        for editor in sorted({EDIT_EDITOR, *COMPARE}):
            res = analyse_edit(lm, editor, {}, case, (), with_embeddings=False).result
            by_editor[editor] = {LAMBDA_BEFORE: res.lambda_max_before, LAMBDA_AFTER: res.lambda_max_after,
                                 **{m: res.metrics.get(m, math.nan) for m in METRICS}}
        r = case.request
        out.append(Expected(r.prompt, r.subject, r.target_new, by_editor))
    return out[:-1], out[-1]


MISSING_TEXT = ("n/a", "—", "", "None")


def _close(shown: str, value: float, name: str) -> bool:
    """A shown card or table cell holds ``value``.

    A card is rounded (lambda_max to 3 significant digits, "8.98e-02": within 0.6 of its last digit;
    metrics to 2 decimals: within 0.0051); a Compare summary cell is the raw value (1e-4 relative:
    two processes may sum in another order). Missing values match missing ones.
    """
    text = shown.strip()
    if text in MISSING_TEXT or value is None or math.isnan(value):
        return text in MISSING_TEXT and (value is None or math.isnan(value))
    try:
        x = float(text)
    except ValueError:
        return False
    rounded = name.startswith("λ_max") and re.fullmatch(r"-?\d\.\d\de[-+]\d+", text) is not None or (
        not name.startswith("λ_max") and re.fullmatch(r"-?\d+\.\d\d", text) is not None)
    if name.startswith("λ_max"):
        if rounded:  # within 0.6 of the last shown digit (".2e": 3 significant digits)
            return x != 0 and abs(x - value) <= 0.6 * 10 ** (math.floor(math.log10(abs(x))) - 2)
        return math.isclose(x, value, rel_tol=1e-4, abs_tol=1e-12)
    return abs(x - value) <= (0.0051 if rounded else 1e-4 * max(1.0, abs(value)))


def whose(shown: dict, editor: str, all_expected: list[Expected]) -> list[int]:
    """The sessions whose request's expected numbers (for ``editor``) match every shown number."""
    return [i for i, e in enumerate(all_expected)
            if shown and all(_close(v, e.by_editor[editor][k], k)
                             for k, v in shown.items() if k in e.by_editor[editor])]


# --- the server ------------------------------------------------------------------------------------------------

def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (Linux /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _proc_status_kb(pid: int, key: str) -> int | None:
    """A ``VmRSS`` / ``VmHWM`` line of /proc/PID/status in kB; None off Linux or when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores of the machine have been busy so far (/proc/stat: every process, ours or not)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _rss_bytes(pid: int) -> int | None:
    """The resident set of ``pid`` in bytes (psutil, else /proc); None when it is gone."""
    try:
        import psutil
        return psutil.Process(pid).memory_info().rss
    except Exception:  # noqa: BLE001 - psutil missing or the process gone: fall back to /proc
        kb = _proc_status_kb(pid, "VmRSS")
        return kb * 1024 if kb is not None else None


class Server:
    """`streamlit run streamlit_app.py` on a free 127.0.0.1 port; a context manager that always stops it."""

    def __init__(self, log_path: Path, start_timeout: float = 120.0):
        self.log_path, self.start_timeout = log_path, start_timeout
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Server":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                self.__exit__(None, None, None)
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"streamlit did not answer /_stcore/health within {self.start_timeout:.0f} s")
            time.sleep(0.3)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._log.close()

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.proc.pid

    def wait_quiet(self, limit: float = 90.0, window: float = 1.0, below: float = 0.1) -> float:
        """Wait until the server used under ``below`` CPU seconds in a ``window``; the seconds waited
        (at most ``limit``)."""
        start = time.monotonic()
        last = _cpu_seconds(self.pid)
        while last is not None and time.monotonic() - start < limit:
            time.sleep(window)
            now = _cpu_seconds(self.pid)
            if now is None or now - last < below:
                break
            last = now
        return round(time.monotonic() - start, 1)


class Sampler:
    """Samples the server's RSS and the load average every ``every`` seconds in a thread, until stopped."""

    def __init__(self, pid: int, every: float = 0.25):
        self.pid, self.every = pid, every
        self.peak_rss = 0
        self.max_load = os.getloadavg()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = _rss_bytes(self.pid)
            if rss:
                self.peak_rss = max(self.peak_rss, rss)
            self.max_load = max(self.max_load, os.getloadavg()[0])
            self._stop.wait(self.every)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- one session -----------------------------------------------------------------------------------------------

@dataclass
class SessionResult:
    """One session's outcome: seconds to each step's results, errors, what it showed, cross-talk."""

    index: int
    prompt: str
    target: str
    edit_seconds: float | None = None
    compare_seconds: float | None = None
    total_seconds: float | None = None
    errors: list = field(default_factory=list)
    cross_talk: list = field(default_factory=list)
    shown: dict = field(default_factory=dict)


def links(exp: Expected) -> tuple[str, str]:
    """The Edit and Compare links (path and query) that run this request's edit and comparison."""
    req = {"prompt": exp.prompt, **({"subject": exp.subject} if exp.subject else {}), "target": exp.target}
    edit = "/?" + urllib.parse.urlencode({**req, "editor": EDIT_EDITOR, "run": "1"})
    compare = "/compare?" + urllib.parse.urlencode({**req, "a": COMPARE[0], "b": COMPARE[1], "run": "1"})
    return edit, compare


async def _page_problem(page) -> str | None:
    """An error shown on the page (exception box, traceback, failed edit), or None."""
    if await page.locator('[data-testid="stException"]').count():
        return "exception box: " + (await page.locator('[data-testid="stException"]').first.inner_text())[:300]
    body = await page.inner_text("body")
    for marker in ("Traceback", "The edit failed"):
        if marker in body:
            i = body.index(marker)
            return body[i:i + 300]
    return None


def _captions(body: str) -> list[tuple[str, str]]:
    """(prompt, target) of every run caption in the page's text."""
    out = []
    for m in CAPTION.finditer(body):
        quoted, target = m.group(1), m.group(2).strip()
        try:
            prompt = eval(quoted, {"__builtins__": {}})  # noqa: S307 - a Python string literal (repr) from the caption
        except Exception:  # noqa: BLE001
            prompt = quoted
        out.append((prompt, target))
    return out


async def _edit_step(page, base: str, path: str, res: SessionResult, exp: Expected, everyone: list[Expected],
                     timeout_ms: float) -> None:
    """Open the Edit link; time until its run's cards are on screen; read and check cards and caption."""
    start = time.perf_counter()
    await page.goto(base + path, timeout=timeout_ms)
    await page.wait_for_function(EDIT_DONE, timeout=timeout_ms, polling=100)
    res.edit_seconds = round(time.perf_counter() - start, 3)
    problem = await _page_problem(page)
    if problem:
        res.errors.append("edit: " + problem)
        return
    cards = {}
    for m in await page.locator('[data-testid="stMetric"]').all():
        label = (await m.locator('[data-testid="stMetricLabel"]').inner_text()).strip()
        cards[label] = (await m.locator('[data-testid="stMetricValue"]').inner_text()).strip()
    caps = _captions(await page.inner_text("body"))
    res.shown["edit"] = {"cards": cards, "captions": caps}
    _check(res, "edit", EDIT_EDITOR, {k: cards.get(k, "") for k in (LAMBDA_BEFORE, LAMBDA_AFTER, *METRICS)},
           caps, 1, exp, everyone)


async def _compare_step(page, base: str, path: str, res: SessionResult, exp: Expected, everyone: list[Expected],
                        timeout_ms: float) -> None:
    """Open the Compare link; time until its summary is on screen; read and check its rows and captions."""
    start = time.perf_counter()
    await page.goto(base + path, timeout=timeout_ms)
    await page.wait_for_function(COMPARE_DONE, timeout=timeout_ms, polling=100)
    res.compare_seconds = round(time.perf_counter() - start, 3)
    problem = await _page_problem(page)
    if problem:
        res.errors.append("compare: " + problem)
        return
    table = page.locator(".st-key-cmp-summary-box table").first
    cells = [[(await c.text_content() or "").strip() for c in await row.locator("th, td").all()]
             for row in await table.locator("tr").all()]
    rows = [dict(zip(cells[0], row)) for row in cells[1:]]
    caps = _captions(await page.inner_text("body"))
    res.shown["compare"] = {"rows": rows, "captions": caps}
    if [r.get("editor") for r in rows] != list(COMPARE):
        res.cross_talk.append(f"compare: summary rows are {[r.get('editor') for r in rows]}, not {list(COMPARE)}")
        return
    for editor, row in zip(COMPARE, rows):
        _check(res, f"compare {editor}", editor, {k: row.get(k, "") for k in (LAMBDA_BEFORE, LAMBDA_AFTER, *METRICS)},
               caps, 2, exp, everyone)


def _check(res: SessionResult, step: str, editor: str, shown: dict, captions: list, n_captions: int,
           exp: Expected, everyone: list[Expected]) -> None:
    """Record cross-talk: a caption of another request, or numbers that are not this request's."""
    own = (exp.prompt, exp.target)
    if len(captions) < n_captions:
        res.errors.append(f"{step}: {len(captions)} run caption(s) on the page, expected {n_captions}")
    others = [c for c in captions if c != own]
    if others:
        res.cross_talk.append(f"{step}: caption(s) of another request {others}")
    wrong = {k: v for k, v in shown.items() if not _close(v, exp.by_editor[editor][k], k)}
    if wrong:
        matches = [i for i in whose(shown, editor, everyone) if i != res.index]
        res.cross_talk.append(f"{step}: shown {wrong}, expected "
                              f"{ {k: exp.by_editor[editor][k] for k in wrong} }"
                              + (f"; they are session(s) {matches}'s numbers" if matches else ""))


async def run_session(browser, base: str, index: int, exp: Expected, everyone: list[Expected],
                      timeout: float) -> SessionResult:
    """One Streamlit session (its own browser context): the edit link, then the Compare link, within ``timeout`` s."""
    res = SessionResult(index, exp.prompt, exp.target)
    edit, compare = links(exp)
    start = time.perf_counter()
    ctx = await browser.new_context(viewport=VIEWPORT)
    try:
        page = await ctx.new_page()
        remaining = lambda: max(1.0, timeout - (time.perf_counter() - start)) * 1000  # noqa: E731
        try:
            await asyncio.wait_for(_edit_step(page, base, edit, res, exp, everyone, remaining()), timeout)
            if not res.errors:
                await asyncio.wait_for(_compare_step(page, base, compare, res, exp, everyone, remaining()),
                                       max(1.0, timeout - (time.perf_counter() - start)))
        except (asyncio.TimeoutError, TimeoutError) as exc:
            step = "edit" if res.edit_seconds is None else "compare"
            res.errors.append(f"{step}: timed out after {time.perf_counter() - start:.0f} s ({type(exc).__name__})")
        except Exception as exc:  # noqa: BLE001 - a Playwright error (e.g. its own timeout) is this session's error
            step = "edit" if res.edit_seconds is None else "compare"
            res.errors.append(f"{step}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    finally:
        try:
            await asyncio.wait_for(ctx.close(), 30)
        except Exception:  # noqa: BLE001
            pass
    res.total_seconds = round(time.perf_counter() - start, 3)
    return res


# --- one level, the whole run -----------------------------------------------------------------------------------

def _pct(values: list[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation, as numpy's default); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo), 3)


async def run_level(browser, n: int, sessions: list[Expected], warm: Expected, timeout: float,
                    deadline: float) -> dict:
    """A fresh server, an untimed warm-up session, then ``n`` sessions at once; the level's figures."""
    log = ARTIFACTS / f"bench-serving-server-{n}.log"
    with Server(log) as server:
        warm_res = await run_session(browser, server.url, -1, warm, [warm], timeout)
        quiet = await asyncio.to_thread(server.wait_quiet)
        rss_warm = _rss_bytes(server.pid)
        cpu0, busy0, load0 = _cpu_seconds(server.pid), _machine_busy_seconds(), os.getloadavg()[0]
        budget = max(1.0, min(timeout + 30, deadline - time.monotonic()))
        start = time.perf_counter()
        with Sampler(server.pid) as sampler:
            tasks = [asyncio.ensure_future(run_session(browser, server.url, i, sessions[i], sessions, timeout))
                     for i in range(n)]
            done, pending = await asyncio.wait(tasks, timeout=budget)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        wall = time.perf_counter() - start
        results = []
        for i, t in enumerate(tasks):
            if t in done and t.exception() is None:
                results.append(t.result())
            else:
                r = SessionResult(i, sessions[i].prompt, sessions[i].target)
                r.errors.append("cut off by the run's time limit" if t in pending else f"failed: {t.exception()!r}")
                results.append(r)
        cpu1, busy1 = _cpu_seconds(server.pid), _machine_busy_seconds()
        hwm = _proc_status_kb(server.pid, "VmHWM")
        await asyncio.sleep(10)  # every context is closed: does the server give the sessions' memory back?
        rss_after = _rss_bytes(server.pid)
    edit = [r.edit_seconds for r in results if r.edit_seconds is not None and not r.errors]
    comp = [r.compare_seconds for r in results if r.compare_seconds is not None and not r.errors]
    return {
        "sessions": n, "status": "measured",
        "edit_p50_s": _pct(edit, 50), "edit_p95_s": _pct(edit, 95),
        "compare_p50_s": _pct(comp, 50), "compare_p95_s": _pct(comp, 95),
        "session_p95_s": _pct([r.total_seconds for r in results if not r.errors], 95),
        "errors": sum(1 for r in results if r.errors), "cross_talk": sum(1 for r in results if r.cross_talk),
        "server_rss_after_warmup_mb": round(rss_warm / 2**20) if rss_warm else None,
        "server_peak_rss_mb": round(max(sampler.peak_rss, (hwm or 0) * 1024) / 2**20) or None,
        "server_rss_10s_after_mb": round(rss_after / 2**20) if rss_after else None,
        "server_cpu_s": round(cpu1 - cpu0, 1) if cpu0 is not None and cpu1 is not None else None,
        "machine_busy_pct": round(100 * (busy1 - busy0) / ((os.cpu_count() or 1) * wall))
        if busy0 is not None and busy1 is not None and wall > 0 else None,
        "load_avg_start": round(load0, 2), "load_avg_max": round(sampler.max_load, 2),
        "wall_s": round(wall, 1), "quiet_wait_s": quiet,
        "warmup": {"edit_seconds": warm_res.edit_seconds, "compare_seconds": warm_res.compare_seconds,
                   "errors": warm_res.errors},
        "server_log": str(log.relative_to(ROOT)),
        "session_results": [asdict(r) for r in results],
    }


def _fmt(x, unit: str = "") -> str:
    """A table cell: '-' for None, floats to 2 decimals, with ``unit``."""
    return "-" if x is None else f"{x:.2f}{unit}" if isinstance(x, float) else f"{x}{unit}"


def table(levels: list[dict]) -> str:
    """The Markdown table of the levels (a level not measured shows why)."""
    head = ("| sessions | edit p50 | edit p95 | Compare p50 | Compare p95 | session p95 | errors | cross-talk "
            "| server RSS after warm-up | server peak RSS | server RSS 10 s after | server CPU | machine CPU busy "
            "| load avg start / max | wall |")
    columns = head.count("|") - 1
    lines = [head, "|" + " --- |" * columns]
    for lv in levels:
        if lv["status"] != "measured":
            lines.append(f"| {lv['sessions']} | {lv['status']} |" + " |" * (columns - 2))
            continue
        lines.append(
            f"| {lv['sessions']} | {_fmt(lv['edit_p50_s'], ' s')} | {_fmt(lv['edit_p95_s'], ' s')} "
            f"| {_fmt(lv['compare_p50_s'], ' s')} | {_fmt(lv['compare_p95_s'], ' s')} "
            f"| {_fmt(lv['session_p95_s'], ' s')} "
            f"| {lv['errors']} | {lv['cross_talk']} | {_fmt(lv['server_rss_after_warmup_mb'], ' MB')} "
            f"| {_fmt(lv['server_peak_rss_mb'], ' MB')} | {_fmt(lv['server_rss_10s_after_mb'], ' MB')} "
            f"| {_fmt(lv['server_cpu_s'], ' s')} | {_fmt(lv['machine_busy_pct'], ' %')} "
            f"| {lv['load_avg_start']:.2f} / {lv['load_avg_max']:.2f} | {lv['wall_s']:.1f} s |")
    return "\n".join(lines)


async def run_all(args, levels_n: list[int], sessions: list[Expected], warm: Expected, deadline: float,
                  out: dict) -> None:
    """Every level in order, in one chromium; the JSON is rewritten after each level."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS, headless=True)
        try:
            for n in levels_n:
                left = deadline - time.monotonic()
                if left < min(args.timeout, 60) + 30:
                    out["levels"].append({"sessions": n, "status": f"skipped: time limit ({args.time_limit:.0f} s)"})
                else:
                    print(f"[bench_serving] {n} session(s): starting a server, warming up, then running...",
                          file=sys.stderr, flush=True)
                    try:
                        out["levels"].append(await run_level(browser, n, sessions, warm, args.timeout, deadline))
                    except RuntimeError as exc:  # the server did not start
                        out["levels"].append({"sessions": n, "status": f"failed: {exc}"})
                if args.json:
                    Path(args.json).write_text(json.dumps(out, indent=1, ensure_ascii=False, default=str))
        finally:
            await browser.close()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, compute the expected numbers, run the levels; print the table, write the JSON.

    Exit status: 0 when every measured level had no errors and no cross-talk, 1 otherwise, 2 when
    chromium or playwright is missing.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", default="1,5,10,20", help="comma-separated concurrency levels (default 1,5,10,20)")
    p.add_argument("--json", help="write the figures and every session's results here")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per session, edit and Compare together")
    p.add_argument("--time-limit", type=float, default=1800.0,
                   help="seconds for the whole run; levels not started by then are skipped")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium",
                   help="the chromium executable (Debian's)")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    deadline = t0 + args.time_limit
    levels_n = [int(x) for x in args.sessions.split(",") if x.strip()]
    if not levels_n or min(levels_n) < 1:
        p.error("--sessions: positive integers, e.g. 1,5,10,20")
    if not Path(args.chromium).exists():
        print(f"no chromium at {args.chromium} (apt-get install chromium)", file=sys.stderr)
        return 2
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        print("the playwright package is not installed (pip install playwright)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))  # app.resources (N_PRESETS) when run from elsewhere
    print("[bench_serving] computing every request's expected numbers in-process...", file=sys.stderr, flush=True)
    sessions, warm = expected_numbers(max(levels_n))
    out = {"command": " ".join([Path(sys.argv[0]).as_posix() if argv is None else "bench_serving.py",
                                *(sys.argv[1:] if argv is None else argv)]),
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
           "python": platform.python_version(), "edit_editor": EDIT_EDITOR, "compare": list(COMPARE),
           "timeout_s": args.timeout, "time_limit_s": args.time_limit, "levels": []}
    try:
        asyncio.run(run_all(args, levels_n, sessions, warm, deadline, out))
    except KeyboardInterrupt:
        print("interrupted; the levels measured so far follow", file=sys.stderr)
    out["wall_s"] = round(time.monotonic() - t0, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, ensure_ascii=False, default=str))
    print(f"{out['date']} | {out['machine']} | python {out['python']} | edit: {EDIT_EDITOR} (default settings), "
          f"Compare: {COMPARE[0]} vs {COMPARE[1]} | timeout {args.timeout:.0f} s per session | total {out['wall_s']} s")
    print(table(out["levels"]))
    for lv in out["levels"]:
        for r in lv.get("session_results", []):
            for msg in r["errors"] + r["cross_talk"]:
                print(f"  {lv['sessions']} sessions, session {r['index']} ({r['prompt']!r} -> {r['target']}): {msg}")
    bad = any(lv["status"] != "measured" or lv["errors"] or lv["cross_talk"] for lv in out["levels"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

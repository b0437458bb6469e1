"""Time the Edit view's Run edit -> results in a real browser: the server's first edit, and warm edits.

Starts the app as the README does (``python -m app.launch``; ``--raw``: plain ``streamlit run``), opens the
Edit page in Debian's chromium with FT-L+SSS at C = 0.9 on the first preset, and times from pressing
"Run edit" to the new run's lambda_max and projection points on screen:

- first: pressed as soon as the page is ready, so it shares the cores with the start-up warm-ups
  (a tiny edit, ROME's and MEMIT's key statistics, UMAP's compilation once the projection is drawn);
- warm: pressed ``--repeat`` times once the server is idle (its CPU time grows by less than 0.05 s over
  2 s: the warm-ups are done), each after the page has finished its script run.

Prints each figure, the median and range of the warm ones, the server's CPU seconds per warm run and
the load average. Target (issue 27): warm Run -> results <= 1.5 s.

    OMP_NUM_THREADS=1 python benchmarks/bench_app_run.py
    OMP_NUM_THREADS=1 python benchmarks/bench_app_run.py --repeat 9
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_app_start as start  # noqa: E402 - the same server start and free port

NEW_RESULTS = """old => {
    const m = document.body.innerText.match(/\\(run ([0-9a-f]{12}),/);
    return m !== null && m[1] !== old && document.body.innerText.includes("λ_max after")
        && document.querySelector('[data-testid="stPlotlyChart"] .scatterlayer .point') !== null;
}"""
IDLE = '[data-test-script-state="notRunning"]'  # Streamlit's marker: this session's script is not running
TARGET_S = 1.5


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_server_idle(pid: int, timeout: float = 180.0) -> float:
    """Wait until the server's CPU time grows by less than 0.05 s over 2 s; returns the seconds waited."""
    t0 = time.perf_counter()
    last = _cpu_seconds(pid)
    while time.perf_counter() - t0 < timeout:
        time.sleep(2.0)
        now = _cpu_seconds(pid)
        if now - last < 0.05:
            return time.perf_counter() - t0
        last = now
    raise SystemExit(f"the server did not go idle within {timeout:.0f} s")


def _run_id(page) -> str | None:
    import re
    m = re.search(r"\(run ([0-9a-f]{12}),", page.inner_text("body"))
    return m.group(1) if m else None


def _timed_run(page, pid: int) -> dict:
    """Press Run edit; seconds until the new results are on screen, and the server's CPU seconds meanwhile."""
    old, cpu0 = _run_id(page), _cpu_seconds(pid)
    t0 = time.perf_counter()
    page.get_by_role("button", name="Run edit").click()
    page.wait_for_function(NEW_RESULTS, arg=old, timeout=120_000)
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds(pid) - cpu0
    page.wait_for_selector(IDLE, state="attached", timeout=120_000)
    return {"seconds": round(seconds, 2), "server_cpu_s": round(cpu, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="warm runs, after the server has gone idle")
    p.add_argument("--raw", action="store_true", help="plain streamlit run (no launcher, no preloading)")
    args = p.parse_args()
    start.RAW = args.raw
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    port = start._free_port()
    with open(os.devnull, "w") as log, sync_playwright() as pw:
        proc, _ = start._start_server(port, log)
        try:
            browser = pw.chromium.launch(executable_path=chromium, args=start.FLAGS, headless=True)
            page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{port}/?editor=ft-l%2Bsss&C=0.9")
            page.locator("button:has-text('Run edit'):not([disabled])").wait_for()
            page.wait_for_selector(IDLE, state="attached")
            first = _timed_run(page, proc.pid)
            waited = _wait_server_idle(proc.pid)
            load = os.getloadavg()[0]
            warm = [_timed_run(page, proc.pid) for _ in range(args.repeat)]
            browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    seconds = [w["seconds"] for w in warm]
    print(json.dumps({
        "target_warm_s": TARGET_S, "first": first, "waited_for_idle_s": round(waited, 1), "warm": warm,
        "warm_median_s": statistics.median(seconds), "warm_range_s": [min(seconds), max(seconds)],
        "within_target": statistics.median(seconds) <= TARGET_S,
        "load_average_before_warm": round(load, 2), "load_average_after": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(), "torch_threads_env": os.environ.get("OMP_NUM_THREADS")}, indent=2))


if __name__ == "__main__":
    main()

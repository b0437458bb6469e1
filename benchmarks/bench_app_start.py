"""Time the app's start in a real browser: first paint and model ready, for a cold server and a warm one.

Starts ``sss-lab-app`` (``python -m app.launch``, the README's command; with --raw plain ``streamlit run
streamlit_app.py``, which has no preloading), a fresh process, waits for
its health check, then opens the Edit page in Debian's chromium and prints, from the navigation:

- first content: the app's first words on screen (the "Starting SSS Lab" notice a fresh server shows while
  the editing core is imported, or the page itself);
- first paint: the page's title ("Edit a fact") on screen;
- model ready: the "Run edit" button enabled (the model is loaded and the form drawn);
- the same for a second browser session on the now warm server, and the load average;
- command to first paint: from starting the server process to the first paint of a browser that opens the
  page the moment the server answers its health check, and from the command to the model ready.

Targets (issue 27): first paint <= 2 s, model ready <= 4 s.

    python benchmarks/bench_app_start.py
    python benchmarks/bench_app_start.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RAW = False  # --raw: plain streamlit run
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(port: int, log) -> tuple[subprocess.Popen, float]:
    """The server process, started on ``port`` once it answers its health check, and when it was started."""
    command = ([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true"] if RAW
               else [sys.executable, "-m", "app.launch"])  # the README's command, sss-lab-app
    started = time.perf_counter()
    proc = subprocess.Popen([*command, "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc, started
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not answer its health check within 90 s")


def _open(browser, url: str, since: float | None = None) -> dict[str, float]:
    """Open ``url`` in a new session: first paint and model ready from the navigation (and from ``since``)."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    start = time.perf_counter()
    page.goto(url)
    heading = page.get_by_role("heading", name="Edit a fact")
    heading.or_(page.get_by_text("Starting SSS Lab: loading the editing core")).first.wait_for()
    content = time.perf_counter() - start
    heading.wait_for()
    paint = time.perf_counter() - start
    page.locator("button:has-text('Run edit'):not([disabled])").wait_for()
    ready = time.perf_counter() - start
    ctx.close()
    out = {"first_content_s": round(content, 2), "first_paint_s": round(paint, 2), "model_ready_s": round(ready, 2)}
    if since is not None:
        out["command_to_first_paint_s"] = round(start + paint - since, 2)
        out["command_to_model_ready_s"] = round(start + ready - since, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=1, help="cold servers to start one after another")
    p.add_argument("--raw", action="store_true", help="plain streamlit run (no launcher, no preloading)")
    args = p.parse_args()
    global RAW
    RAW = args.raw
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    runs = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
        for _ in range(args.repeat):
            port = _free_port()
            with open(os.devnull, "w") as log:
                proc, started = _start_server(port, log)
                try:
                    load = os.getloadavg()[0]
                    cold = _open(browser, f"http://127.0.0.1:{port}", since=started)
                    warm = _open(browser, f"http://127.0.0.1:{port}")
                finally:
                    proc.terminate()
                    proc.wait(timeout=15)
            runs.append({"cold_server": cold, "warm_server": warm, "load_average": round(load, 2)})
        browser.close()
    print(json.dumps({"targets": {"first_paint_s": 2.0, "model_ready_s": 4.0}, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()

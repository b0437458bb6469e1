"""Real-browser fixtures: `streamlit run` on a free localhost port, Playwright driving Debian's chromium.

Imported by name from the test modules (no conftest.py here: a second module named "conftest" would
shadow tests/conftest.py for the modules that import helpers from it).

Skips (with the reason) when chromium, playwright or the default model is missing. Screenshots and
the server log go to test-artifacts/ (gitignored); set SSS_LAB_SCREENSHOTS=docs/screenshots to also
write the documentation's screenshots there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 2400}


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server process has used so far; None off Linux."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); browser tests skipped")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install playwright); browser tests skipped")
    return path


def start_server(log_name: str = "e2e-server.log") -> tuple[subprocess.Popen, str]:
    """A fresh `streamlit run streamlit_app.py` on a free port, once it answers its health check: (process, url).
    Its output goes to test-artifacts/``log_name``; the caller stops it. Fails the test after 90 s."""
    ARTIFACTS.mkdir(exist_ok=True)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=(ARTIFACTS / log_name).open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}; see {ARTIFACTS / log_name}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc, url
        except OSError:
            pass
        if time.time() > deadline:
            proc.kill()
            pytest.fail("streamlit did not answer /_stcore/health within 90 s")
        time.sleep(0.3)


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server ``start_server`` started (terminate, then kill after 15 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def server(chromium_path):
    """A fresh `streamlit run streamlit_app.py` on a free port (url, pid); stopped after the session."""
    from sss_core.models import DEFAULT_MODEL
    if not os.environ.get("SSS_LAB_MODEL") and not (DEFAULT_MODEL / "config.json").exists():
        pytest.skip(f"no default model at {DEFAULT_MODEL} (train it: python -m sss_core train-default)")
    proc, url = start_server()
    try:
        yield Server(url, proc.pid)
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def new_page(browser):
    """Factory of pages, each in its own browser context (its own Streamlit session)."""
    contexts = []

    def make():
        ctx = browser.new_context(viewport=VIEWPORT)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(120_000)
        return page

    yield make
    for ctx in contexts:
        ctx.close()


def screenshot(page, name: str) -> Path:
    """Save a screenshot under test-artifacts/ (and $SSS_LAB_SCREENSHOTS when set)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("SSS_LAB_SCREENSHOTS")
    if extra:
        out = Path(extra) if Path(extra).is_absolute() else ROOT / extra
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out / f"{name}.png")
    return path


IDLE = '[data-test-script-state="notRunning"]'  # Streamlit's marker: the session's script is not running


def wait_idle(page, timeout: float = 120_000) -> None:
    """Wait until Streamlit has finished running the script for this session."""
    page.wait_for_selector(IDLE, state="attached", timeout=timeout)


def grid_text(locator) -> str:
    """The cells of an st.dataframe as text: the grid draws on a canvas and mirrors the cells in an
    accessible table inside it, which is what a screen reader (and a test) reads."""
    locator.locator("table").first.wait_for(state="attached")
    return locator.locator("table").first.text_content()


def assert_no_traceback(page) -> None:
    """No Streamlit exception box and no Python traceback on the page."""
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "Traceback" not in page.inner_text("body")


def click_point(page, point) -> None:
    """Click a plotly point where it is drawn (plotly picks it on its drag layer under the mouse)."""
    point.wait_for(state="visible")
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

"""A fresh server's first page says it is loading the editing core instead of staying blank."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

from browser_support import ARTIFACTS, ROOT, _free_port, browser, chromium_path  # noqa: F401 - fixtures

NOTICE = ("Starting SSS Lab: loading the editing core (torch, transformers), a few seconds once per server "
          "start...")
# records every text the app's main block shows, from the first DOM change on
WATCH = """() => {
    window.__seen = [];
    new MutationObserver(() => {
        const main = document.querySelector('[data-testid="stMain"]');
        if (main) window.__seen.push(main.innerText);
    }).observe(document, {subtree: true, childList: true, characterData: true});
}"""


def _fresh_server() -> tuple[subprocess.Popen, str]:
    """Plain ``streamlit run`` (no preload): its first page imports the editing core itself."""
    port = _free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], cwd=ROOT,
                            stdout=(ARTIFACTS / "e2e-start-server.log").open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("streamlit did not answer /_stcore/health within 90 s")


def test_the_first_page_of_a_fresh_server_says_what_it_is_loading(browser):
    proc, url = _fresh_server()
    try:
        ctx = browser.new_context(viewport={"width": 1440, "height": 900})
        page = ctx.new_page()
        page.add_init_script(f"({WATCH})()")
        page.goto(url)
        page.get_by_role("heading", name="Edit a fact").wait_for(timeout=120_000)
        seen = page.evaluate("window.__seen")
        assert any(NOTICE in text for text in seen), seen[:5]
        first = next(i for i, text in enumerate(seen) if NOTICE in text)
        assert not any("Edit a fact" in text for text in seen[:first])  # the notice came before the page
        assert NOTICE not in page.locator('[data-testid="stMain"]').inner_text()  # and left with the page
        ctx.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)

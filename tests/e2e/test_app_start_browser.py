"""A fresh server's first page says it is loading the editing core instead of staying blank."""

from __future__ import annotations

import pytest

from browser_support import start_server, stop_server

pytestmark = pytest.mark.e2e

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


def test_the_first_page_of_a_fresh_server_says_what_it_is_loading(browser):
    proc, url = start_server("e2e-start-server.log")  # plain streamlit run: no preload, the page imports the core
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
        stop_server(proc)

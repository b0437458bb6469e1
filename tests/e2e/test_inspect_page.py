"""The page ``sss-lab inspect --html`` writes, opened in real Chromium with the network off.

The page must carry plotly.js itself: every request that is not for the file is aborted (and the
context is offline), so a page that loaded plotly.js from a CDN would show no plot here.
"""

from __future__ import annotations

import pytest

from browser_support import ARTIFACTS, VIEWPORT
from sss_core.analysis import analyse_edit, background_sentences
from sss_core.evaluation.presets import case_for_request
from sss_core.inspect_page import write_inspect_page
from sss_core.types import EditRequest

pytestmark = pytest.mark.e2e


def test_inspect_page_renders_offline_with_its_lambda_colour_bar(browser, default_lm, tmp_path):
    case = case_for_request(EditRequest("The capital of France is", "Rome", subject="France"))
    run = analyse_edit(default_lm, "ft-l+sss", {}, case, background_sentences(6))
    path = write_inspect_page(run, tmp_path / "france.html")

    ctx = browser.new_context(viewport=VIEWPORT, offline=True)
    outside: list[str] = []

    def only_the_file(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    ctx.route("**/*", only_the_file)
    try:
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(path.as_uri())
        plot = page.locator("#projection.js-plotly-plot")
        plot.wait_for()
        n = len(run.sparsity)
        # one point per sentence before (left panel) and after (right panel)
        points = plot.locator(".scatterlayer .trace .points path.point")
        page.wait_for_function(f"document.querySelectorAll('#projection .scatterlayer path.point').length === {2 * n}")
        assert points.count() == 2 * n
        title = plot.locator(".colorbar .cbtitle").text_content()  # SVG: no inner_text
        assert "lambda_max" in title and "nats" in title
        axes = plot.locator(".g-xtitle, .g-x2title").all_text_contents()
        assert any("PC1" in a for a in axes)
        table = page.locator("table.dataframe").last
        assert "kNN distance before" in table.locator("thead").inner_text()
        assert table.locator("tbody tr").count() == len(run.rows)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "inspect-page.png"), full_page=True)
        assert not errors, errors
        assert outside == [], f"the page asked the network for {outside}"
    finally:
        ctx.close()

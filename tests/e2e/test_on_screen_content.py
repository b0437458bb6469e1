"""What the app shows, read in a real browser: each check reads the drawn content (an SVG element's
computed style, an axis's tick texts, a caption's words), not merely that something appeared."""

from __future__ import annotations

import re
import urllib.parse

import pytest

from browser_support import assert_no_traceback, click_point, wait_idle

pytestmark = pytest.mark.e2e

# Per trace of a plotly chart: its name, meta, and the computed stroke of each drawn point (SVG path).
TRACE_STYLES = """el => {
    const gd = el.querySelector('.js-plotly-plot');
    const drawn = el.querySelectorAll('.scatterlayer .trace');
    return gd._fullData.map((t, i) => ({
        name: t.name, meta: t.meta || null, symbol: t.marker.symbol,
        points: Array.from(drawn[i].querySelectorAll('.point')).map(p => {
            const cs = getComputedStyle(p);
            return {opacity: parseFloat(cs.strokeOpacity), width: parseFloat(cs.strokeWidth), stroke: cs.stroke};
        }),
    }));
}"""
LEGEND_STYLES = """el => Array.from(el.querySelectorAll('.legend .traces')).map(t => {
    const p = t.querySelector('.legendpoints path');
    const cs = p ? getComputedStyle(p) : null;
    return {text: t.querySelector('.legendtext').textContent,
            opacity: cs ? parseFloat(cs.strokeOpacity) : null, width: cs ? parseFloat(cs.strokeWidth) : null};
})"""


def _open_projection_of_the_default_edit(page, server) -> str:
    """Open the Projection page from a link that runs the default preset's FT-L edit; the run id shown."""
    from app.resources import N_PRESETS
    from sss_core.evaluation.presets import presets
    r = presets("test", N_PRESETS, real_first=True)[0].request
    query = {"prompt": r.prompt, "subject": r.subject, "target": r.target_new, "editor": "ft-l", "run": "1"}
    page.goto(server.url + "/projection?" + urllib.parse.urlencode(query))
    page.get_by_role("heading", level=1, name="Projection", exact=True).wait_for()
    page.locator('[data-testid="stPlotlyChart"] .scatterlayer .point').first.wait_for(timeout=180_000)
    wait_idle(page)
    return re.search(r"\(run ([0-9a-f]{12}),", page.inner_text("body")).group(1)


def test_projection_rings_the_neighbours_visibly_as_the_caption_says(server, new_page):
    from sss_core.figures import NEIGHBOUR_RINGS

    page = new_page()
    run = _open_projection_of_the_default_edit(page, server)
    chart = page.locator(f'.st-key-proj-page-{run}-pca-last [data-testid="stPlotlyChart"]')
    click_point(page, chart.locator(".scatterlayer .trace:last-child .point").first)
    page.get_by_text("Nearest neighbours of").wait_for(timeout=60_000)
    wait_idle(page)
    chart = page.locator(f'.st-key-proj-page-{run}-pca-last [data-testid="stPlotlyChart"]')
    chart.locator(".legend .traces").first.wait_for()
    traces = {t["meta"]["neighbours"]: t for t in chart.evaluate(TRACE_STYLES)
              if t["meta"] and "neighbours" in t["meta"]}
    assert sorted(traces) == ["after", "before"]
    k = int(page.get_by_label("k nearest neighbours", exact=True).input_value())
    for when, ring in NEIGHBOUR_RINGS.items():
        t = traces[when]
        assert t["name"] == ring["name"] and t["symbol"] == ring["symbol"]
        assert len(t["points"]) == k
        for p in t["points"]:  # each ring is stroked, opaque and 2 px wide
            assert p["opacity"] == 1 and p["width"] == 2, p
        assert p["stroke"] == {"#7F7F7F": "rgb(127, 127, 127)", "#111111": "rgb(17, 17, 17)"}[ring["colour"]]
    legend = {e["text"]: e for e in chart.evaluate(LEGEND_STYLES)}
    for ring in NEIGHBOUR_RINGS.values():
        assert legend[ring["name"]]["opacity"] == 1 and legend[ring["name"]]["width"] == 2, legend
    words = page.locator('[data-testid="stMarkdownContainer"]', has_text="Nearest neighbours of").inner_text()
    assert "marked in the plot: grey squares before, black circles after" in words, words
    assert_no_traceback(page)


def test_hypothesis_stop_is_usable_during_a_run_and_keeps_the_edits_made(server, new_page):
    from app import serving

    page = new_page()
    page.goto(server.url + "/hypothesis")
    page.get_by_role("heading", level=1, name="The sparse-space hypothesis", exact=True).wait_for()
    wait_idle(page)
    n_max = serving.limit("hypothesis_n")
    n = page.get_by_label("World edits (N)", exact=True)
    assert n.get_attribute("max") == str(n_max) == "200"
    assert page.get_by_text(f"N: at most {n_max} (SSS_LAB_MAX_HYPOTHESIS_N)", exact=True).count() == 1
    n.fill(str(n_max))  # 2 editors x 200 edits: about 2 minutes here, long enough to press Stop in
    n.press("Enter")
    wait_idle(page)
    total = 2 * n_max
    stop = page.get_by_role("button", name="Stop", exact=True)
    assert stop.is_disabled()  # nothing runs yet
    page.get_by_role("button", name="Run", exact=True).click()
    # the progress bar's text while the run goes on: Stop is enabled then
    page.get_by_text(re.compile(rf"^[1-9]\d* of {total} edits: ")).wait_for(timeout=180_000)
    assert stop.is_enabled()
    stop.click()
    warning = page.locator('[data-testid="stAlert"]', has_text="Stopped after")
    warning.wait_for(timeout=120_000)
    wait_idle(page)
    done = int(re.search(rf"Stopped after (\d+) of {total} edits; the results below are over those\.",
                         warning.inner_text()).group(1))
    assert 1 <= done < total
    assert stop.is_disabled() and page.get_by_role("button", name="Continue", exact=True).is_enabled()
    assert page.locator(".st-key-hyp-verdicts").count() == 1  # the results over the edits made are shown
    assert_no_traceback(page)

"""The Projection view's plot and its sentences table select each other, and the search dims the other
sentences, in a real browser: each check reads the drawn content (the grid's rows, the plotted selection
marker's position, each point's computed opacity, the count's words)."""

from __future__ import annotations

import re
import urllib.parse

import pytest

from browser_support import assert_no_traceback, click_point, screenshot, wait_idle

pytestmark = pytest.mark.e2e

# Per point trace (meta.when) of the chart: its sentence indices, x, y and each drawn point's computed opacity;
# and the selection marker's position (the trace whose meta names the selected sentence).
CHART = """el => {
    const gd = el.querySelector('.js-plotly-plot');
    const drawn = el.querySelectorAll('.scatterlayer .trace');
    const points = [];
    let selected = null;
    gd._fullData.forEach((t, i) => {
        const meta = t.meta || {};
        if (meta.when) {
            const opacity = Array.from(drawn[i].querySelectorAll('.point')).map(
                p => parseFloat(getComputedStyle(p).opacity));
            points.push({when: meta.when, group: meta.group, trace: i, ids: Array.from(t.customdata),
                         x: Array.from(t.x), y: Array.from(t.y), opacity: opacity});
        }
        if (meta.selected !== undefined) selected = {x: t.x[0], y: t.y[0]};
    });
    return {points: points, selected: selected};
}"""
ROW = 35  # height of a header or a row of st.dataframe's grid, px


def _open(page, server, **extra) -> str:
    """The Projection page of the Melbourne preset's FT-L edit (43 sentences), from a link; the run id shown."""
    from app.resources import preset_cases
    r = preset_cases()[2].request
    query = {"prompt": r.prompt, "subject": r.subject, "target": r.target_new, "editor": "ft-l", "run": "1", **extra}
    page.goto(server.url + "/projection?" + urllib.parse.urlencode(query))
    page.get_by_role("heading", level=1, name="Projection", exact=True).wait_for()
    page.locator('[data-testid="stPlotlyChart"] .scatterlayer .point').first.wait_for(timeout=180_000)
    wait_idle(page)
    return re.search(r"\(run ([0-9a-f]{12}),", page.inner_text("body")).group(1)


def _rows(page, run: str) -> list[dict[str, str]]:
    """The sentences table's rows {column: cell text}, from the grid's accessible table."""
    table = page.locator(f'.st-key-proj-page-{run}-rows-box [data-testid="stDataFrame"] table').first
    table.wait_for(state="attached")
    cells = [[c.text_content().strip() for c in row.locator("th, td").all()] for row in table.locator("tr").all()]
    return [dict(zip(cells[0], row)) for row in cells[1:]]


def _after_point(chart_state: dict, index: int) -> tuple[float, float]:
    for t in chart_state["points"]:
        if t["when"] == "after" and index in t["ids"]:
            j = t["ids"].index(index)
            return t["x"][j], t["y"][j]
    raise AssertionError(f"sentence {index} is not drawn")


def test_clicking_a_point_marks_its_row_and_choosing_a_row_marks_its_point(server, new_page):
    page = new_page()
    run = _open(page, server)
    chart = page.locator(f'.st-key-proj-page-{run}-pca-last [data-testid="stPlotlyChart"]')
    state = chart.evaluate(CHART)
    rewrite = next(t for t in state["points"] if t["when"] == "after" and t["group"] == "rewrite")
    assert rewrite["ids"] == [0]
    click_point(page, chart.locator(".scatterlayer .trace").nth(rewrite["trace"]).locator(".point").first)
    page.get_by_text("Nearest neighbours of “Melbourne is a city in”").wait_for(timeout=60_000)
    wait_idle(page)
    rows = _rows(page, run)
    assert (rows[0]["#"], rows[0]["sentence"], rows[0]["in the plot"]) == ("0", "Melbourne is a city in", "selected")
    assert [r["#"] for r in rows[1:4]] == ["1", "2", "3"] and rows[3]["sentence"] == "Bergen is a city in"
    # choose the row of "Bergen is a city in" (the fourth row) by its row marker, at the grid's left edge
    grid = page.locator(f'.st-key-proj-page-{run}-rows-box [data-testid="stDataFrame"]').first
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 14, box["y"] + ROW + 3 * ROW + ROW / 2)
    page.get_by_text("Nearest neighbours of “Bergen is a city in”").wait_for(timeout=60_000)
    wait_idle(page)
    rows = _rows(page, run)
    assert (rows[0]["#"], rows[0]["sentence"], rows[0]["in the plot"]) == ("3", "Bergen is a city in", "selected")
    chart = page.locator(f'.st-key-proj-page-{run}-pca-last [data-testid="stPlotlyChart"]')
    state = chart.evaluate(CHART)
    assert state["selected"] is not None
    assert (state["selected"]["x"], state["selected"]["y"]) == _after_point(state, 3)
    assert_no_traceback(page)


def test_search_counts_the_matches_and_dims_the_other_points(server, new_page):
    page = new_page()
    run = _open(page, server)
    box = page.get_by_label("Find sentences", exact=True)
    box.fill("capital")
    box.press("Enter")
    count = page.locator(".st-key-proj-search-count")
    count.get_by_text("2 of 43 sentences match “capital”; the others are dimmed.", exact=True).wait_for()
    wait_idle(page)
    chart = page.locator(f'.st-key-proj-page-{run}-pca-last [data-testid="stPlotlyChart"]')
    state = chart.evaluate(CHART)
    drawn = {(t["when"], i): o for t in state["points"] for i, o in zip(t["ids"], t["opacity"])}
    assert len(drawn) == 86
    for (when, i), opacity in drawn.items():
        assert opacity == (1.0 if i in (12, 38) else 0.15), (when, i, opacity)
    page.get_by_text("Text labels", exact=True).click()
    chart.locator(".scatterlayer .trace .textpoint").first.wait_for()
    wait_idle(page)
    labels = chart.locator(".scatterlayer .trace .textpoint text").all_text_contents()
    assert len(labels) == 43 and labels[0] == "Melbourne is a city in" and "Cairo is the capital of" in labels
    screenshot(page, "projection-search-and-labels")
    assert_no_traceback(page)

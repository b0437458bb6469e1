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
# Each legend entry's name and its symbol's computed opacity.
LEGEND = """el => Array.from(el.querySelectorAll('.legend .traces')).map(t => [
    t.querySelector('.legendtext').textContent,
    parseFloat(getComputedStyle(t.querySelector('.legendpoints path')).opacity)])"""
GROUPS_SHOWN = ["background (other facts)", "edit prompt", "paraphrase", "neighbour", "pre-neighbour",
                "post-neighbour", "distract-neighbour", "one-hop"]
# The plot area's box, every drawn point's box (markers and rings) and every text label's box and text, px.
BOXES = """el => {
    const box = e => {
        const b = e.getBoundingClientRect();
        return {x0: b.left, y0: b.top, x1: b.right, y1: b.bottom};
    };
    return {plot: box(el.querySelector('.nsewdrag')),
            points: Array.from(el.querySelectorAll('.scatterlayer .point')).map(box),
            labels: Array.from(el.querySelectorAll('.scatterlayer .textpoint text')).map(
                t => Object.assign(box(t), {text: t.textContent}))};
}"""
# A table's grid: its header texts (the accessible table's), its box's width and its columns' total width (the
# scrolled content's: wider than the box when a column is cut off or hidden to the right).
GRID = """g => { const s = g.querySelector('.dvn-scroller');
    return {headers: Array.from(g.querySelectorAll('table thead th')).map(h => h.textContent.trim()),
            box: g.getBoundingClientRect().width, client: s.clientWidth, content: s.scrollWidth}; }"""
WIDE = {"width": 1440, "height": 900}  # the window the tables and the plot must fit


def _overlap(a: dict, b: dict) -> bool:
    return a["x0"] < b["x1"] and b["x0"] < a["x1"] and a["y0"] < b["y1"] and b["y0"] < a["y1"]


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
    # the legend is not dimmed with the points: every entry's symbol is drawn at full opacity
    legend = chart.evaluate(LEGEND)
    assert [name for name, _ in legend] == GROUPS_SHOWN and all(o == 1.0 for _, o in legend), legend
    page.get_by_text("Text labels", exact=True).click()
    chart.locator(".scatterlayer .trace .textpoint").first.wait_for()
    wait_idle(page)
    labels = chart.locator(".scatterlayer .trace .textpoint text").all_text_contents()
    assert labels == ["The capital of the country …", "Cairo is the capital of"]  # the matches only
    page.locator(".st-key-proj-labels-note").get_by_text(
        "Text labels: 2 of 2 sentences matching the search.", exact=True).wait_for()
    screenshot(page, "projection-search-and-labels")
    assert_no_traceback(page)


def _labels_overlap_nothing(chart) -> list[dict]:
    """The chart's text labels, after checking that each lies inside the plot area and over no other label and no
    drawn point (markers and rings), in the browser's own boxes."""
    drawn = chart.evaluate(BOXES)
    plot, labels = drawn["plot"], drawn["labels"]
    for i, a in enumerate(labels):
        assert plot["x0"] <= a["x0"] and a["x1"] <= plot["x1"] and plot["y0"] <= a["y0"] and a["y1"] <= plot["y1"]
        assert not any(_overlap(a, b) for b in labels[i + 1:]), a
        assert not any(_overlap(a, p) for p in drawn["points"]), a
    return labels


def _tables_show_every_column(page, tables: dict[str, list[str]]) -> None:
    """Each table (its container's key -> its headers) has those headers and every column inside its box."""
    for key, headers in tables.items():
        grid = page.locator(f'.st-key-{key} [data-testid="stDataFrame"]').first
        grid.locator("table").first.wait_for(state="attached")
        shape = grid.evaluate(GRID)
        assert [h for h in shape["headers"] if h] == headers, shape
        assert shape["content"] <= shape["client"] <= shape["box"], (key, shape)


SENTENCE_HEADERS = ["#", "sentence", "group", "top-1 before", "top-1 after", "moved ‖Δh‖", "in the plot"]
NEIGHBOUR_HEADERS = ["rank", "before", "distance before", "kept", "after", "distance after", "new"]


def test_tsne_fills_the_plot_its_labels_overlap_nothing_and_both_tables_show_every_column(server, browser):
    from app.panels.projection_plot import label_text
    from app.resources import preset_cases

    context = browser.new_context(viewport=WIDE)
    try:
        page = context.new_page()
        page.set_default_timeout(180_000)
        run = _open(page, server, proj="tsne", plabels="1", sel="0")
        chart = page.locator(f'.st-key-proj-page-{run}-tsne-last [data-testid="stPlotlyChart"]')
        drawn = chart.evaluate(BOXES)
        plot = drawn["plot"]
        width, height = plot["x1"] - plot["x0"], plot["y1"] - plot["y0"]
        assert width > 900 and height > 550, plot
        # the points fill the plot: their centres span at least 80% of its width and of its height (one scale on
        # both axes had squeezed them into 56% of its width)
        cx = [(p["x0"] + p["x1"]) / 2 for p in drawn["points"]]
        cy = [(p["y0"] + p["y1"]) / 2 for p in drawn["points"]]
        assert (max(cx) - min(cx)) / width > 0.8 and (max(cy) - min(cy)) / height > 0.8
        # the labels: the edit prompt's first, as label_text cuts it, inside the plot, over no label and no point
        labels = _labels_overlap_nothing(chart)
        assert labels[0]["text"] == label_text(preset_cases()[2].request.prompt) and len(labels) >= 8
        note = page.locator(".st-key-proj-labels-note").inner_text()
        assert note.startswith(f"Text labels: {len(labels)} of 13 probes of the edit (all but the background)")
        # every column of the sentences table and of the nearest-neighbours table inside the table's box
        _tables_show_every_column(page, {f"proj-page-{run}-rows-box": SENTENCE_HEADERS,
                                         f"proj-page-nn-{run}-box": NEIGHBOUR_HEADERS})
        screenshot(page, "projection-tsne-labels-1440")
        assert_no_traceback(page)
        # the same panel in the Edit page's two-thirds column: labels and tables fitted to it
        page.goto(page.url.replace("/projection?", "/?"))  # a new session: the link's edit is run again
        page.locator('[data-testid="stPlotlyChart"] .scatterlayer .textpoint').first.wait_for(state="attached")
        wait_idle(page)
        run = re.search(r"\(run ([0-9a-f]{12}),", page.inner_text("body")).group(1)
        chart = page.locator(f'.st-key-edit-proj-{run}-tsne-last [data-testid="stPlotlyChart"]')
        assert len(_labels_overlap_nothing(chart)) >= 5
        _tables_show_every_column(page, {f"edit-proj-{run}-rows-box": SENTENCE_HEADERS,
                                         f"edit-proj-nn-{run}-box": NEIGHBOUR_HEADERS})
        assert_no_traceback(page)
    finally:
        context.close()

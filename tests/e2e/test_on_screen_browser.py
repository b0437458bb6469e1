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
    assert page.get_by_text(f"N: at most {n_max} here", exact=True).count() == 1
    n.fill(str(n_max))  # 2 editors x 200 edits: about 2 minutes here, long enough to press Stop in
    n.press("Enter")
    wait_idle(page)
    total = 2 * n_max
    stop = page.get_by_role("button", name="Stop", exact=True)
    assert stop.is_disabled()  # nothing runs yet
    page.get_by_role("button", name="Run", exact=True).click()
    # the progress bar's text while the run goes on: Stop is enabled then
    page.get_by_text(re.compile(rf"^[1-9]\d* of {total} edits[:;] ")).wait_for(timeout=180_000)
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


# The boxes (page coordinates) of an SVG chart's axis titles and tick labels, and of the chart itself.
AXIS_BOXES = """el => {
    const box = e => {
        const r = e.getBoundingClientRect();
        return {x0: r.left, x1: r.right, y0: r.top, y1: r.bottom};
    };
    const titles = Array.from(el.querySelectorAll('.infolayer text'))
        .filter(t => /^[xy]\\d*title$/.test(t.getAttribute('class') || ''))
        .map(t => ({axis: t.getAttribute('class'), text: t.textContent, ...box(t)}));
    const ticks = Array.from(el.querySelectorAll('g > text'))
        .filter(t => /^[xy]\d*tick$/.test(t.parentNode.getAttribute('class') || ''))
        .map(t => ({axis: t.parentNode.getAttribute('class'), text: t.textContent, ...box(t)}));
    return {chart: box(el.querySelector('.main-svg')), titles, ticks};
}"""


def _overlap(a: dict, b: dict) -> bool:
    return a["x0"] < b["x1"] and b["x0"] < a["x1"] and a["y0"] < b["y1"] and b["y0"] < a["y1"]


def _inside(a: dict, chart: dict) -> bool:
    return chart["x0"] <= a["x0"] and a["x1"] <= chart["x1"] and chart["y0"] <= a["y0"] and a["y1"] <= chart["y1"]


def _wide_page(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(180_000)
    return ctx, page


def test_trajectory_log_axis_reads_powers_of_ten(browser, server):
    ctx, page = _wide_page(browser)
    try:
        page.goto(server.url + "/compare")
        page.get_by_role("heading", level=1, name="Compare two edits", exact=True).wait_for()
        wait_idle(page)
        page.get_by_role("button", name="Run both").click()
        chart = page.locator('[data-testid="stPlotlyChart"]', has=page.locator(
            ".gtitle", has_text="Optimisation per step: edit loss and SSS term"))
        chart.locator(".scatterlayer .trace").first.wait_for(timeout=240_000)
        wait_idle(page, timeout=240_000)
        ticks = [t["text"] for t in chart.evaluate(AXIS_BOXES)["ticks"] if t["axis"] == "y2tick"]
        assert len(ticks) >= 2 and all(re.fullmatch(r"1e-?\d+", t) for t in ticks), ticks
        exponents = [int(t[2:]) for t in ticks]
        assert exponents == list(range(exponents[0], exponents[0] + len(ticks)))  # one per decade, in order
    finally:
        ctx.close()


def test_hypothesis_scatter_axis_titles_do_not_collide_or_clip(browser, server):
    ctx, page = _wide_page(browser)
    try:
        page.goto(server.url + "/hypothesis")
        page.get_by_role("heading", level=1, name="The sparse-space hypothesis", exact=True).wait_for()
        wait_idle(page)
        n = page.get_by_label("World edits (N)", exact=True)
        n.fill("6")
        n.press("Enter")
        wait_idle(page)
        page.get_by_role("button", name="Run", exact=True).click()
        chart = page.locator('.st-key-hyp-scatter-12 [data-testid="stPlotlyChart"]')
        chart.locator(".scatterlayer .point").first.wait_for(timeout=240_000)
        wait_idle(page)
        boxes = chart.evaluate(AXIS_BOXES)
        titles = boxes["titles"]
        assert sorted(t["text"] for t in titles) == sorted(
            ["damage(1 − locality)"] * 2 + ["λ_max before the edit(log scale; ‖∇_h J‖², J in nats)",
             "kNN distance of the edit prompt(mean euclidean distance to its k nearestworld prompts, "
             "hidden-state units)"]), titles
        for i, a in enumerate(titles):
            assert _inside(a, boxes["chart"]), (a, boxes["chart"])
            for b in titles[i + 1:]:
                assert not _overlap(a, b), (a, b)
            for t in boxes["ticks"]:
                assert not _overlap(a, t), (a, t)
    finally:
        ctx.close()


def _download(page, button: str, tmp_path) -> str:
    with page.expect_download() as info:
        page.get_by_role("button", name=button, exact=True).click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    return path.as_uri()


def test_weight_delta_and_projection_exports_show_whole_labels_and_a_title(browser, server, tmp_path):
    ctx, page = _wide_page(browser)
    try:
        page.goto(server.url + "/?editor=ft-l")
        page.get_by_role("button", name="Run edit").click()
        page.get_by_role("button", name="Weight delta (HTML)", exact=True).wait_for(timeout=180_000)
        wait_idle(page)
        delta_page, projection_page = (_download(page, f"{name} (HTML)", tmp_path)
                                       for name in ("Weight delta", "Projection"))
        page.set_viewport_size({"width": 1200, "height": 900})
        page.goto(delta_page)
        page.locator(".main-svg").first.wait_for()
        boxes = page.locator(".js-plotly-plot").evaluate(AXIS_BOXES)
        names = [t for t in boxes["ticks"] if t["axis"] == "ytick"]
        assert [t["text"] for t in names] == ["transformer.h.0.mlp.c_proj.weight"]  # the shipped FT-L's layer
        assert all(_inside(t, boxes["chart"]) for t in names), names
        (title,) = [t for t in boxes["titles"] if t["axis"] == "xtitle"]
        assert title["text"] == "||ΔW|| (Frobenius)"
        assert not any(_overlap(title, t) for t in boxes["ticks"]), boxes

        page.goto(projection_page)
        page.locator(".main-svg").first.wait_for()
        plot = page.locator(".js-plotly-plot")
        assert plot.locator(".gtitle").text_content().startswith("SSS Lab: projection, ft-l")
        chart = plot.evaluate(AXIS_BOXES)["chart"]
        legend = plot.evaluate("""el => Array.from(el.querySelectorAll('.legend .traces')).map(t => {
            const r = t.getBoundingClientRect(); return {text: t.textContent, x0: r.left, x1: r.right, y0: r.top,
                                                        y1: r.bottom}; })""")
        texts = [e["text"] for e in legend]
        assert {"edit prompt", "paraphrase", "neighbour", "background (other facts)"} <= set(texts), texts
        for entry in legend:  # every entry whole, inside the figure (the last one ran past 1200 px)
            assert _inside(entry, chart), (entry, chart)
        assert plot.locator(".legendtitletext").text_content() == "hollow = before, filled = after:"
    finally:
        ctx.close()


# Widest text of each named column of an st.dataframe, measured in the grid's own font (its CSS variables),
# plus the cell padding on both sides; and the grid's horizontal overflow (0: every column in view).
GRID_FIT = """(el, columns) => {
    const grid = el.querySelector('[style*="--gdg-font-family"]');
    const css = getComputedStyle(grid);
    const ctx = document.createElement('canvas').getContext('2d');
    ctx.font = css.getPropertyValue('--gdg-base-font-style').trim() + ' ' + css.getPropertyValue('--gdg-font-family');
    const pad = 2 * parseFloat(css.getPropertyValue('--gdg-cell-horizontal-padding'));
    const table = el.querySelector('table');
    const names = Array.from(table.querySelectorAll('th')).map(th => th.textContent);
    const widest = {};
    for (const name of columns) {
        const i = names.indexOf(name);
        const cells = Array.from(table.querySelectorAll(`td[aria-colindex="${i + 1}"]`)).map(td => td.textContent);
        widest[name] = {needed: Math.max(...cells.map(t => ctx.measureText(t).width)) + pad, cells};
    }
    const scroller = el.querySelector('.dvn-scroller');
    return {widest, overflow: scroller.scrollWidth - scroller.clientWidth};
}"""
# Each metric card's label: the width its text needs and the width it has.
METRIC_LABELS = """els => els.map(e => {
    const box = e.querySelector('[data-testid="stMarkdownContainer"]');
    const range = document.createRange();
    range.selectNodeContents(box.querySelector('p'));
    return {text: box.textContent, needed: range.getBoundingClientRect().width, has: box.clientWidth};
})"""


def test_edit_results_fit_at_1440_px_without_cut_labels_or_cells(browser, server):
    from app.panels.edit import PROBE_WIDTHS

    ctx, page = _wide_page(browser)
    try:
        page.goto(server.url + "/")
        page.get_by_role("button", name="Run edit").click()
        page.wait_for_function("() => /\\(run [0-9a-f]{12},/.test(document.body.innerText)", timeout=180_000)
        wait_idle(page)
        # the caption comes before the cards in the same script run: wait for the six cards themselves (a clean-
        # clone CI run read the labels between the two and found none)
        page.locator('[data-testid="stMetricLabel"]').nth(5).wait_for()
        labels = page.locator('[data-testid="stMetricLabel"]').evaluate_all(METRIC_LABELS)
        assert [m["text"] for m in labels] == ["λ_max before (new target)", "λ_max after (new target)",
                                               "reliability", "generality", "locality", "portability"]
        for m in labels:
            assert m["needed"] <= m["has"] + 1, m  # (clientWidth is in whole pixels)
        run = re.search(r"\(run ([0-9a-f]{12}),", page.inner_text("body")).group(1)
        table = page.locator(f".st-key-edit-probes-{run}-box")
        table.locator("table").first.wait_for(state="attached")
        fit = table.evaluate(GRID_FIT, ["group", "top-1"])
        assert fit["overflow"] <= 1, fit
        assert "distract-neighbour" in fit["widest"]["group"]["cells"]
        assert "FLIPPED ✗ damage" in fit["widest"]["top-1"]["cells"]
        for column in ("group", "top-1"):
            assert fit["widest"][column]["needed"] <= PROBE_WIDTHS[column], (column, fit["widest"][column])
    finally:
        ctx.close()


def test_c_sweep_label_sits_on_its_line_and_sequential_shows_its_last_column(browser, server):
    ctx, page = _wide_page(browser)
    try:
        page.goto(server.url + "/sweep")
        page.get_by_role("heading", level=1, name="C sweep", exact=True).wait_for()
        wait_idle(page)
        page.get_by_role("button", name="Run sweep").click()
        chart = page.locator('.st-key-sweep-fig [data-testid="stPlotlyChart"]')
        chart.locator(".scatterlayer .trace").first.wait_for(timeout=240_000)
        wait_idle(page)
        line = chart.locator(".shapelayer path").first.bounding_box()
        label = chart.locator(".annotation", has_text="λ_max before (new target)").bounding_box()
        assert line["height"] <= 2  # a horizontal line
        gap = line["y"] - (label["y"] + label["height"])  # the label sits just above its line
        assert -2 <= gap <= 6, (line, label)

        page.goto(server.url + "/sequential")
        page.get_by_role("heading", level=1, name="Sequential editing", exact=True).wait_for()
        wait_idle(page)
        page.get_by_role("button", name="Apply this edit").click()
        table = page.locator(".st-key-seq-1-table-box")
        table.locator("table").first.wait_for(state="attached", timeout=180_000)
        wait_idle(page)
        fit = table.evaluate(GRID_FIT, ["n"])
        assert fit["overflow"] <= 1, fit  # every column, the last ("seconds") included, in view
        header = table.locator("th").all_text_contents()
        assert header[-1] == "seconds" and "retention" in header, header
    finally:
        ctx.close()


def _type_fact(page, prompt: str) -> None:
    page.get_by_text("Type a fact", exact=True).click()
    box = page.get_by_label("Prompt", exact=True)
    box.wait_for()
    box.fill(prompt)
    box.press("Enter")
    wait_idle(page)


def test_a_failed_sequential_step_says_why_in_view_and_a_long_input_is_not_repeated(server, new_page):
    from app.messages import SHOWN_QUOTE

    page = new_page()
    page.goto(server.url + "/sequential")
    page.get_by_role("heading", level=1, name="Sequential editing", exact=True).wait_for()
    wait_idle(page)
    _type_fact(page, "x" * 3000)  # a pasted page without the subject (France) in it
    page.get_by_role("button", name="Apply this edit").click()
    error = page.locator('[data-testid="stAlert"]', has_text="Edit 1 failed")
    error.wait_for(timeout=120_000)
    wait_idle(page)
    assert error.is_visible()  # not inside the status box, which is collapsed
    assert page.locator('[data-testid="stExpander"] [data-testid="stAlert"]', has_text="Edit 1 failed").count() == 0
    text = error.inner_text()
    assert text.startswith("Edit 1 failed: the subject 'France' does not occur in the prompt "
                           f"'{'x' * SHOWN_QUOTE}...' (3000 characters)"), text
    assert len(text) < 400, len(text)
    status = page.locator('[data-testid="stExpander"] summary', has_text="Edit 1 failed; the history keeps the 0 "
                                                                        "before it")
    assert status.count() == 1  # the status box's label says which edit failed
    assert_no_traceback(page)


def test_the_server_prints_no_loading_bar_or_deprecation_warning_for_an_edit(server, new_page):
    """The server's log (stdout and stderr of `streamlit run`) after a ROME edit on the Edit page: ROME
    samples context prefixes with generate(), whose renamed keyword once printed a FutureWarning."""
    from browser_support import ARTIFACTS

    page = new_page()
    page.goto(server.url + "/?editor=rome")
    page.get_by_role("button", name="Run edit").click()
    page.wait_for_function("() => /\\(run [0-9a-f]{12},/.test(document.body.innerText)", timeout=180_000)
    wait_idle(page)
    assert page.get_by_role("combobox", name="Editor").input_value().startswith("rome")
    log = (ARTIFACTS / "e2e-server.log").read_text()
    assert "Uvicorn server started" in log  # the log of this server
    for noise in ("Loading weights", "Warning", "deprecated", "Traceback"):
        assert noise not in log, (noise, log[-2000:])


STRIPS = """el => Array.from(el.querySelectorAll('.sss-strip')).map(s => ({
    when: s.dataset.when, label: s.firstElementChild.textContent,
    tokens: Array.from(s.querySelectorAll('.sss-tok')).map(t => [t.textContent, t.dataset.share,
                                                                 getComputedStyle(t).textDecorationLine]),
}))"""


def test_salience_strip_shows_each_tokens_share_of_lambda_max(server, new_page, default_lm):
    from app.panels.common import fmt_lambda
    from sss_core.sss import lambda_max_tokens
    from test_browser import app_presets

    r = app_presets()[0].request
    page = new_page()
    page.goto(server.url + "/?editor=ft-l")
    page.get_by_role("button", name="Run edit").click()
    box = page.locator(".st-key-edit-salience")
    box.locator(".sss-strip").first.wait_for(timeout=180_000)
    wait_idle(page)
    before, after = box.evaluate(STRIPS)
    # before the edit: the shipped model's own split, computed here on the unedited model
    expected = lambda_max_tokens(default_lm.model, default_lm.tok, r.prompt, r.target_new)
    assert before["when"] == "before" and before["label"] == f"before (λ_max {fmt_lambda(expected.lambda_max)})"
    assert [t[0] for t in before["tokens"]] == list(expected.tokens)
    assert [t[1] for t in before["tokens"]] == [f"{s:.4f}" for s in expected.shares()]
    underlined = ["underline" in t[2] for t in before["tokens"]]
    assert underlined == [i >= expected.n_prompt for i in range(len(expected.tokens))]  # the target's tokens
    # after the edit: the same tokens, shares of a sum (1 up to the 4 decimals shown), λ_max as the metric card
    card = page.locator('[data-testid="stMetric"]', has_text="λ_max after (new target)")
    assert after["label"] == f"after (λ_max {card.locator('[data-testid=stMetricValue]').inner_text().strip()})"
    assert [t[0] for t in after["tokens"]] == list(expected.tokens)
    assert abs(sum(float(t[1]) for t in after["tokens"]) - 1) <= 5e-4 * len(expected.tokens)
    assert_no_traceback(page)

"""The sparse-space hypothesis in a real browser: the Hypothesis view over 20 world edits shows its rho
(and a click on a point opens that edit in the Edit view), the projection coloured by lambda_max shows
its colour bar with the unit, and Compare shows the paired-difference panel."""

from __future__ import annotations

import re

import pytest

from browser_support import assert_no_traceback, click_point, grid_text, screenshot, wait_idle

pytestmark = pytest.mark.e2e
RHO = re.compile(r"λ_max before ~ damage \(1 − locality\): ρ = [+-]\d\.\d{3} \(95% CI [+-]\d\.\d{3} to [+-]\d\.\d{3}, "
                 r"n = \d+, p \(BH\) = [0-9.e-]+; paper predicts > 0\) → (supports|contradicts|inconclusive)")
NEW_RESULTS = """() => /\\(run [0-9a-f]{12},/.test(document.body.innerText)
    && document.querySelector('[data-testid="stPlotlyChart"] .scatterlayer .point') !== null"""










def test_hypothesis_view_over_20_world_edits_shows_its_rho(server, new_page):
    page = new_page()
    page.goto(server.url + "/hypothesis")
    page.get_by_role("heading", level=1, name="The sparse-space hypothesis", exact=True).wait_for()
    wait_idle(page)
    n = page.get_by_label("World edits (N)", exact=True)
    n.fill("20")
    n.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Run", exact=True).click()
    verdicts = page.locator(".st-key-hyp-verdicts")
    verdicts.wait_for(timeout=480_000)
    wait_idle(page, timeout=480_000)
    text = verdicts.inner_text()
    assert "ft-l" in text and len(RHO.findall(text)) == 2, text  # one lambda_max line per editor
    assert "kNN distance ~ damage" in text and "paper predicts < 0" in text
    assert page.get_by_text(re.compile(r"^40 edits \(20 world cases x 2 editors, seed 0\)")).count() == 1
    table = grid_text(page.locator(".st-key-hyp-corr-box"))
    assert "ρ (Spearman)" in table and "paper predicts" in table and "verdict" in table
    assert_no_traceback(page)
    screenshot(page, "hypothesis")

    # a click on a point of the scatter opens that edit in the Edit view, which runs it
    scatter = page.locator('.st-key-hyp-scatter-40 [data-testid="stPlotlyChart"]')
    point = scatter.locator(".scatterlayer .trace").first.locator(".point").first
    click_point(page, point)
    page.get_by_role("heading", level=1, name="Edit a fact", exact=True).wait_for(timeout=60_000)
    page.wait_for_function(NEW_RESULTS, timeout=180_000)
    wait_idle(page)
    caption = page.locator('[data-testid="stMarkdownContainer"]', has_text="(run ").first.inner_text()
    shown = re.search(r"^(\S+) on .*?: ['\"](.+)['\"] (?:->|→) (.+) \(run [0-9a-f]{12},", caption)
    assert shown is not None, caption
    from sss_core.evaluation.datasets import load_cases
    edits = {(c.request.prompt, c.request.target_new) for c in load_cases("world", 20, 0)}
    assert shown.group(1) == "ft-l" and (shown.group(2), shown.group(3)) in edits, caption  # the first trace: ft-l
    assert_no_traceback(page)


def test_projection_coloured_by_lambda_max_shows_its_colour_bar(server, new_page):
    from sss_core.sparsity import LAMBDA_UNIT

    page = new_page()
    page.goto(server.url + "/")
    page.get_by_role("button", name="Run edit").wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Run edit").click()
    page.wait_for_function(NEW_RESULTS, timeout=180_000)
    wait_idle(page)
    page.locator('[data-testid="stSidebarNav"] a', has_text="Projection").first.click()
    page.get_by_role("heading", level=1, name="Projection", exact=True).wait_for()
    wait_idle(page)
    colour = page.locator('[data-testid="stRadio"]', has_text="Colour by")
    colour.get_by_text("λ_max", exact=True).click()
    title = page.locator('[data-testid="stPlotlyChart"] .colorbar .cbtitle')
    title.wait_for(timeout=60_000)
    wait_idle(page)
    assert LAMBDA_UNIT in title.text_content() and "log10" in title.text_content()
    ticks = page.locator('[data-testid="stPlotlyChart"] .colorbar .cbaxis text').all_text_contents()
    assert ticks and all(re.fullmatch(r"1e-?\d+", t) for t in ticks), ticks
    axis = page.locator('[data-testid="stPlotlyChart"] .xtitle').first.text_content()
    assert axis.startswith("PCA 1") and "variance" in axis
    assert_no_traceback(page)


def test_compare_shows_the_paired_difference_panel(server, new_page):
    page = new_page()
    page.goto(server.url + "/compare")
    page.get_by_role("heading", level=1, name="Compare two edits", exact=True).wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Run both").click()
    panel = page.locator(".st-key-cmp-paired")
    panel.get_by_role("heading", name="Paired differences: A minus B").wait_for(timeout=240_000)
    wait_idle(page, timeout=240_000)
    bars = panel.locator('[data-testid="stPlotlyChart"] .barlayer .point')
    bars.first.wait_for(timeout=60_000)
    table = grid_text(panel.locator(".st-key-cmp-probes-box"))
    # (the grid mirrors only the columns in view; the top-1 columns are further right)
    assert "ΔP(old) A" in table and "ΔP(old) B" in table and "ΔP(old) A − B" in table
    assert bars.count() >= 1
    metrics = {m.locator('[data-testid="stMetricLabel"]').inner_text().strip():
               m.locator('[data-testid="stMetricValue"]').inner_text().strip()
               for m in panel.locator('[data-testid="stMetric"]').all()}
    assert re.fullmatch(r"-?[01]\.\d{4}", metrics["cos(ΔW A, ΔW B)"]), metrics
    trajectory = panel.locator('[data-testid="stPlotlyChart"]', has=page.locator(
        ".gtitle", has_text="Optimisation per step: edit loss and SSS term"))
    assert trajectory.locator(".scatterlayer .trace").count() >= 3  # both edit losses and B's SSS term
    assert_no_traceback(page)

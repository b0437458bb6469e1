"""The Class story in a real browser, as a newcomer walks it: from the Edit page's link, "Run the story", then
"Next" through the five steps; each step's cards, definitions and verdicts read exactly, and "Open this pair
in Compare" shows the pair's numbers. The seconds from opening the app to the last step, and the words on each
screen, are written to test-artifacts/story-timing.json (measured, not asserted)."""

from __future__ import annotations

import json
import time

import pytest

from browser_support import ARTIFACTS, assert_no_traceback, grid_text, screenshot, wait_idle
from story_support import story_edits

pytestmark = pytest.mark.e2e

SCORES = ("reliability", "generality", "locality", "portability")


@pytest.fixture(scope="module")
def expected():
    return story_edits()


def _cards(page) -> dict[str, str]:
    return {m.locator('[data-testid="stMetricLabel"]').inner_text().strip():
            m.locator('[data-testid="stMetricValue"]').inner_text().strip()
            for m in page.locator('[data-testid="stMetric"]').all()}


def _main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def _next(page, label: str) -> None:
    page.get_by_role("button", name=f"Next: {label}").click()
    page.get_by_role("heading", name=label, exact=True).wait_for()
    wait_idle(page)
    assert_no_traceback(page)


def test_class_story_walked_from_the_edit_page(server, new_page, expected):
    main, (plain, with_sss), (loose_a, loose_b) = expected["main"], *expected["pairs"]
    page = new_page()
    start = time.perf_counter()
    page.goto(server.url + "/")
    link = page.get_by_role("link", name="Teaching? The Class story tells the paper's story in five steps")
    link.click()
    page.get_by_role("heading", name="Class story", exact=True).wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Run the story").click()
    page.get_by_role("heading", name="1. The fact", exact=True).wait_for()
    wait_idle(page)
    assert_no_traceback(page)
    marks, words = {"1. The fact": time.perf_counter() - start}, {}
    row = next(r for r in main.rows if r.group == "rewrite")
    assert _cards(page) == {"top-1 now": "United", "P(United States) now": format(row.p_old_before, ".3f"),
                            "P(Czech Republic) now": format(row.p_new_before, ".3g")}
    words["1. The fact"] = len(_main_text(page).split())
    screenshot(page, "story-1-fact")

    _next(page, "2. The edit")
    assert _cards(page) == {m: format(main.result.metrics[m], ".2f") for m in SCORES}
    # one line of help per card: hover the first card's help icon and read its tooltip
    page.locator('[data-testid="stMetric"]').first.locator('[data-testid="stTooltipIcon"]').hover()
    tip = page.locator('[data-testid="stTooltipContent"]')
    tip.wait_for()
    assert tip.inner_text().strip() == ("Does the edited model give the new answer for the edit prompt itself? Share "
                                        "of the answer's tokens predicted top-1, teacher forced (paper Eq. 1)")
    page.mouse.move(0, 0)
    marks["2. The edit"], words["2. The edit"] = time.perf_counter() - start, len(_main_text(page).split())

    _next(page, "3. What λ_max measures")
    assert _cards(page) == {"λ_max before (new target)": format(main.result.lambda_max_before, ".2e"),
                            "λ_max after (new target)": format(main.result.lambda_max_after, ".2e")}
    text = _main_text(page)
    assert "On this screen λ_max is the edit prompt's, against the new target" in text
    assert "own top answer" not in text
    assert (f"Measured here: ft-l, the same edit without the SSS term, takes it from "
            f"{plain.result.lambda_max_before:.2e} to {plain.result.lambda_max_after:.2e}") in text
    marks["3. What λ_max measures"], words["3. What λ_max measures"] = time.perf_counter() - start, len(text.split())

    _next(page, "4. Where the neighbours went")
    text = _main_text(page)
    assert "On this screen λ_max is each sentence's own, against its own top answer before the edit" in text
    assert "(new target)" not in text
    points = page.locator('[data-testid="stPlotlyChart"] .scatterlayer .point')
    points.first.wait_for()  # plotly draws after the script run ends
    assert points.count() == 2 * len(main.embeddings[main.knn.pooling].sentences)  # before and after, each sentence
    cells = grid_text(page.locator('[data-testid="stDataFrame"]').first)
    assert "Washington is a city in" in cells and "λ_max own before" in cells
    marks["4. Where the neighbours went"] = time.perf_counter() - start
    words["4. Where the neighbours went"] = len(text.split())
    screenshot(page, "story-4-neighbours")

    _next(page, "5. What SSS changed")
    alerts = [a.inner_text().strip() for a in page.locator('[data-testid="stAlert"]').all()]
    changed = [m for m in SCORES if loose_a.result.metrics[m] != loose_b.result.metrics[m]]
    words_changed = ", ".join(f"{m} {loose_a.result.metrics[m]:.2f} (A) → {loose_b.result.metrics[m]:.2f} (B)"
                              for m in changed)
    assert changed and any(a.startswith(f"The SSS term changed the edit: {words_changed}; ") for a in alerts)
    assert any(a.startswith("A and B score alike: the same top-1 prediction and the same score on all "
                            f"{len(plain.rows)} probes") for a in alerts)
    text = _main_text(page)
    marks["5. What SSS changed"], words["5. What SSS changed"] = time.perf_counter() - start, len(text.split())
    screenshot(page, "story-5-sss")
    assert page.get_by_role("button", name="Next:").count() == 0

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "story-timing.json").write_text(json.dumps(
        {"seconds_from_opening_to_step": {k: round(v, 2) for k, v in marks.items()}, "words_on_screen": words},
        indent=2))
    print("story timing:", json.dumps(marks), "words:", json.dumps(words))

    page.get_by_role("button", name="Open this pair in Compare").nth(1).click()
    page.get_by_role("heading", name="Compare two edits", exact=True).wait_for()
    wait_idle(page)
    assert_no_traceback(page)
    table = page.locator('[data-testid="stDataFrame"]').first.locator("table").first
    table.wait_for(state="attached")
    cells = [[c.text_content().strip() for c in r.locator("th, td").all()] for r in table.locator("tr").all()]
    rows = [dict(zip(cells[0], r)) for r in cells[1:]]
    assert [r["editor"] for r in rows] == ["ft-l", "ft-l+sss-loose-sum"]
    shown = [m for m in SCORES if m in cells[0]]  # the grid mirrors the columns in view (portability is off it)
    assert "generality" in shown and changed[0] in shown
    assert [float(r[m]) for r in rows for m in shown] == pytest.approx(
        [x.result.metrics[m] for x in (loose_a, loose_b) for m in shown], abs=5e-3)  # the grid rounds to 2 places

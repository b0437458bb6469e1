"""The Class story in a real browser at 1440x900, as a newcomer walks it: from the Edit page's link, "Run the
story", then "Next" through the five steps; each step's claim, cards, sentences and verdicts read exactly, and each
step fits one 1440x900 screen (its details folded in "More detail"). The step and the story's runs are in the URL:
the same link in a fresh session, and a refresh, bring back the same step with the same numbers; from "Open this
edit in the Edit view" the sidebar's "Class story" brings the step back. The seconds from opening the app to each
step, the words on each screen and each page's height are written to test-artifacts/story-timing.json (measured)."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlparse

import pytest

from playwright.sync_api import expect

from browser_support import ARTIFACTS, assert_no_traceback, screenshot, wait_idle
from story_support import story_edits

pytestmark = pytest.mark.e2e

SCORES = ("reliability", "generality", "locality", "portability")
SCREEN = {"width": 1440, "height": 900}


@pytest.fixture(scope="module")
def expected():
    return story_edits()


def _cards(page, n: int) -> dict[str, str]:
    """The step's metric cards (label -> value), once its n cards are drawn (they stream in after the text)."""
    page.locator('[data-testid="stMetric"]').nth(n - 1).wait_for()
    wait_idle(page)
    return {m.locator('[data-testid="stMetricLabel"]').inner_text().strip():
            m.locator('[data-testid="stMetricValue"]').inner_text().strip()
            for m in page.locator('[data-testid="stMetric"]').all()}


def _main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def _page_height(page) -> int:
    """How far down the page its content reaches, in px from the top of the page: the lowest bottom edge of the
    main block's elements, scrolled to the top (the block's own bottom padding left out)."""
    return page.evaluate("""() => {
        const main = document.querySelector('[data-testid="stMain"]');
        main.scrollTop = 0;
        const kids = document.querySelectorAll('[data-testid="stMainBlockContainer"] [data-testid="stElementContainer"]');
        const shown = [...kids].filter(k => k.offsetHeight > 0 && !k.closest('details:not([open])'));
        return Math.max(...shown.map(k => k.getBoundingClientRect().bottom));
    }""")


def _at_step(page, label: str) -> None:
    """Wait until the step radio shows ``label`` chosen and the script run is over (its stale copy gone)."""
    steps = page.locator(".st-key-story_step")
    expect(steps.get_by_role("radio", name=label, exact=True).first).to_be_checked()
    wait_idle(page)
    expect(steps).to_have_count(1)
    expect(steps.get_by_role("radio", name=label, exact=True)).to_be_checked()
    assert_no_traceback(page)


def _next(page, label: str) -> float:
    """Click "Next step" and wait for step ``label``; returns the button's top edge in px on the new step (the same
    on every step). It has no tooltip to cover the bar above it."""
    page.get_by_role("button", name="Next step").click()
    _at_step(page, label)
    expect(page.locator('[data-testid="stTooltipContent"]')).to_have_count(0)
    return _button_top(page, "Next step")


def _button_top(page, name: str) -> float:
    """The top edge of the step bar's button ``name``, in px from the top of the page."""
    page.evaluate("() => { document.querySelector('[data-testid=\"stMain\"]').scrollTop = 0; }")
    return page.get_by_role("button", name=name).bounding_box()["y"]


def _query(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def _step_4_sentences(t: str) -> str:
    """Step 4's two sentences (every number of the step) from the page's text, after any status line."""
    here = "Where the sentences went."
    return here + t.split(here)[1].split("\n")[0]  # the paragraph beside the bars


def _same_step_after_refresh_and_in_a_fresh_session(page, new_page, shown: str) -> None:
    """Step 4 is in the URL with the story's runs: a refresh, and the same link in a fresh session, show it again
    with the same sentences (the runs replayed from their records)."""
    query = _query(page)
    assert (query["story"], query["sstep"], query["run"]) == ("world-372", "4", "1") and query["srec"]
    page.reload()
    page.get_by_text("Where the sentences went.").wait_for()
    _at_step(page, "4. Where the sentences went")
    assert "moved 29–83% as far" in _step_4_sentences(shown)  # the whole paragraph, its numbers included
    assert _step_4_sentences(_main_text(page)) == _step_4_sentences(shown)
    other = new_page()
    other.set_viewport_size(SCREEN)
    other.goto(page.url)
    other.get_by_text("Where the sentences went.").wait_for()
    _at_step(other, "4. Where the sentences went")
    assert _step_4_sentences(_main_text(other)) == _step_4_sentences(shown)
    other.locator('[data-testid="stPlotlyChart"] .barlayer .point').first.wait_for()
    height = _page_height(other)  # opened from the link: no replay box above the step, it still fits
    assert "replayed" not in _main_text(other) and height <= SCREEN["height"], height


def _edit_step(page, main) -> str:
    """Step 2 read on screen: three score cards and a tooltip, each with what happened to its questions in one line;
    then, in "More detail", the probe table with every column in view and each question whole, where each top-1
    went and which answers were already wrong; returns the step's text (read with the detail folded)."""
    assert _cards(page, 3) == {"The edit question": "1 of 1", "Asked in other words": "0 of 2", "Other facts": "3 of 5"}
    text = _main_text(page)
    m = main.result.metrics
    for line in ("now gives Czech Republic",
                 "now give Czech Republic. It got none of them right before the edit either.",
                 "kept their answer. Lost it: “Washington is a city in”. Already wrong, and changed: the trick "
                 "question “Washington is the capital of Czech Republic. Rabat is the capital of”."):
        assert line in text
    assert "The paper's scores" not in text  # in the detail: a class read counts beside scores as a contradiction
    expect(page.locator(".st-key-story-probes-box table")).not_to_be_visible()  # folded: not on the main screen
    screenshot(page, "story-2-edit")
    page.locator('[data-testid="stMetric"]').first.locator('[data-testid="stTooltipIcon"]').hover()
    tip = page.locator('[data-testid="stTooltipContent"]')
    tip.wait_for()
    assert tip.inner_text().strip() == ("Does the edited model now give the new answer to the edit question itself? "
                                        f"The paper's reliability scores it from 0 to 1 (1 = all), with credit for "
                                        f"part of an answer: here "
                                        f"{m['reliability']:.2f}.")
    page.mouse.move(0, 0)
    detail = page.locator('[data-testid="stExpander"]').filter(has_text="Every test question")
    detail.locator("summary").click()
    grid = page.locator(".st-key-story-probes-box table").first
    expect(grid).to_be_visible()
    # the compact table style (one line a row, the question wrapped where long) is drawn with the table
    expect(page.locator(".st-key-story-probes-box td:nth-child(3) p").first).to_have_css("white-space", "nowrap")
    cells = [[c.text_content().strip() for c in r.locator("th, td").all()] for r in grid.locator("tr").all()]
    rows = {r[1]: dict(zip(cells[0], r)) for r in cells[1:]}
    distract = rows["Washington is the capital of Czech Republic. Rabat is the capital of"]  # the whole question
    assert cells[0] == ["kind", "question", "world's answer", "knew it", "first word before → after",
                        "what happened", "scored against", "score"]  # every column in view: the table fits the page
    box = grid.bounding_box()
    assert box["x"] + box["width"] <= SCREEN["width"], box
    assert (distract["world's answer"], distract["first word before → after"], distract["what happened"],
            distract["knew it"], distract["scored against"], distract["score"]) == (
        "Morocco", "United → Czech", "changed, but was already wrong", "no", "its answer before", "0.00")
    assert rows["The nation governed from Washington is"]["first word before → after"] == "the → a"
    assert rows["Rabat is the capital of"]["first word before → after"] == "M(orocco) → M(orocco)"
    assert rows["The capital of Czech Republic is"]["first word before → after"] == "P… → P…"
    assert rows["Washington is a city in"]["what happened"] == "damaged: lost its answer"
    detail.locator("summary").click()  # folded again: the step's height is measured as the class sees it
    expect(grid).not_to_be_visible()
    return text


def test_class_story_walked_from_the_edit_page(server, new_page, expected):
    main, (plain, with_sss), (loose_a, loose_b) = expected["main"], *expected["pairs"]
    page = new_page()
    page.set_viewport_size(SCREEN)
    start = time.perf_counter()
    page.goto(server.url + "/")
    link = page.get_by_role("link", name="Teaching? The Class story tells the paper's story in five steps")
    link.click()
    page.get_by_role("heading", name="Class story", exact=True).wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Run the story").click()
    page.get_by_text("The fact. Asked to complete").wait_for()
    _at_step(page, "1. The fact")
    marks, words, heights = {"1. The fact": time.perf_counter() - start}, {}, {}
    assert _cards(page, 2) == {"United States now": "99%", "Czech Republic now": "about 1 in 700,000"}
    text = _main_text(page)
    assert "The paper's claim. Editing a fact (nudging a model's weights until it gives a new answer) can spoil" in text
    assert text.index("The paper's claim.") < text.index("The fact. Asked to complete")
    assert "Done:" not in text  # the run's status box is gone: the bar sits where it does on every step
    expect(page.locator('[data-testid="stExpander"] details').first).not_to_have_attribute("open", "")
    tops = [_button_top(page, "Next step")]
    words["1. The fact"], heights["1. The fact"] = len(text.split()), _page_height(page)
    screenshot(page, "story-1-fact")

    tops.append(_next(page, "2. The edit"))
    text = _edit_step(page, main)
    marks["2. The edit"], words["2. The edit"] = time.perf_counter() - start, len(text.split())
    heights["2. The edit"] = _page_height(page)

    tops.append(_next(page, "3. What λ_max measures"))
    assert _cards(page, 2) == {"λ_max with the SSS term": "fell about 12,000-fold",
                               "λ_max without it": "fell about 11,000-fold"}
    assert round(main.result.lambda_max_before / main.result.lambda_max_after, -3) == 12000
    assert round(plain.result.lambda_max_before / plain.result.lambda_max_after, -3) == 11000
    text = _main_text(page)
    assert ("What λ_max measures: how quiet a spot is (step 1). Nudge the sentence's inner numbers a little: how "
            "much does the model's error on the answer (how unlikely it finds it) change? Small = quiet, "
            "sparse. Here: the edit question's, for the new answer Czech Republic, before and after the edit. It does "
            "not measure damage to other facts.") in text
    marks["3. What λ_max measures"], words["3. What λ_max measures"] = time.perf_counter() - start, len(text.split())
    heights["3. What λ_max measures"] = _page_height(page)

    tops.append(_next(page, "4. Where the sentences went"))
    text = _main_text(page)
    assert "each bar is how far the edit (with the SSS term) moved it. The edit question moved most." in text
    assert ("The 5 other facts moved 29–83% as far as the edit question: 3 kept their answer, 1 lost it, 1 that was "
            "already wrong changed (each bar says which).") in text
    assert "Spearman" not in text
    bars = page.locator('[data-testid="stPlotlyChart"]').first.locator(".barlayer .point")
    bars.first.wait_for()  # plotly draws after the script run ends
    probes = [s for s in main.sparsity if s.group != "background"]
    assert bars.count() == len(probes) - 1 == 8  # one bar per question of step 2 (not the backwards one)
    ticks = page.locator('[data-testid="stPlotlyChart"]').first.locator(".ytick text")
    notes = [n.text_content() for n in ticks.locator("tspan[style*='italic']").all()]  # each under its sentence
    assert sorted(notes) == sorted([
        "edit question: now the new answer", "other fact, same subject: lost its answer",
        "other fact, trick question: was wrong, changed", "other fact: kept its answer", "other fact: kept its answer",
        "other fact with the new answer: kept its answer",
        "other words: not the new answer", "other words: not the new answer"])
    marks["4. Where the sentences went"] = time.perf_counter() - start
    words["4. Where the sentences went"], heights["4. Where the sentences went"] = len(text.split()), _page_height(page)
    screenshot(page, "story-4-neighbours")
    _same_step_after_refresh_and_in_a_fresh_session(page, new_page, text)

    page.get_by_role("button", name="Next step").click()
    _at_step(page, "5. Did SSS help?")
    tops.append(_button_top(page, "Back to step 1"))  # in the Next button's place
    assert len(set(tops)) == 1, tops
    alerts = [a.inner_text().strip() for a in page.locator('[data-testid="stAlert"]').all()]
    m1a, m1b = loose_a.result.metrics, loose_b.result.metrics
    assert alerts == [
        "The SSS term changed no answer or test score (other facts kept: 3 of 5 in A and B): no evidence either way.",
        "Other facts kept: 1 of 5 in A and B (3 of 5 in steps 2-4), so no less damage, although the claim predicts "
        "less. "
        f"Asked in other words: 1 of 2 in A and B, but the paper's partial-credit score fell (A "
        f"{m1a['generality']:.2f}, B {m1b['generality']:.2f}). λ_max for the new answer rose about 12% from A to B "
        "(less sparse: the opposite of the SSS term's aim)."]
    text = _main_text(page)
    assert ("So on this fact the SSS term did not reduce the damage. One fact is one example; the claim is about "
            "many edits.") in text
    for label in ("About: what SSS did over many edits", "Hypothesis: test the claim yourself",
                  "Compare: any two edits side by side"):
        assert page.locator('[data-testid="stMain"]').get_by_role("link", name=label).count() == 1
    marks["5. Did SSS help?"], words["5. Did SSS help?"] = time.perf_counter() - start, len(text.split())
    heights["5. Did SSS help?"] = _page_height(page)
    screenshot(page, "story-5-sss")
    assert page.get_by_role("button", name="Next step").count() == 0

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "story-timing.json").write_text(json.dumps(
        {"seconds_from_opening_to_step": {k: round(v, 2) for k, v in marks.items()}, "words_on_screen": words,
         "page_height_px": heights}, indent=2))
    print("story timing:", json.dumps(marks), "words:", json.dumps(words), "heights:", json.dumps(heights))
    # one screen each: nothing to scroll at 1440x900 with the details folded
    assert {k: h <= SCREEN["height"] for k, h in heights.items()} == {k: True for k in heights}, heights

    _compare_and_back(page, loose_a, loose_b, text)


def _compare_and_back(page, loose_a, loose_b, text: str) -> None:
    """"Open this pair in Compare" (the looser pair's detail) shows the pair's numbers there; the sidebar's Class
    story then brings back step 5 with the same ``text``."""
    loose = page.locator('[data-testid="stExpander"]').filter(has_text="A: ft-l; settings changed from")  # pair 2
    loose.locator("summary").click()
    wait_idle(page)
    # the detail's score grid draws after the box opens and pushes the button down: click once it is drawn (a
    # click meanwhile could land where the button was)
    loose.locator('[data-testid="stDataFrame"] table').first.wait_for(state="attached")
    opener = loose.get_by_role("button", name="Open this pair in Compare")
    opener.scroll_into_view_if_needed()
    expect(opener).to_be_visible()
    opener.click()
    page.get_by_role("heading", name="Compare two edits", exact=True).wait_for()
    wait_idle(page)
    assert_no_traceback(page)
    table = page.locator('[data-testid="stDataFrame"]').first.locator("table").first
    table.wait_for(state="attached")
    cells = [[c.text_content().strip() for c in r.locator("th, td").all()] for r in table.locator("tr").all()]
    rows = [dict(zip(cells[0], r)) for r in cells[1:]]
    assert [r["editor"] for r in rows] == ["ft-l", "ft-l+sss-loose-sum"]
    shown = [m for m in SCORES if m in cells[0]]  # the grid mirrors the columns in view (portability is off it)
    assert "generality" in shown
    assert [float(r[m]) for r in rows for m in shown] == pytest.approx(
        [x.result.metrics[m] for x in (loose_a, loose_b) for m in shown], abs=5e-3)  # the grid rounds to 2 places
    # and back: the sidebar's Class story shows the step it was left on, with the same numbers
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Class story").click()
    page.get_by_text("So on this fact the SSS term").wait_for()
    _at_step(page, "5. Did SSS help?")
    assert _main_text(page) == text
    page.get_by_role("button", name="Back to step 1").click()  # the finish: the class starts again
    _at_step(page, "1. The fact")
    assert "The paper's claim. Editing a fact (nudging a model's weights until it gives a new answer)" in _main_text(page)

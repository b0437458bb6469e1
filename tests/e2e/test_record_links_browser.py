"""Links replay their runs exactly, in a real browser: for each view, a link whose run record has
non-default settings and typed probes shows the numbers that ``analysis.run_record`` of that record gives."""

from __future__ import annotations

import math
import urllib.parse

import pytest

from browser_support import assert_no_traceback, wait_idle
from sss_core.analysis import run_record, sweep_c
from sss_core.record import AnalysisOptions, make_record, pack_records
from sss_core.types import EditCase, EditRequest, Probe

pytestmark = pytest.mark.e2e

FRANCE = EditRequest("The capital of France is", "Rome", subject="France")
SETTINGS = {"steps": 3, "layer": 2}
SETTINGS_TEXT = "settings changed from the defaults: layer = 2, steps = 3"


def _case() -> EditCase:
    return EditCase(FRANCE, (Probe("France's capital city is", "Rome", "paraphrase"),
                             Probe("The capital of Spain is", "Madrid", "neighbour"),
                             Probe("The capital of Italy is", "Rome", "neighbour")))


def _open(page, server, view: str, query: dict) -> None:
    page.goto(f"{server.url}/{view}?{urllib.parse.urlencode(query)}")
    page.wait_for_timeout(500)
    wait_idle(page)
    assert_no_traceback(page)


def _cards(page) -> dict[str, str]:
    """The metric cards on screen, {label: value}, once a replayed run's cards are there (a link's replay may
    start after the first idle marker on a busy machine)."""
    page.locator('[data-testid="stMetricLabel"]', has_text="reliability").first.wait_for(timeout=120_000)
    wait_idle(page)
    return {m.locator('[data-testid="stMetricLabel"]').inner_text().strip():
            m.locator('[data-testid="stMetricValue"]').inner_text().strip()
            for m in page.locator('[data-testid="stMetric"]').all()}


def _two(x: float) -> str:
    """A metric as a card shows it."""
    return "n/a" if math.isnan(x) else format(x, ".2f")


def _rows(page) -> list[dict[str, str]]:
    """The first st.dataframe of the page as rows {column: cell text}, from the grid's accessible table."""
    table = page.locator('[data-testid="stDataFrame"]').first.locator("table").first
    table.wait_for(state="attached")
    cells = [[c.text_content().strip() for c in row.locator("th, td").all()] for row in table.locator("tr").all()]
    header, body = cells[0], cells[1:]
    return [dict(zip(header, row)) for row in body]


def _same(cell: str, value: float) -> bool:
    """A grid cell holds ``value`` (to float precision: two processes may sum in another order)."""
    return math.isclose(float(cell), value, rel_tol=1e-4, abs_tol=1e-12)


@pytest.fixture(scope="module")
def record(default_lm):
    return make_record("ft-l", SETTINGS, _case(), lm=default_lm, probes_from="typed")


def test_edit_and_projection_links_replay_the_recorded_run(server, new_page, default_lm, record):
    expected = run_record(default_lm, record).result.metrics
    page = new_page()
    _open(page, server, "", {"rec": record.to_link(), "run": "1"})
    cards = _cards(page)
    for name in ("reliability", "generality", "locality"):
        assert cards[name] == _two(expected[name]), (name, cards)
    caption = page.get_by_text(SETTINGS_TEXT, exact=False).first.inner_text()
    assert caption.startswith("ft-l on default-model: 'The capital of France is' → Rome") and caption.endswith(
        SETTINGS_TEXT), caption
    neighbours = page.get_by_label("Neighbour prompts, one per line (should keep their answers)", exact=False)
    assert neighbours.input_value() == "The capital of Spain is\nThe capital of Italy is"
    page = new_page()
    _open(page, server, "projection", {"rec": record.to_link(), "run": "1"})
    assert page.get_by_text(SETTINGS_TEXT, exact=False).first.inner_text().endswith(SETTINGS_TEXT)


def test_compare_link_replays_both_recorded_runs(server, new_page, default_lm, record):
    other = make_record("ft-l+sss", SETTINGS, _case(), lm=default_lm, probes_from="typed")
    a, b = run_record(default_lm, record), run_record(default_lm, other)
    page = new_page()
    _open(page, server, "compare", {"rec": record.to_link(), "recb": other.to_link(), "run": "1"})
    rows = _rows(page)
    assert [r["editor"] for r in rows] == ["ft-l", "ft-l+sss"]
    for row, run in zip(rows, (a, b)):
        for name in ("reliability", "generality", "locality"):
            assert _same(row[name], run.result.metrics[name]), (name, row)
        assert _same(row["λ_max after (new target)"], run.result.lambda_max_after), row
    assert page.get_by_text(SETTINGS_TEXT, exact=False).count() == 2  # both runs' captions


def test_c_sweep_link_replays_the_recorded_case_and_settings(server, new_page, default_lm):
    base = make_record("ft-l+sss", SETTINGS, _case(), lm=default_lm, probes_from="typed",
                       analysis=AnalysisOptions(background=0, embeddings=False))
    points = sweep_c(default_lm, "ft-l+sss", base.overrides(), base.case, [0.0, 0.5])
    page = new_page()
    _open(page, server, "sweep", {"rec": base.to_link(), "sweep": "ft-l+sss", "cs": "0,0.5", "run": "1"})
    rows = _rows(page)
    assert [float(r["C"]) for r in rows] == [0.0, 0.5]
    for row, p in zip(rows, points):
        assert _same(row["locality"], p.metrics["locality"]) and _same(row["λ_max after (new target)"],
                                                                      p.lambda_max_after), row


def test_sequential_link_replays_typed_steps_with_their_settings(server, new_page, default_lm):
    rome = make_record("ft-l", SETTINGS, _case(), lm=default_lm)
    berlin = make_record("ft-l", SETTINGS, EditCase(EditRequest("The capital of France is", "Berlin",
                                                                subject="France")), lm=default_lm)
    page = new_page()
    _open(page, server, "sequential", {"seqrec": pack_records([rome, berlin])})
    rows = _rows(page)
    assert [r["target_new"] for r in rows] == ["Rome", "Berlin"]
    assert page.get_by_text("After edit 2: retention over the 1 edit still meant to hold", exact=False).count() == 1


def test_hypothesis_link_runs_with_the_linked_settings_and_says_them(server, new_page):
    page = new_page()
    _open(page, server, "hypothesis", {"hyp": "ft-l,ft-l+sss", "hn": "4", "hcfg": '{"ft-l":{"steps":3}}', "run": "1"})
    text = page.locator('[data-testid="stMarkdownContainer"]', has_text="Settings of each editor").last.inner_text()
    assert text == "Settings of each editor in these edits: ft-l: steps = 3; ft-l+sss: C = 0.9 (loss weight)"
    rows = _rows(page)  # the grid renders the columns in view (the settings column is checked by the AppTest)
    assert {r["editor"] for r in rows} == {"ft-l", "ft-l+sss"} and "p (BH)" in rows[0]

"""The Results view in a real browser reads the chosen folder: its per-case rows and its report's table.

A wait on "Per-case results" alone also matched the page's caption ("per-case results (JSON lines)"),
so a view that never read the folder passed; here the locators are exact and the rows are checked.
"""

from __future__ import annotations

import json

import pytest


pytestmark = pytest.mark.e2e
IDLE = '[data-test-script-state="notRunning"]'


def test_results_view_shows_the_folders_rows_and_report(server, new_page, tmp_path):
    rows = [{"editor": e, "case_id": f"world-{i}", "metrics": {"reliability": r, "locality": loc}}
            for i, (e, r, loc) in enumerate([("ft-l", 1.0, 0.81), ("ft-l+sss", 1.0, 0.93),
                                             ("ft-l", 0.9, 0.78), ("ft-l+sss", 1.0, 0.95)])]
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "report.md").write_text("# Bench report (example)\n\n| editor | reliability | locality |\n"
                                        "|---|---|---|\n| ft-l | 0.95 | 0.80 |\n| ft-l+sss | 1.00 | 0.94 |\n")
    page = new_page()
    page.goto(server.url + "/results")
    page.get_by_role("heading", level=1, name="Results of a bench run", exact=True).wait_for()
    page.wait_for_selector(IDLE, state="attached")
    page.get_by_label("Report folder", exact=True).fill(str(tmp_path))
    page.get_by_label("Report folder", exact=True).press("Enter")
    page.get_by_role("heading", name="Per-case results: results.jsonl (4 rows)", exact=True).wait_for()
    page.wait_for_selector(IDLE, state="attached")
    report = page.locator('[data-testid="stMarkdownContainer"] table').first
    assert report.locator("thead th").all_inner_texts() == ["editor", "reliability", "locality"]
    assert report.locator("tbody tr").all_inner_texts() == ["ft-l\t0.95\t0.80", "ft-l+sss\t1.00\t0.94"]
    assert page.locator('[data-testid="stException"]').count() == 0

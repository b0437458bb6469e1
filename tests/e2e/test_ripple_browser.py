"""The Ripple map in a real browser: FT-L and FT-L+SSS on the default request; each run's damaged facts, as
the page lists them, are exactly those world_locality finds for the same edit made here in the test process."""

from __future__ import annotations

import re

import pytest
import torch

from browser_support import assert_no_traceback, screenshot, wait_idle

pytestmark = pytest.mark.e2e
CAPTION = re.compile(r"^(\S+)(?:, C = ([0-9.]+))? on .*?: ['\"](.+)['\"] (?:->|→) (.+) \(run [0-9a-f]{12},")


def _listed(page, key: str) -> list[tuple[str, str, str]]:
    """(fact, top answer before, top answer after) of each row of a run's damaged-facts table, as drawn."""
    rows = page.locator(f".st-key-{key} table tbody tr")
    out = []
    for i in range(rows.count()):
        cells = [c.strip() for c in rows.nth(i).locator("td").all_inner_texts()]
        out.append((cells[0], cells[2], cells[3]))
    return out


def _world_locality(editor: str, c: str | None, prompt: str, target: str):
    """world_locality of the edit ``editor`` makes of (prompt -> target), made here as the app makes it
    (the shipped model, the editor's defaults, torch seed 0, one thread)."""
    from sss_core.editors import EDITORS, make_editor
    from sss_core.evaluation.presets import default_world, world_fact_for
    from sss_core.evaluation.world_locality import world_locality
    from sss_core.models import DEFAULT_MODEL, load_model
    from sss_core.types import EditRequest

    torch.set_num_threads(1)
    lm = load_model(DEFAULT_MODEL, device="cpu")
    fact = world_fact_for(prompt)
    request = EditRequest(prompt, target, fact.subject if fact else None)
    overrides = {EDITORS[editor].c_field: float(c)} if c is not None else {}
    torch.manual_seed(0)
    edit = make_editor(editor, **overrides).edit(lm.model, lm.tok, [request])
    return world_locality(lm.model, lm.tok, default_world().facts, edit, request,
                          relation=fact.relation if fact else None)


def test_ripple_map_lists_the_damaged_facts_exactly(server, new_page):
    page = new_page()
    page.goto(server.url + "/ripple")
    page.get_by_role("heading", level=1, name="Ripple map", exact=True).wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Run both", exact=True).click()
    page.locator(".st-key-rip-b-damaged").wait_for(timeout=300_000)
    wait_idle(page, timeout=300_000)
    assert_no_traceback(page)
    captions = [page.locator('[data-testid="stMarkdownContainer"]', has_text="(run ").nth(i).inner_text()
                for i in range(2)]
    damaged = []
    for key, caption in zip(("rip-a-damaged", "rip-b-damaged"), captions):
        shown = CAPTION.search(caption)
        assert shown is not None, caption
        editor, c, prompt, target = shown.groups()
        wl = _world_locality(editor, c, prompt, target.strip())
        expected = [(f"{f.prompt} {f.object}", f.before.strip(), f.after.strip()) for f in wl.damaged]
        listed = _listed(page, key)
        assert listed == expected, (editor, listed[:5], expected[:5])
        heading = page.locator(f".st-key-{key}").get_by_text(re.compile(r"^The \d+ damaged facts")).inner_text()
        assert heading.startswith(f"The {wl.n_damaged} damaged facts")
        damaged.append({f.prompt for f in wl.damaged})
    assert CAPTION.search(captions[0]).group(1) == "ft-l" and CAPTION.search(captions[1]).group(1) == "ft-l+sss"
    a, b = damaged
    paired = page.locator('[data-testid="stMarkdownContainer"] p', has_text="Paired, B − A.").inner_text()
    assert paired.startswith(f"Paired, B − A. Damaged by A only: {len(a - b)}; by B only: {len(b - a)}; "
                             f"by both: {len(a & b)}"), paired
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 3  # A, B, the paired difference
    screenshot(page, "ripple")

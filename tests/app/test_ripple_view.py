"""AppTest of the Ripple map (issue 26.2): two edits of one request, each fact of the world read before and
after; the damaged facts listed per run are world_locality's for the same edit, recomputed here; the paired
counts are those of the two runs; the map has one point per world fact and the edit prompt's star."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from apptest_support import _no_umap_warmup, _restore_torch_threads, app, assert_ok  # noqa: F401 (fixtures)

def _ripple(app, a: str, b: str):
    app.switch_page("app/views/ripple.py").run()
    app.selectbox(key="rip_editor_a").set_value(a).run()
    app.selectbox(key="rip_editor_b").set_value(b).run()
    app.button(key="run_ripple").click().run()
    assert_ok(app)
    return app.session_state["_ripple_runs"]


def _values(array) -> np.ndarray:
    """A plotly JSON array: a list, or binary-encoded ({"bdata": base64, "dtype": ...})."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array)


def _expected_damaged(run) -> list[str]:
    """world_locality of the run's edit, made again here from its record (editor, settings, seed)."""
    from sss_core.editors import make_editor
    from sss_core.evaluation.presets import default_world
    from sss_core.evaluation.world_locality import world_locality
    from sss_core.models import DEFAULT_MODEL, load_model

    lm = load_model(DEFAULT_MODEL, device="cpu")
    record = run.record
    torch.manual_seed(record.seed)
    edit = make_editor(record.editor, **record.settings).edit(lm.model, lm.tok, [record.case.request])
    wl = world_locality(lm.model, lm.tok, default_world().facts, edit, record.case.request,
                        relation=record.case.relation)
    return [f"{f.prompt} {f.object}" for f in wl.damaged]


def test_ripple_lists_each_runs_damaged_facts_and_the_paired_counts(app):
    from sss_core.evaluation.presets import default_world

    a, b = _ripple(app, "ft-l", "ft-l+sss")
    assert a.world is not None and b.world is not None
    tables = [t.value for t in app.table]
    assert len(tables) == 2
    for table, run in zip(tables, (a, b)):
        assert list(table["fact"]) == [f"{f.prompt} {f.object}" for f in run.world.damaged]
        assert list(table["top answer after"]) == [f.after for f in run.world.damaged]
    assert list(tables[0]["fact"]) == _expected_damaged(a)
    assert len(tables[0]) > 0  # the default FT-L edit damages facts on the shipped model
    da = {f.prompt for f in a.world.damaged}
    db = {f.prompt for f in b.world.damaged}
    line = next(m.value for m in app.markdown if m.value.startswith("**Paired, B − A.**"))
    assert (f"A only: **{len(da - db)}**; by B only: **{len(db - da)}**; by both: **{len(da & db)}**") in line
    charts = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    maps = [c for c in charts if any(t.get("name") == "edit prompt" for t in c["data"])]
    assert len(maps) == 3  # A, B and the paired difference
    n_facts = len(default_world().facts)
    for chart in maps[:2]:
        facts = next(t for t in chart["data"] if t["name"] == "world facts")
        edited = next((t for t in chart["data"] if t["name"] == "the edited fact"), {"x": []})
        assert len(_values(facts["x"])) + len(_values(edited["x"])) == n_facts
    ringed = next(t for t in maps[0]["data"] if t["name"] == "top answer changed")
    assert len(_values(ringed["x"])) == a.world.n_damaged
    bins = next(d.value for d in app.dataframe if "B − A" in d.value.columns)
    assert set(bins["measure"]) == {"top answer changed (share)", "drop in P(old answer) (mean)"}
    share = bins[bins["measure"] == "top answer changed (share)"]
    # the bins' differences, weighted by their facts, add up to the whole world's difference in damaged facts
    assert float((share["B − A"] * share["facts"]).sum()) == pytest.approx(len(db) - len(da), abs=1e-9)
    assert int(share["facts"].sum()) == len(a.world.others)


def test_a_link_to_the_ripple_map_replays_both_runs(app):
    """The page's URL carries both run records and the map's options; a session opened from it re-runs
    exactly those two edits and lists the same damaged facts."""
    from apptest_support import open_link

    runs = _ripple(app, "ft-l", "ft-l+sss")
    query = {k: app.query_params[k] for k in app.query_params}
    assert query["run"] == "1" and query["ra"] == "ft-l" and query["rb"] == "ft-l+sss"
    assert {"rec", "recb", "rpool", "rdist", "rproj"} <= set(query)
    other = open_link(query, "app/views/ripple.py")
    assert_ok(other)
    again = other.session_state["_ripple_runs"]
    for before, after in zip(runs, again):
        assert after.record.digest() == before.record.digest()
        assert [f.prompt for f in after.world.damaged] == [f.prompt for f in before.world.damaged]
        assert after.result.metrics == before.result.metrics
    bad = open_link({**query, "rdist": "manhattan"}, "app/views/ripple.py")
    assert any("'manhattan' is not a distance" in m.value for m in [*bad.warning, *bad.markdown, *bad.error])

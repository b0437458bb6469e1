"""What the app's pages say, read from the session (AppTest): each check reads the exact content of a
table cell, a caption, a figure's axis or a message, on real edits of the shipped model."""

from __future__ import annotations

from apptest_support import _no_umap_warmup, _restore_torch_threads, app, assert_ok  # noqa: F401 (fixtures)


def test_probe_table_ticks_only_a_flip_to_the_new_target(app):
    """The default preset's paraphrase "the -> a" (P(new) near 0, score 0) is "off target", not ✓."""
    app.button(key="run_edit").click().run()
    assert_ok(app)
    table = app.dataframe[0].value
    new = app.session_state["_run"].case.request.target_new
    rows = {}
    for _, r in table.iterrows():
        before, after = (t.strip() for t in r["top-1 before → after"].split(" → "))
        assert r["answer old → new"].endswith(" → " + new) or r["group"] == "reversed relation"
        rows.setdefault(r["top-1"], []).append((r["group"], before, after, r["P(new) after"], r["score"]))
    # every tick is a flip whose top-1 after starts the new target
    assert rows["FLIPPED ✓"] and all(new.startswith(after) and before != after for _, before, after, _, _ in
                                     rows["FLIPPED ✓"])
    off = rows["FLIPPED off target"]
    assert [g for g, *_ in off] == ["paraphrase"]
    group, before, after, p_new, score = off[0]
    assert (before, after) == ("the", "a") and p_new < 1e-5 and score == 0.0
    assert all(g in ("distract-neighbour", "unrelated attribute") for g, *_ in rows["FLIPPED ✗ damage"])
    assert any("off target: such a probe flipped to another token" in c.value for c in app.caption)

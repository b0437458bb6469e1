"""The Class story (app/views/story.py) on the shipped model: each step shows the numbers the core gives for the
same edits, one lambda_max definition per screen, one line of help on every metric, the two pairs' verdicts as
measured, and "Open in the Edit view" / "Open in Compare" replay exactly the story's runs there."""

from __future__ import annotations

import pytest

from apptest_support import APP, _no_umap_warmup, _restore_torch_threads, assert_ok  # noqa: F401
from app.panels.edit import LAMBDA_NEW_HELP, METRIC_HELP
from app.panels.story import OWN_LAMBDA_HELP, STEPS
from app.same_edits import FTL_REASON
from story_support import story_edits

STORY = "app/views/story.py"


@pytest.fixture(scope="module")
def expected():
    return story_edits()


@pytest.fixture
def story():
    """A fresh session on the Class story, its edits run."""
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.switch_page(STORY)
    at.run()
    assert_ok(at)
    assert [i.value for i in at.info] == [
        "Press 'Run the story': it edits the fact with ft-l+sss, ft-l, ft-l (norm_constraint = 0.05), "
        "ft-l+sss-loose-sum (each on the unedited model) and then tells what happened, step by step."]
    at.button(key="story_run").click().run()
    assert_ok(at)
    return at


def _step(at, n: int):
    at.radio(key="story_step").set_value(STEPS[n]).run()
    assert_ok(at)
    return at


def _screen_text(at) -> str:
    """Every text of the screen a reader sees: markdown, captions, metric labels and help, alerts, table columns."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [f"{m.label} {m.help or ''}" for m in at.metric]
    parts += [a.value for kind in (at.info, at.success, at.warning) for a in kind]
    parts += [" ".join(map(str, d.value.columns)) for d in at.dataframe]
    return "\n".join(parts)


def test_the_edit_page_links_to_the_class_story():
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.run()
    links = [(p.proto.label, p.proto.page) for p in at.get("page_link")]
    assert ("Teaching? The Class story tells the paper's story in five steps", "story") in links


def test_steps_in_order_and_next_walks_through_them(story):
    assert story.radio(key="story_step").options == list(STEPS)
    seen = []
    for n in range(len(STEPS)):
        seen.append(story.subheader[0].value)
        if n < len(STEPS) - 1:
            story.button(key="story_next").click().run()
            assert_ok(story)
    assert seen == list(STEPS)
    assert not [b for b in story.button if b.key == "story_next"]  # the last step has no next


def test_the_fact_and_the_edit_show_the_cores_numbers(story, expected):
    main = expected["main"]
    row = next(r for r in main.rows if r.group == "rewrite")
    cards = {m.label: (m.value, m.help) for m in story.metric}
    assert cards == {
        "top-1 now": (row.top1_before.strip(), "The unedited model's most likely next token"),
        "P(United States) now": (format(row.p_old_before, ".3f"),
                                 "P(·) is the probability of the whole answer given the prompt (teacher forced)"),
        "P(Czech Republic) now": (format(row.p_new_before, ".3g"),
                                  "The new target's probability before the edit: what the edit has to raise")}
    fact = ("The shipped model is asked to complete *“Washington is the capital of”*. In its world the answer is "
            "**United States**; its most likely next token now is **“United”**.")
    assert fact in [m.value for m in story.markdown]
    _step(story, 1)
    cards = {m.label: (m.value, m.help) for m in story.metric}
    assert cards == {m: (format(main.result.metrics[m], ".2f"), METRIC_HELP[m])
                     for m in ("reliability", "generality", "locality", "portability")}
    probes = story.dataframe[0].value
    assert list(probes["prompt"]) == [r.prompt for r in main.rows]
    assert list(probes["P(new) after"]) == pytest.approx([r.p_new_after for r in main.rows], rel=1e-6)


def test_lambda_step_shows_only_the_new_target_measure(story, expected):
    main, plain = expected["main"], expected["pairs"][0][0]
    _step(story, 2)
    assert {m.label: (m.value, m.help) for m in story.metric} == {
        "λ_max before (new target)": (format(main.result.lambda_max_before, ".2e"), LAMBDA_NEW_HELP),
        "λ_max after (new target)": (format(main.result.lambda_max_after, ".2e"), LAMBDA_NEW_HELP)}
    text = _screen_text(story)
    assert "**On this screen λ_max is the edit prompt's, against the new target**" in text
    assert "own top answer" not in text and "own answer" not in text
    assert (f"Measured here: ft-l, the same edit without the SSS term, takes it from "
            f"{main.result.lambda_max_before:.2e} to {plain.result.lambda_max_after:.2e}; ft-l+sss from "
            f"{main.result.lambda_max_before:.2e} to {main.result.lambda_max_after:.2e}.") in text
    assert plain.result.lambda_max_after < main.result.lambda_max_before / 100  # the drop needs no SSS term


def test_neighbours_step_shows_only_the_own_answer_measure(story, expected):
    main = expected["main"]
    _step(story, 3)
    text = _screen_text(story)
    assert "**On this screen λ_max is each sentence's own, against its own top answer before the edit**" in text
    assert "new target)" not in text and not story.metric
    table = story.dataframe[0].value
    assert list(table.columns) == ["group", "sentence", "answer before", "answer after", "moved ‖Δh‖",
                                   "λ_max own before", "λ_max own after"]
    own = {s.sentence: s for s in main.sparsity if s.group != "background"}
    assert sorted(table["sentence"]) == sorted(own)
    for _, r in table.iterrows():
        s = own[r["sentence"]]
        assert (r["answer before"], r["answer after"]) == (s.answer.strip(), s.answer_after.strip())
        assert r["λ_max own before"] == pytest.approx(s.lambda_max_before, rel=1e-6)
        assert r["λ_max own after"] == pytest.approx(s.lambda_max_after, rel=1e-6)
    assert list(table["moved ‖Δh‖"]) == sorted(table["moved ‖Δh‖"], reverse=True)
    damaged = [r for r in main.rows if r.wanted_flip is False and r.flipped]
    alone = [r for r in main.rows if r.wanted_flip is False]
    assert any(m.value.startswith(f"{len(damaged)} of the {len(alone)} probes the edit should leave alone changed "
                                  "their top answer") for m in story.markdown)
    assert OWN_LAMBDA_HELP.startswith("λ_max (paper Eq. 9) of the sentence against its own top answer")


def test_sss_step_says_what_each_pair_measured(story, expected):
    (a0, b0), (a1, b1) = expected["pairs"]
    _step(story, 4)
    # default settings: the same top-1 and scores on every probe (measured on the shipped model)
    assert all(a0.result.metrics[m] == b0.result.metrics[m] for m in ("reliability", "generality", "locality",
                                                                       "portability"))
    alike = [i.value for i in story.info] + [s.value for s in story.success]
    assert len(alike) == 1
    assert alike[0].startswith(f"A and B score alike: the same top-1 prediction and the same score on all "
                               f"{len(a0.rows)} probes") or alike[0].startswith("A and B made the same edit")
    assert [e.label for e in story.expander] == ["Why the SSS term changes nothing here (measured)"]
    assert story.expander[0].markdown[0].value == FTL_REASON  # only under the pair where nothing moved
    # the looser box: the SSS term changes a score, whatever its sign, and the page says which and how
    changed = [m for m in ("reliability", "generality", "locality", "portability")
               if a1.result.metrics[m] != b1.result.metrics[m]]
    assert changed, "the loose preset no longer changes a score on the default fact: the story's pair 2 is stale"
    words = ", ".join(f"{m} {a1.result.metrics[m]:.2f} (A) → {b1.result.metrics[m]:.2f} (B)" for m in changed)
    warnings = [w.value for w in story.warning]
    assert len(warnings) == 1 and warnings[0].startswith(f"The SSS term changed the edit: {words}; the top-1 "
                                                         f"prediction differs on ")
    tables = [d.value for d in story.dataframe]
    assert [list(t["run"]) for t in tables] == [["A", "B", "B − A"]] * 2
    captions = [c.value for c in story.caption]
    assert "A: ft-l. B: ft-l+sss, C = 0.9: FT-L with the SSS loss term." in captions
    assert any(c.startswith("A: ft-l; settings changed from the defaults: norm_constraint = 0.05. B: "
                            "ft-l+sss-loose-sum, C = 0.9: ") for c in captions)
    for t, (a, b) in zip(tables, expected["pairs"]):
        for m in ("reliability", "generality", "locality", "portability"):
            assert list(t[m]) == pytest.approx([a.result.metrics[m], b.result.metrics[m],
                                                b.result.metrics[m] - a.result.metrics[m]])
        assert (f"λ_max after (new target): A {a.result.lambda_max_after:.2e}, B {b.result.lambda_max_after:.2e} "
                f"({LAMBDA_NEW_HELP}).") in captions


def test_open_in_edit_replays_the_story_edit(story):
    _step(story, 1)
    shown = {m.label: m.value for m in story.metric}
    record = story.session_state["_story"].main.record
    story.button(key="story-open-edit").click().run()
    assert_ok(story)
    assert story.title[0].value == "Edit a fact"
    run = story.session_state["_run"]
    assert run.record.digest() == record.digest()
    cards = {m.label: m.value for m in story.metric}
    assert {k: cards[k] for k in shown} == shown  # the same numbers on the Edit page
    assert story.selectbox(key="editor").value == "ft-l+sss"
    assert not [a.value for kind in (story.info, story.warning) for a in kind if a.value.startswith("Earlier run")]


def test_open_pair_in_compare_replays_both_runs(story):
    _step(story, 4)
    pair = story.session_state["_story"].pairs[1]
    story.button(key="story-pair1-open").click().run()
    assert_ok(story)
    assert story.title[0].value == "Compare two edits"
    a, b = story.session_state["_compare"]
    assert (a.record.digest(), b.record.digest()) == (pair[0].record.digest(), pair[1].record.digest())
    assert a.config["norm_constraint"] == 0.05 and b.editor == "ft-l+sss-loose-sum"
    summary = story.dataframe[0].value
    assert list(summary["generality"]) == [pair[0].result.metrics["generality"], pair[1].result.metrics["generality"]]
    assert (story.selectbox(key="cmp_editor_a").value, story.selectbox(key="cmp_editor_b").value) == (
        "ft-l", "ft-l+sss-loose-sum")


def test_results_of_another_fact_are_named_as_such(story, expected):
    from app import resources
    other = resources.preset_cases()[1].request.case_id
    story.selectbox(key="story_preset").set_value(other).run()
    assert_ok(story)
    assert expected["case"].request.case_id == "world-372" != other
    assert [w.value for w in story.warning][0] == ("These results are of world-372, not of the fact chosen above: "
                                                   "press 'Run the story'.")

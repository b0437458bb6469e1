"""The Class story (app/views/story.py) on the shipped model: the paper's claim first; each step shows the numbers
the core gives for the same edits, in plain words, with each lambda_max named by what it is measured against (the
whole new or old answer in step 3, each sentence's first answer token in step 4); probe rows say where each top-1
went and flag answers that were already wrong before the edit; step 5 says what the SSS term did against the claim,
whatever the sign; the story's fact, step and run records are in the URL, so a link replays the same numbers; "Open in
the Edit view" / "Open in Compare" replay exactly the story's runs there, and the sidebar brings the step back."""

from __future__ import annotations

import pytest

from apptest_support import APP, _no_umap_warmup, _restore_torch_threads, assert_ok  # noqa: F401
from app.panels.edit import LAMBDA_NEW_HELP
from app.panels.story import CLAIM, OWN_LAMBDA_HELP, PLAIN_HELP, SCORE_LINE, STEPS
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
        seen.append(story.radio(key="story_step").value)
        if n < len(STEPS) - 1:
            assert story.button(key="story_next").proto.help == f"Next: {STEPS[n + 1]}"
            story.button(key="story_next").click().run()
            assert_ok(story)
    assert seen == list(STEPS)
    assert not [b for b in story.button if b.key == "story_next"]  # the last step has no next


def _expander_text(at) -> str:
    """The markdown of the step's "More detail" boxes."""
    return "\n".join(m.value for e in at.expander if e.label == "More detail" for m in e.markdown)


def _texts(at) -> list[str]:
    """The page's markdown in order, less the run's progress lines (in its status box)."""
    progress = {m.value for b in at.main.children.values() if type(b).__name__ == "Status" for m in b.markdown}
    return [m.value for m in at.markdown if m.value not in progress]


def test_the_claim_then_the_fact_with_the_cores_numbers(story, expected):
    main = expected["main"]
    row = next(r for r in main.rows if r.group == "rewrite")
    texts = _texts(story)
    assert texts[0] == CLAIM
    assert texts[0].startswith("**What the paper claims.**")
    assert "A small λ_max means the prompt sits in a *semantically sparse* region" in texts[0]
    assert "so the edit should damage its neighbours (other facts) less" in texts[0]
    cards = {m.label: (m.value, m.help) for m in story.metric}
    assert cards == {
        "top-1 now": (row.top1_before.strip(), "The unedited model's most likely next token"),
        "P(United States) now": (format(row.p_old_before, ".3f"),
                                 "P(·) is the probability of the whole answer given the prompt (teacher forced)"),
        "P(Czech Republic) now": (format(row.p_new_before, ".3g"),
                                  "The new target's probability before the edit: what the edit has to raise")}
    assert texts[1] == ("**The fact.** The model is asked to complete *“Washington is the capital of”*. In its world "
                        "the answer is **United States**, and it knows it: its most likely next word is **“United”**, "
                        f"and the whole answer has probability {row.p_old_before:.3f}.")
    assert [e.label for e in story.expander if e.label == "More detail"] == ["More detail"]
    assert "shipped model" in _expander_text(story) and "shipped model" not in "\n".join(texts[:2])


# what happened to each probe of the default fact, as measured on the shipped model
OUTCOMES = ["now the new answer", "moved, not to the new answer", "unchanged: not the new answer",
            "kept its answer", "kept its answer", "kept its answer", "changed, but was already wrong",
            "damaged: lost its answer", "unchanged: not “Washington” yet"]
KNEW = ["yes", "no", "no", "yes", "yes", "yes", "no", "yes", "n/a"]


def test_the_edit_says_where_each_top1_went_and_which_answers_were_already_wrong(story, expected):
    main = expected["main"]
    _step(story, 1)
    cards = {m.label: (m.value, m.help) for m in story.metric}
    assert cards == {m: (format(main.result.metrics[m], ".2f"), PLAIN_HELP[m])
                     for m in ("reliability", "generality", "locality", "portability")}
    probes = story.table[0].value
    assert list(probes.columns) == ["kind", "question", "expected before", "top-1 before → after", "what happened",
                                    "knew it before", "score"]
    assert list(probes["question"]) == [r.prompt for r in main.rows]  # whole, never cut
    assert list(probes["top-1 before → after"]) == [f"{r.top1_before.strip()} → {r.top1_after.strip()}"
                                                    for r in main.rows]
    assert list(probes["what happened"]) == OUTCOMES
    assert list(probes["knew it before"]) == KNEW
    assert list(probes["expected before"]) == [r.old if r.old is not None else "n/a" for r in main.rows]
    assert list(probes["score"]) == pytest.approx([r.score for r in main.rows])
    distract = next(r for r in main.rows if r.group == "distract_neighbour")
    assert (distract.top1_before.strip(), distract.old) == ("United", "Morocco")  # wrong before the edit
    assert SCORE_LINE in [c.value for c in story.caption]
    assert SCORE_LINE == ("Score = the share of the answer's tokens the model gets right, one at a time (left alone: "
                          "answered as before), so a two-token answer can score 0.50.")
    text = _texts(story)[0]
    changed = sum(r.flipped for r in main.rows)
    assert text == ("**The edit.** We train the model to answer *“Washington is the capital of”* with **Czech "
                    f"Republic** (FT-L with the paper's SSS term), then ask 9 test questions: {changed} changed their "
                    "first word. The unedited model already missed 3 (“knew it before: no”): a change there is not "
                    "damage.")
    # the paper's definitions and the full probe table are in the detail, not on the screen's first lines
    assert "teacher forced" not in text and "teacher forced" in _expander_text(story)
    assert [list(d.value["prompt"]) for d in story.dataframe] == [[r.prompt for r in main.rows]]


def test_lambda_step_names_what_each_lambda_is_measured_against(story, expected):
    main, plain = expected["main"], expected["pairs"][0][0]
    _step(story, 2)
    assert {m.label: (m.value, m.help) for m in story.metric} == {
        "λ_max before (new target)": (format(main.result.lambda_max_before, ".2e"), LAMBDA_NEW_HELP),
        "λ_max after (new target)": (format(main.result.lambda_max_after, ".2e"), LAMBDA_NEW_HELP)}
    texts = _texts(story)
    assert texts[0] == ("**On this screen λ_max is the edit prompt's, against the new answer “Czech Republic”** (the "
                        "whole answer, every token). It is the paper's sparsity measure (small = sparse).")
    assert texts[1] == (f"**What it does not measure.** It falls whenever an edit makes the new answer likely, with "
                        f"or without the SSS term. Measured here: ft-l, the same edit without the SSS term, takes it "
                        f"from {plain.result.lambda_max_before:.2e} to {plain.result.lambda_max_after:.2e}; ft-l+sss "
                        f"from {main.result.lambda_max_before:.2e} to {main.result.lambda_max_after:.2e}. So a drop "
                        "alone is not the SSS term's doing.")
    assert plain.result.lambda_max_after < main.result.lambda_max_before / 100  # the drop needs no SSS term
    el = main.edit_lambda
    assert (f"Against the old target 'United States' (the whole answer): {el.old_before:.2e} before, {el.old_after:.2e} after. "
            in _expander_text(story))
    assert ("The old-answer measure is against the whole old answer (all its tokens), not its first token as in "
            "step 4.") in _expander_text(story)
    assert "own top answer" not in "\n".join(texts)
    links = [(p.proto.label, p.proto.page) for p in story.get("page_link")]
    assert [(label, page) for label, page in links if page in ("compare", "hypothesis")] == [
        ("Compare: the same edit with and without the SSS term", "compare"),
        ("Hypothesis: λ_max against damage over many edits", "hypothesis")]  # where the detail sends the class


def test_neighbours_step_says_in_words_where_they_went(story, expected):
    from app.panels.projection import move_agreement
    from sss_core.projection import project
    main = expected["main"]
    _step(story, 3)
    probes = sorted((s for s in main.sparsity if s.group != "background"), key=lambda s: -s.moved)
    emb = main.embeddings[main.knn.pooling]
    proj = project(emb.before, emb.after, "pca")
    rho, _, _ = move_agreement(proj.before, proj.after, emb.moved)
    top = "; ".join(f"“{s.sentence}” ({s.moved:.1f})" for s in probes[:3])
    texts = _texts(story)
    assert probes[0].sentence == "Washington is the capital of"  # the edit prompt moved furthest
    assert 0.5 <= rho < 0.8  # measured: the arrows follow the full-space moves only roughly
    assert texts[0] == (f"**Where they went.** In the model's full hidden space, the sentences that moved most are "
                        f"{top} (how far each moved, in the model's units; each ringed in the picture). The "
                        "arrows in the 2-D picture follow the "
                        "real moves only roughly (rank agreement between arrow length and real move: Spearman ρ = "
                        f"{rho:.2f} over {len(emb.sentences)} sentences, and the picture keeps "
                        f"{sum(proj.explained_variance[:2]):.0%} of the variance): read the distances, not the arrow "
                        "lengths.")
    assert texts[1] == ("Of the 5 questions the edit should leave alone, 1 lost its right answer: “Washington is a "
                        "city in” United → Czech. 1 more changed an answer that was already wrong before the edit: "
                        "“Washington is the capital of Czech Republic. Rabat is the capital of” United → Czech "
                        "(expected Morocco).")
    import json
    spec = json.loads(story.get("plotly_chart")[0].proto.spec)
    rings = [t for t in spec["data"] if "selected" in (t.get("meta") or {})]
    assert [emb.sentences[t["meta"]["selected"]] for t in rings] == [s.sentence for s in probes[:3]]
    for t in rings:  # each ring sits on its sentence's point after the edit
        assert (t["x"][0], t["y"][0]) == pytest.approx(tuple(proj.after[t["meta"]["selected"]]), abs=1e-6)
    # the own-answer lambda_max and its table are in the detail, named as the first answer token's
    assert "its single most likely next token (for the edit prompt the first token of the old answer alone), not " \
           "the whole answer as in step 3" in _expander_text(story)
    assert "new target)" not in "\n".join(texts) and not story.metric
    table = story.dataframe[0].value
    assert list(table.columns) == ["group", "sentence", "answer before", "answer after", "moved ‖Δh‖",
                                   "λ_max own before", "λ_max own after"]
    own = {s.sentence: s for s in probes}
    assert list(table["sentence"]) == [s.sentence for s in probes]
    for _, r in table.iterrows():
        s = own[r["sentence"]]
        assert (r["answer before"], r["answer after"]) == (s.answer.strip(), s.answer_after.strip())
        assert r["λ_max own before"] == pytest.approx(s.lambda_max_before, rel=1e-6)
        assert r["λ_max own after"] == pytest.approx(s.lambda_max_after, rel=1e-6)
    assert OWN_LAMBDA_HELP.startswith("λ_max (paper Eq. 9) of the sentence against its own top answer before the "
                                      "edit (its single most likely next token)")


def test_sss_step_says_plainly_what_the_sss_term_did_against_the_claim(story, expected):
    (a0, b0), (a1, b1) = expected["pairs"]
    _step(story, 4)
    scores = ("reliability", "generality", "locality", "portability")
    assert all(a0.result.metrics[m] == b0.result.metrics[m] for m in scores)  # default settings: alike (measured)
    m1a, m1b = a1.result.metrics, b1.result.metrics
    assert [m for m in scores if m1a[m] != m1b[m]] == ["generality"]  # the loose box: only generality moved
    assert m1a["locality"] == m1b["locality"] and a1.result.lambda_max_after < b1.result.lambda_max_after
    assert m1b["generality"] < m1a["generality"]
    assert [i.value for i in story.info] == [
        "Adding the SSS term changed nothing here: the same answers and the same scores on every question. This pair "
        "can neither support the claim nor go against it."]
    assert [w.value for w in story.warning] == [
        f"Adding the SSS term changed the edit. Questions left alone: locality {m1a['locality']:.2f} → "
        f"{m1b['locality']:.2f} (unchanged); λ_max after the edit {a1.result.lambda_max_after:.2e} → "
        f"{b1.result.lambda_max_after:.2e} (higher: less sparse, not what the SSS term aims for); paraphrases: "
        f"generality {m1a['generality']:.2f} → {m1b['generality']:.2f} (worse). In short: no less damage to "
        "neighbours, which the claim predicts."]
    texts = _texts(story)
    assert texts[-1] == (
        "**What this model showed for this fact:** with default settings the SSS term did nothing; with a looser "
        f"limit on the weight change it changed the edit, and locality went {m1a['locality']:.2f} → "
        f"{m1b['locality']:.2f}. **So on this fact the SSS term did not reduce the damage to neighbours: the paper's "
        "claim does not show here.** One fact is one example: the pages below measure many edits.")
    links = [(p.proto.label, p.proto.page) for p in story.get("page_link")]
    assert [(label, page) for label, page in links if page in ("about", "hypothesis", "compare")] == [
        ("About: what SSS did over many edits", "about"), ("Hypothesis: test the claim yourself", "hypothesis"),
        ("Compare: any two edits side by side", "compare")]
    # the jargon (settings, cosines, the measured reason) is in each pair's detail, not on the screen
    screen = "\n".join(texts[:1] + texts[-1:] + [w.value for w in story.warning] + [i.value for i in story.info])
    for word in ("norm_constraint", "cos(", "docs/", "teacher forced", "ft-l+sss-loose-sum"):
        assert word not in screen
    detail = _expander_text(story)
    assert FTL_REASON in detail and "A: ft-l; settings changed from the defaults: norm_constraint = 0.05." in detail
    assert [e.label for e in story.expander] == ["The fact, and running the story again", "More detail",
                                                 "More detail"]
    tables = [d.value for d in story.dataframe]
    assert [list(t["run"]) for t in tables] == [["A", "B", "B − A"]] * 2
    for t, (a, b) in zip(tables, expected["pairs"]):
        for m in scores:
            assert list(t[m]) == pytest.approx([a.result.metrics[m], b.result.metrics[m],
                                                b.result.metrics[m] - a.result.metrics[m]])


def test_the_url_holds_the_fact_the_step_and_the_runs_and_a_link_replays_them(story, expected):
    from streamlit.testing.v1 import AppTest
    from sss_core.record import unpack_records
    _step(story, 3)
    qp = dict(story.query_params)
    held = story.session_state["_story"]
    assert (qp["story"], qp["sstep"], qp["run"]) == ("world-372", "4", "1")
    srec = qp["srec"]
    assert [r.digest() for r in unpack_records(srec)] == [r.record.digest() for r in held.runs()]
    shown = _texts(story)[:2]
    # the link in a fresh session (a refresh, or a class opening a shared link): the same step, the same numbers
    fresh = AppTest.from_file(str(APP), default_timeout=300)
    fresh.switch_page(STORY)
    fresh.query_params.update({"story": "world-372", "sstep": "4", "srec": srec, "run": "1"})
    fresh.run()
    assert_ok(fresh)
    assert fresh.radio(key="story_step").value == STEPS[3]
    assert _texts(fresh)[:2] == shown
    replayed = fresh.session_state["_story"]
    assert [r.record.digest() for r in replayed.runs()] == [r.record.digest() for r in held.runs()]
    assert replayed.main.result.metrics == expected["main"].result.metrics


def test_a_link_whose_records_are_not_the_storys_is_refused_with_the_reason(story):
    from streamlit.testing.v1 import AppTest
    from sss_core.record import pack_records
    main = story.session_state["_story"].main
    fresh = AppTest.from_file(str(APP), default_timeout=300)
    fresh.switch_page(STORY)
    fresh.query_params.update({"story": "world-372", "sstep": "2", "srec": pack_records([main.record])})
    fresh.run()
    assert_ok(fresh)
    assert [w.value for w in fresh.warning] == ["The link's edits cannot be replayed: the link holds 1 run record "
                                                "where the story makes 4. Press 'Run the story'."]
    assert "_story" not in fresh.session_state
    assert not fresh.radio  # no step without results


def test_a_link_with_an_unknown_fact_says_so_and_starts_on_the_first():
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.switch_page(STORY)
    at.query_params.update({"story": "world-99999"})
    at.run()
    assert_ok(at)
    assert [w.value for w in at.warning] == ["The link's fact 'world-99999' is not one of the built-in world's "
                                             "presets here: the story starts on the first one."]
    assert at.selectbox(key="story_preset").value == "world-372" and not at.radio  # no step before a run
    assert at.query_params["story"] == "world-372"  # the URL now names the fact on screen


def test_open_in_edit_replays_the_story_edit_and_the_sidebar_brings_the_step_back(story):
    _step(story, 1)
    shown = {m.label: m.value for m in story.metric}
    table = story.table[0].value.copy()
    record = story.session_state["_story"].main.record
    assert story.button(key="story-open-edit").proto.help == (
        "It opens in this tab; 'Class story' in the sidebar brings you back to this step, with the same numbers.")
    story.button(key="story-open-edit").click().run()
    assert_ok(story)
    assert story.title[0].value == "Edit a fact"
    run = story.session_state["_run"]
    assert run.record.digest() == record.digest()
    cards = {m.label: m.value for m in story.metric}
    assert {k: cards[k] for k in ("reliability", "generality", "locality", "portability")} == shown
    assert story.selectbox(key="editor").value == "ft-l+sss"
    assert not [a.value for kind in (story.info, story.warning) for a in kind if a.value.startswith("Earlier run")]
    story.switch_page(STORY).run()  # the sidebar's 'Class story'
    assert_ok(story)
    assert story.radio(key="story_step").value == STEPS[1]
    assert {m.label: m.value for m in story.metric} == shown
    assert story.table[0].value.equals(table)


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

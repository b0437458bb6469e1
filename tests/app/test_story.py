"""The Class story (app/views/story.py) on the shipped model: the paper's claim first; each step shows the numbers
the core gives for the same edits, in plain words, with each lambda_max named by what it is measured against (the
whole new or old answer in step 3, each sentence's first answer token in step 4); probe rows say where each top-1
went and flag answers that were already wrong before the edit; step 5 says what the SSS term did against the claim,
whatever the sign; the story's fact, step and run records are in the URL, so a link replays the same numbers; "Open in
the Edit view" / "Open in Compare" replay exactly the story's runs there, and the sidebar brings the step back."""

from __future__ import annotations

import re

import pytest

from apptest_support import APP, _no_umap_warmup, _restore_torch_threads, assert_ok  # noqa: F401
from app.figures import GROUP_COLOURS
from app.panels.edit import LAMBDA_NEW_HELP
from app.panels.story import (BAR_OUTCOMES, CLAIM, INTRO, OWN_LAMBDA_HELP, PLAIN_HELP, PLAIN_KINDS, SCORE_LINE,
                              STEP_TWO_KINDS, STEPS, outcome)
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
    assert [i.value for i in at.info] == [INTRO] and not at.markdown  # the claim is step 1's, said once
    assert INTRO == ("The model learnt a small world of facts, some real, most invented. 'Run the story' changes "
                     "one of them, with and without the SSS term, and tells it in five steps.")
    at.button(key="story_run").click().run()
    assert_ok(at)
    return at


# what a teacher reads aloud on each screen: markdown, captions, alerts, metric cards and tables outside the "More
# detail" boxes and the fact chooser (the plot, buttons and the step bar left out), and the bound on its words. No main
# screen holds a table: step 2's probe table (9 rows of 8 columns) took a trial class 2-4 minutes and is in its detail
MAIN_WORDS = {"intro": 31, "1. The fact": 109, "2. The edit": 87, "3. What λ_max measures": 111,
              "4. Where the sentences went": 62, "5. Did SSS help?": 157}
CONFIG_WORDS = ("ft-l", "norm_constraint", "loose-sum", "FT-L", "C = ", "e-0", "e+0", "cos(", "teacher forced",
                "Spearman", "variance", "token")


def _main_texts(at) -> list[str]:
    """The texts of the screen outside its expanders and status boxes, in order (``MAIN_WORDS``)."""
    out = []

    def walk(node) -> None:
        for child in node.children.values():
            kind = type(child).__name__
            if kind in ("Expander", "Status"):
                continue
            if kind == "Metric":
                out.append(f"{child.label} {child.value}")
            elif kind in ("Markdown", "Caption", "Info", "Success", "Warning", "Error"):
                out.append(child.value)
            elif kind in ("Table", "Dataframe"):
                frame = child.value.data if hasattr(child.value, "data") else child.value  # a Styler's frame
                out.append(" ".join(map(str, [*frame.columns, *frame.to_numpy().ravel()])))
            elif hasattr(child, "children"):
                walk(child)
    walk(at.main)
    return out


def _words(texts: list[str]) -> int:
    """Words read aloud: markdown marks and lone symbols ("→", "–") not counted."""
    return sum(len([w for w in re.sub(r"[*#_]", " ", t).split() if re.search(r"\w", w)]) for t in texts)


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


def test_steps_in_order_and_next_walks_through_them_and_back_to_the_first(story):
    assert story.radio(key="story_step").options == list(STEPS)
    assert [e.label for e in story.expander][0] == "The fact, and running the story again"  # folded after Run
    assert not story.expander[0].proto.expanded and not story.get("status")  # no box above step 1's bar
    seen = []
    for n in range(len(STEPS)):
        seen.append(story.radio(key="story_step").value)
        if n < len(STEPS) - 1:
            assert story.button(key="story_next").proto.help == ""  # no tooltip over the bar above
            story.button(key="story_next").click().run()
            assert_ok(story)
    assert seen == list(STEPS)
    assert not [b for b in story.button if b.key == "story_next"]  # the last step has no next: it goes back
    assert story.button(key="story_back").label == "Back to step 1"
    story.button(key="story_back").click().run()
    assert_ok(story)
    assert story.radio(key="story_step").value == STEPS[0]


def _expander_text(at) -> str:
    """The markdown of the step's "More detail" boxes."""
    return "\n".join(m.value for e in at.expander if e.label == "More detail" for m in e.markdown)


def _texts(at) -> list[str]:
    """The page's markdown in order, less the run's progress lines (in its status box)."""
    progress = {m.value for b in at.main.children.values() if type(b).__name__ == "Status" for m in b.markdown}
    return [m.value for m in at.markdown if m.value not in progress]


def test_each_screen_is_short_plain_and_says_the_claim_once(story):
    screens = {"intro": [INTRO]}  # the fixture read the intro: this info alone
    for n, step in enumerate(STEPS):
        screens[step] = _main_texts(_step(story, n))
    counts = {k: _words(v) for k, v in screens.items()}
    print("words read aloud per screen:", counts, "in all:", sum(counts.values()))
    assert counts == MAIN_WORDS  # measured; the whole story read aloud in under three minutes at 150 words a minute
    assert sum(counts.values()) <= 560
    shown = "\n".join(t for texts in screens.values() for t in texts)
    assert [w for w in CONFIG_WORDS if w in shown] == []  # no editor names, settings, sci notation or jargon
    assert shown.count(CLAIM) == 1 and screens[STEPS[0]][0] == CLAIM


def test_numbers_for_a_class():
    from app.panels.story import fold, plain_chance, shown_word
    assert [plain_chance(p) for p in (0.992, 0.9951, 0.337, 0.0136, 0.00266, 1.41e-06, 5.36e-09, 0.0)] == [
        "99%", "over 99%", "34%", "1%", "about 1 in 400", "about 1 in 700,000", "about 1 in 200,000,000", "0%"]
    assert plain_chance(float("nan")) == plain_chance(None) != "0%"
    assert [fold(0.0898, 7.77e-06), fold(0.0898, 8.37e-06), fold(2.12e-06, 2.38e-06), fold(1.0, 1.0),
            fold(1.0, 0.7), fold(1.0, 3.4)] == [
        "fell about 12,000-fold", "fell about 11,000-fold", "rose about 12%", "stayed the same", "fell about 30%",
        "rose about 3.4 times"]
    assert [shown_word(" M", ("Morocco", "Czech Republic")), shown_word(" United", ("United States", "Czech")),
            shown_word(" P", (None, "Washington")), shown_word(" a", ("United States", "Czech Republic"))] == [
        "M(orocco)", "United", "P…", "a"]


def test_lambda_verdict_says_whether_the_drop_is_the_sss_terms_doing():
    from types import SimpleNamespace

    from app.panels.story import lambda_verdict

    def run(before, after):
        return SimpleNamespace(result=SimpleNamespace(lambda_max_before=before, lambda_max_after=after),
                               case=SimpleNamespace(request=SimpleNamespace(target_new="Czech Republic")))
    assert [lambda_verdict(run(1.0, 1e-4), run(1.0, 1.5e-4)), lambda_verdict(run(1.0, 1e-4), run(1.0, 0.1)),
            lambda_verdict(run(1.0, 1e-4), run(1.0, 2.0))] == [
        "Both fell about as much: once the model is sure of an answer its error barely moves, so λ_max falls for any "
        "edit that makes it sure; here it cannot tell the two edits apart.",
        "It fell without the SSS term too, so a drop alone is not the SSS term's doing.",
        "Without the SSS term it did not fall."]


def test_the_claim_then_the_fact_with_the_cores_numbers(story, expected):
    main = expected["main"]
    row = next(r for r in main.rows if r.group == "rewrite")
    texts = _texts(story)
    assert texts[0] == CLAIM == (
        "**The paper's claim.** Editing a fact (nudging a model's weights until it gives a new answer) can spoil "
        "other answers. The paper's *SSS term* (Semantic Sparse Space) is an extra cost, while the edit is learnt, "
        "that steers it to a quiet, *sparse* spot of the model, where a small nudge barely changes an answer. So "
        "edits with it should spoil fewer answers.")  # the SSS term said once, on the first screen
    cards = {m.label: (m.value, m.help) for m in story.metric}
    assert (round(row.p_old_before, 2), f"{row.p_new_before:.3g}") == (0.99, "1.41e-06")  # measured
    assert cards == {
        "United States now": ("99%", "How likely the model finds the whole answer now (its exact definition: More "
                                     "detail)"),  # no "teacher forced" on the main screen, even in a tooltip
        "Czech Republic now": ("about 1 in 700,000",
                               "How likely the new answer is before the edit: what the edit has to raise")}
    assert texts[1] == ("**The fact.** Asked to complete *“Washington is the capital of”*, the model (a small one that "
                        "learnt a world of facts, some real, most invented) answers **United States**. We will "
                        "change it to **Czech Republic**.")  # the model said again after the run's intro is gone
    assert row.top1_before.strip() == "United"  # the model answers it: its first word begins the answer
    assert [e.label for e in story.expander if e.label == "More detail"] == ["More detail"]
    detail = _expander_text(story)
    assert "shipped model" in detail and "shipped model" not in "\n".join(texts[:2])
    assert (f"Exactly: P(United States) = {row.p_old_before:.3g}, P(Czech Republic) = {row.p_new_before:.3g}"
            in detail)  # the exact values stay available
    assert ("The story's 4 edits, each on the unedited model: ft-l+sss, ft-l, ft-l (norm_constraint = 0.05), "
            "ft-l+sss-loose-sum (") in detail


# what happened to each probe of the default fact, as measured on the shipped model
OUTCOMES = ["now the new answer", "moved, not to the new answer", "unchanged: not the new answer",
            "kept its answer", "kept its answer", "kept its answer", "changed, but was already wrong",
            "damaged: lost its answer", "unchanged: not “Washington” yet"]
KNEW = ["yes", "no", "no", "yes", "yes", "yes", "no", "yes", "n/a"]
KINDS = ["edit question", "other words", "other words", "other fact", "other fact",
         "other fact with the new answer",
         "other fact, trick question", "other fact, same subject", "backwards"]
WORDS = ["United → Czech", "the → a", "New → New", "M(orocco) → M(orocco)", "United → United", "Czech → Czech",
         "United → Czech", "United → Czech", "P… → P…"]  # whole words, or the word a piece begins
AGAINST = ["Czech Republic"] * 3 + ["its answer before"] * 5 + ["Washington"]


def test_the_edit_says_where_each_answer_went_and_what_each_score_is_measured_against(story, expected):
    main = expected["main"]
    _step(story, 1)
    # three kinds of test question, as counts from the rows (the paper's partial-credit scores in the help and one
    # line: a trial class read "0 of 2" against "generality 0.25" as a contradiction); no table on the main screen
    m = main.result.metrics
    help_of = {name: f"{PLAIN_HELP[name]} The paper's {name} scores it from 0 to 1 (1 = all), with credit for part "
                     f"of an answer: here {m[name]:.2f}."
               for name in ("reliability", "generality", "locality")}
    assert {c.label: (c.value, c.help) for c in story.metric} == {
        "The edit question": ("1 of 1", help_of["reliability"]),
        "Asked in other words": ("0 of 2", help_of["generality"]),
        "Other facts": ("3 of 5", help_of["locality"])}
    alone = [r for r in main.rows if r.wanted_flip is False]
    paraphrases = [r for r in main.rows if r.group == "paraphrase"]
    assert ([sum(r.flipped for r in alone), len(alone)], [r.top1_after.strip() for r in paraphrases]) == (
        [2, 5], ["a", "New"])  # the counts, from the core's rows: none of the rewordings gives "Czech"
    assert _texts(story)[:4] == [
        "**The edit.** We teach the model that the answer is now **Czech Republic**, with the SSS term, then test "
        "it three ways.",
        "now gives Czech Republic",
        "now give Czech Republic. It got none of them right before the edit either.",
        "kept their answer. Lost it: “Washington is a city in”. Already wrong, and changed: the trick question "
        "“Washington is the capital of Czech Republic. Rabat is the capital of”."]  # whole: its first words say why
    assert not [c.value for c in story.caption if c.value.startswith("The paper's scores")]  # in the detail
    probes = story.table[0].value
    assert list(probes.columns) == ["kind", "question", "world's answer", "knew it", "first word before → after",
                                    "what happened", "scored against", "score"]
    assert list(probes["question"]) == [r.prompt for r in main.rows]  # whole, never cut
    assert [(r.top1_before.strip(), r.top1_after.strip()) for r in main.rows][3] == ("M", "M")  # the core's tokens
    assert list(probes["kind"]) == KINDS
    assert list(probes["first word before → after"]) == WORDS
    assert list(probes["what happened"]) == OUTCOMES
    assert list(probes["knew it"]) == KNEW
    assert list(probes["scored against"]) == AGAINST
    assert list(probes["world's answer"]) == [r.old if r.old is not None else "n/a" for r in main.rows]
    assert list(probes["score"]) == pytest.approx([r.score for r in main.rows])
    distract = next(r for r in main.rows if r.group == "distract_neighbour")
    assert (distract.top1_before.strip(), distract.old, distract.score) == ("United", "Morocco", 0.0)
    # locality counts the distract-neighbour's change as damage although the model was already wrong there
    alone = [r.score for r in main.rows if r.wanted_flip is False]
    assert main.result.metrics["locality"] == pytest.approx(sum(alone) / len(alone)) == pytest.approx(0.70)
    assert ("The paper's scores of these questions, from 0 to 1: reliability 1.00, generality 0.25, locality "
            "0.70. They also give credit for part of an answer, so they can differ from the counts above.") \
        in _expander_text(story)
    assert SCORE_LINE == ("A score counts the answer's word pieces one at a time, each given the pieces before it: "
                          "the pieces now right for the edit's questions, the pieces unchanged for the other facts. "
                          "So a question can score 0.50 while its first word is wrong.")
    text = _texts(story)[0]
    # the paper's definitions and group names, portability and the full probe table are in the detail
    detail = _expander_text(story)
    assert (f"Every test question, before and after the edit (portability: does the edit carry over to the "
            f"reversed question? {main.result.metrics['portability']:.2f}). {SCORE_LINE}") in detail
    assert "teacher forced" not in text and "teacher forced" in detail
    assert ("Kinds, as the paper names them: edit question = *edit prompt*; other words = *paraphrase*; other fact "
            "= *neighbour*; other fact with the new answer = *post-neighbour*; other fact, trick question = "
            "*distract-neighbour*; other fact, same subject = *unrelated attribute*; backwards = *reversed "
            "relation*.") in detail
    assert [list(d.value["prompt"]) for d in story.dataframe] == [[r.prompt for r in main.rows]]


def test_lambda_step_says_what_lambda_measures_and_that_it_falls_without_sss(story, expected):
    main, plain = expected["main"], expected["pairs"][0][0]
    _step(story, 2)
    (b0, a0), (b1, a1) = ((main.result.lambda_max_before, main.result.lambda_max_after),
                          (plain.result.lambda_max_before, plain.result.lambda_max_after))
    assert (round(b0 / a0, -3), round(b1 / a1, -3)) == (12000, 11000)  # measured ratios
    assert {m.label: (m.value, m.help) for m in story.metric} == {
        "λ_max with the SSS term": ("fell about 12,000-fold", LAMBDA_NEW_HELP),
        "λ_max without it": ("fell about 11,000-fold", LAMBDA_NEW_HELP)}
    texts = _texts(story)
    assert texts[0] == ("**What λ_max measures:** how quiet a spot is (step 1). Nudge the sentence's inner numbers a "
                        "little: how much does the model's error on the answer (how unlikely it finds it) change? "
                        "Small = quiet, sparse. Here: the edit question's, for the new answer **Czech Republic**, "
                        "before and after the edit. It does not measure damage to other facts.")
    assert texts[1] == ("Both fell about as much: once the model is sure of an answer its error barely moves, so "
                        "λ_max falls for any edit that makes it sure; here it cannot tell the two edits apart.")  # 12,000- against 11,000-fold
    detail = _expander_text(story)
    assert (f"λ_max of the edit prompt against the new target (the whole answer, every token): ft-l+sss {b0:.2e} → "
            f"{a0:.2e}; ft-l, the same edit without the SSS term, {b1:.2e} → {a1:.2e}.") in detail
    el = main.edit_lambda
    assert (f"Against the old target 'United States' (the whole answer): {el.old_before:.2e} before, "
            f"{el.old_after:.2e} after. ") in detail
    assert ("The old-answer measure is against the whole old answer (all its tokens), not its first token as in "
            "step 4.") in detail
    assert "it is mostly the target's confidence" in detail
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
    moved = {s.sentence: s.moved for s in probes}
    emb = main.embeddings[main.knn.pooling]
    proj = project(emb.before, emb.after, "pca")
    rho, _, _ = move_agreement(proj.before, proj.after, emb.moved)
    texts = _texts(story)
    assert [s.sentence for s in probes[:3]] == ["Washington is the capital of", "Washington is a city in",
                                                "Washington is the capital of Czech Republic. Rabat is the capital of"]
    alone = [r.prompt for r in main.rows if r.wanted_flip is False]
    shares = [moved[s] / moved["Washington is the capital of"] for s in alone]
    assert (len(alone), round(min(shares) * 100), round(max(shares) * 100)) == (5, 29, 83)  # measured: not "barely"
    assert texts[0] == ("**Where the sentences went.** Inside the model each sentence is a long list of numbers; each "
                        "bar is how far the edit (with the SSS term) moved it. The edit question moved most. The 5 "
                        "other facts moved "
                        "29–83% as far as the edit question: 3 kept their answer, 1 lost it, 1 that was already "
                        "wrong changed (each bar says which).")  # step 2's five, counted as step 2 counts them
    assert 0.5 <= rho < 0.8  # measured: the arrows follow the full-space moves only roughly
    detail = _expander_text(story)
    assert ("The arrows in the 2-D picture follow the real moves only roughly (rank agreement between arrow length "
            f"and real move: Spearman ρ = {rho:.2f} over {len(emb.sentences)} sentences, and the picture keeps "
            f"{sum(proj.explained_variance[:2]):.0%} of the variance): read the distances, not the arrow lengths.") \
        in detail
    assert ("Of the 5 questions the edit should leave alone, 1 lost its right answer: “Washington is a city in” United "
            "→ Czech. 1 more changed an answer that was already wrong before the edit: “Washington is the capital of "
            "Czech Republic. Rabat is the capital of” United → Czech (expected Morocco).") in detail
    import json
    bars, spec = (json.loads(c.proto.spec) for c in story.get("plotly_chart"))  # the bars, then the detail's PCA
    rows = {r.prompt: r for r in main.rows}
    drawn = {y.replace("<br>", " "): (x, text, trace["name"]) for trace in bars["data"]
             for y, x, text in zip(trace["y"], trace["x"], trace["text"])}
    counted = [s for s in probes if s.group != "reversed_relation"]  # step 2's questions: the backwards one is not
    said = {s.sentence: outcome(rows[s.sentence]) for s in counted}
    assert drawn == {s.sentence: (pytest.approx(s.moved), f"{PLAIN_KINDS[s.group]}: "
                                  f"{BAR_OUTCOMES.get(said[s.sentence], said[s.sentence])}",
                                  STEP_TWO_KINDS[s.group]) for s in counted}  # full-space moves, step 2's kinds
    assert len(drawn) == 8 and bars["layout"]["yaxis"]["categoryarray"][-1] == "Washington is the capital of"
    assert drawn["Washington is a city in"][1] == "other fact, same subject: lost its answer"  # as in step 2's detail
    colours = {trace["name"]: trace["marker"]["color"] for trace in bars["data"]}  # one colour per kind of step 2
    assert colours == {"edit question": GROUP_COLOURS["rewrite"], "other words": GROUP_COLOURS["paraphrase"],
                       "other fact": GROUP_COLOURS["neighbour"]}
    rings = [t for t in spec["data"] if "selected" in (t.get("meta") or {})]
    legend = [t["name"] for t in spec["data"] if t.get("showlegend", True) and t.get("name")]
    assert {"edit question", "other words", "other fact", "other fact, trick question", "other fact, same subject",
            "backwards"} <= set(legend)  # the legend speaks step 2's words
    assert [emb.sentences[t["meta"]["selected"]] for t in rings] == [s.sentence for s in probes[:3]]
    # black rings: an open symbol is stroked in marker.color (without it plotly took its next colour: pale orange)
    assert [(t["marker"]["symbol"], t["marker"]["color"]) for t in rings] == [("circle-open", "black")] * 3
    for t in rings:  # each ring sits on its sentence's point after the edit
        assert (t["x"][0], t["y"][0]) == pytest.approx(tuple(proj.after[t["meta"]["selected"]]), abs=1e-6)
    # the own-answer lambda_max and its table are in the detail, named as the first answer token's
    assert "its single most likely next token (for the edit prompt the first token of the old answer alone), not " \
           "the whole answer as in step 3" in detail
    assert "λ_max" not in "\n".join(_main_texts(story)) and not story.metric
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
    assert all(a0.result.metrics[m] == b0.result.metrics[m] for m in scores)  # the same edit: alike (measured)
    assert a0.result.lambda_max_after != b0.result.lambda_max_after  # alike, not the same: "no answer or score"
    m1a, m1b = a1.result.metrics, b1.result.metrics
    assert [m for m in scores if m1a[m] != m1b[m]] == ["generality"]  # the loose box: only generality moved
    assert m1a["locality"] == m1b["locality"] != expected["main"].result.metrics["locality"]  # other settings
    assert m1b["generality"] < m1a["generality"]
    ratio = b1.result.lambda_max_after / a1.result.lambda_max_after
    assert round(ratio - 1, 2) == 0.12
    assert [i.value for i in story.info] == [
        "The SSS term changed no answer or test score (other facts kept: 3 of 5 in A and B): no evidence either way."]
    assert [w.value for w in story.warning] == [  # the damage the claim is about, in step 2's counts, then what else
        # moved, on screen whatever its sign (here against the claim: worse on rewordings, less sparse)
        "Other facts kept: 1 of 5 in A and B (3 of 5 in steps 2-4), so no less damage, although the claim predicts "
        "less. "
        f"Asked in other words: 1 of 2 in A and B, but the paper's partial-credit score fell (A "
        f"{m1a['generality']:.2f}, B {m1b['generality']:.2f}). λ_max for the new answer rose about 12% from A to B "
        "(less sparse: the opposite of the SSS term's aim)."]
    texts = _texts(story)
    assert texts[0] == "**A: without the SSS term. B: with it.**"
    assert texts[1] == "#### The edit of steps 2-4"
    assert ("#### With a looser limit on the weights\n\nA second try: the editor's limit on each weight's change is 10 "
            "times looser for both edits, and B's SSS term is stronger.") in texts  # ±0.05 against ±0.005
    assert texts[-1] == ("**So on this fact the SSS term did not reduce the damage.** One fact is one example; the "
                         "claim is about many edits.")
    links = [(p.proto.label, p.proto.page) for p in story.get("page_link")]
    assert [(label, page) for label, page in links if page in ("about", "hypothesis", "compare")] == [
        ("About: what SSS did over many edits", "about"), ("Hypothesis: test the claim yourself", "hypothesis"),
        ("Compare: any two edits side by side", "compare")]
    detail = _expander_text(story)
    assert FTL_REASON in detail and "A: ft-l; settings changed from the defaults: norm_constraint = 0.05." in detail
    assert [c.value for c in story.caption if c.value.startswith("λ_max after (new target)")][1].startswith(
        f"λ_max after (new target): A {a1.result.lambda_max_after:.2e}, B {b1.result.lambda_max_after:.2e}")
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
    scores = next(m.value for m in story.markdown if m.value.startswith("The paper's scores"))  # in the detail
    shown = dict(part.rsplit(" ", 1) for part in scores.split(": ", 1)[1].split(". ")[0].split(", "))
    assert set(shown) == {"reliability", "generality", "locality"}
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
    assert {k: cards[k] for k in ("reliability", "generality", "locality")} == shown  # step 2's three scores
    assert story.selectbox(key="editor").value == "ft-l+sss"
    assert not [a.value for kind in (story.info, story.warning) for a in kind if a.value.startswith("Earlier run")]
    story.switch_page(STORY).run()  # the sidebar's 'Class story'
    assert_ok(story)
    assert story.radio(key="story_step").value == STEPS[1]
    assert scores in [m.value for m in story.markdown]
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


def test_a_pairs_verdict_shows_the_papers_locality_whenever_it_moved(expected):
    """The verdict on damage follows the paper's locality; where the counts alone do not show it (the same count, or
    a count moving the other way), the locality is named beside them."""
    import dataclasses

    from app.panels.story import pair_plain
    a, b = expected["pairs"][1]

    def with_locality(run, value):
        return dataclasses.replace(run, result=dataclasses.replace(
            run.result, metrics={**run.result.metrics, "locality": value}))
    assert pair_plain("changed", a, with_locality(b, 0.4)) == (
        "Other facts kept: 1 of 5 in A and B; the paper's locality A 0.50, B 0.40, so more damage, against the "
        "claim.")
    assert pair_plain("changed", a, with_locality(b, 0.6)) == (
        "Other facts kept: 1 of 5 in A and B; the paper's locality A 0.50, B 0.60, so less damage, as the claim "
        "predicts.")
    assert pair_plain("alike", a, b) == ("The SSS term changed no answer or test score (other facts kept: 1 of 5 in "
                                         "A and B): no evidence either way.")
    assert pair_plain("changed", a, b, main_kept="3 of 5") == (
        "Other facts kept: 1 of 5 in A and B (3 of 5 in steps 2-4), so no less damage, although the claim predicts "
        "less.")


def test_step_four_counts_the_other_facts_as_step_two_does_and_names_the_trick_question():
    """Step 4 gives counts (the bars name each sentence), in the plural too; step 2 names the paper's
    distract-neighbour as a trick question; step 5 says which way lambda_max moved against the SSS term's aim."""
    from types import SimpleNamespace as NS

    from app.panels.story import _quoted, pair_more, true_neighbours_sentence

    def row(prompt, group="neighbour", flipped=False, was_right=True):
        return NS(prompt=prompt, group=group, wanted_flip=False, flipped=flipped, old="Paris",
                  top1_before=" Paris" if was_right else " Rome")
    rows = [row("A is in", flipped=True), row("B is in", flipped=True), row("C is in"),
            row("X is in Spain. D is in", "distract_neighbour", flipped=True, was_right=False)]
    moved = {"E is in": 1.0, "A is in": 0.9, "B is in": 0.5, "C is in": 0.3, "X is in Spain. D is in": 0.6}
    run = NS(rows=rows, case=NS(request=NS(prompt="E is in")),
             sparsity=[NS(sentence=s, moved=m) for s, m in moved.items()])
    assert true_neighbours_sentence(run) == ("The 4 other facts moved 30–90% as far as the edit question: 1 kept "
                                             "their answer, 2 lost theirs, 1 that was already wrong changed (each "
                                             "bar says which).")
    assert _quoted(rows[2:]) == "“C is in” and the trick question “X is in Spain. D is in”"
    assert _quoted([rows[3], rows[0], rows[3]]) == ("“A is in” and the trick questions “X is in Spain. D is in” and "
                                                    "“X is in Spain. D is in”")

    def lam(after):
        return NS(result=NS(lambda_max_after=after, metrics={}), rows=[], case=NS(request=NS(target_new="Rome")))
    assert pair_more(lam(2e-6), lam(1e-6)) == ("λ_max for the new answer fell about 2.0 times from A to B (sparser, "
                                               "as the SSS term aims).")

"""The Class story's panels: the paper's claim, then its story told in five steps over one world fact, each step
one screen with one main message in a few plain sentences, and its details (tables, technical terms) in a
"More detail" expander; at the end, what this model showed for this fact against the claim, whatever the sign.

Every run is an ordinary run of the app (``analysis.analyse_edit`` with the Edit page's background
sentences, so the same run record as the Edit page makes); the story's link carries those records
(``pack_records``), so a link or a refresh replays exactly them (``replay_story``), and "Open in the Edit
view" / "Open in Compare" replay them there (``state.open_records``), so those views show the same numbers.

Two lambda_max measures appear, each named where it is shown: step 3's is the edit prompt's against a whole
answer ("Czech Republic", every token: ``EditLambda``); step 4's is each sentence's against its own single most
likely next token before the edit ("United" for the edit prompt: ``SentenceSparsity``, ``answer_rows``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import streamlit as st

from app import figures, records, resources, state
from app.hypothesis import settings_text
from app.messages import run_with_status
from app.panels.common import MISSING, cached_projection, fmt_lambda, fmt_number, is_missing, show_frame, shown_c
from app.panels.compare import delta_cosine_of, paired_probe_frame, same_edit_text, same_scores_text
from app.panels.edit import LAMBDA_NEW_HELP, METRIC_HELP, P_HELP, lambda_caption, probe_table, salience_panel
from app.panels.projection import COLOUR_BY, axis_titles, hover_texts, move_agreement
from app.same_edits import SCORES, reason_for
from sss_core import analysis
from sss_core.editors import EDITORS, editor_config
from sss_core.figures import token_begins
from sss_core.record import RunRecord
from sss_core.types import LOCALITY_GROUPS, EditCase

STEPS = ("1. The fact", "2. The edit", "3. What λ_max measures", "4. Where the sentences went",
         "5. Did SSS help?")
MAIN_EDITOR = "ft-l+sss"  # the app's default editor, at its default C (0.9, the paper's)
LOOSE = "ft-l+sss-loose-sum"
LOOSE_BOX = editor_config(LOOSE).norm_constraint

CLAIM = ("**The paper's claim.** Editing a fact (nudging a model's weights until it gives a new answer) can spoil "
         "other answers. The paper's *SSS term* (Semantic Sparse Space) is an extra cost, while the edit is learnt, "
         "that steers it to a quiet, *sparse* spot of the model, where a small nudge barely changes an answer. So "
         "edits with it should spoil fewer answers.")
INTRO = ("The model learnt a small world of facts, some real, most invented. 'Run the story' changes one of "
         "them, with and without the SSS term, and tells it in five steps.")
PLAIN_HELP = {  # step 2's three scores in plain words, for the class (METRIC_HELP has the paper's equations)
    "reliability": "Does the edited model now give the new answer to the edit question itself?",
    "generality": "Does it give the new answer to the same question asked in other words?",
    "locality": "Do the questions the edit should leave alone keep their answers?",
}
PLAIN_KINDS = {  # each probe group in a class's words (the paper's group names are in the detail)
    "rewrite": "edit question", "paraphrase": "other words", "neighbour": "other fact",
    "pre_neighbour": "other fact with the old answer",
    "post_neighbour": "other fact with the new answer",
    "distract_neighbour": "other fact, trick question", "unrelated_attribute": "other fact, same subject",
    "subject_replace": "subject's other name", "reversed_relation": "backwards", "one_hop": "one step on"}
# the story's probe table, compact enough for one screen (rows of one line, wrapped where a question is long)
PROBE_TABLE_CSS = (  # the cells hold markdown (div > p), which sets its own size and wrapping
    "<style>.st-key-story-probes-box th, .st-key-story-probes-box td {padding: 0.1rem 0.4rem !important;} "
    ".st-key-story-probes-box th *, .st-key-story-probes-box td * {font-size: 0.85rem !important; "
    "line-height: 1.3 !important; white-space: nowrap !important;} "
    ".st-key-story-probes-box td:nth-child(1) *, .st-key-story-probes-box td:nth-child(6) * "
    "{white-space: normal !important;} .st-key-story-probes-box td:nth-child(2) {min-width: 15rem;} "
    ".st-key-story-probes-box td:nth-child(2) * {white-space: normal !important;}</style>")


@dataclass(frozen=True)
class StoryPair:
    """Two edits of the story's fact, ``without`` the SSS term (editor, settings changed from its defaults) and
    ``with_sss``; ``title`` names the pair on screen in plain words, ``note`` says in plain words what else B changes
    and how the pair's settings differ from steps 2-4 ("" when nothing else differs)."""

    title: str
    without: tuple[str, dict[str, Any]]
    with_sss: tuple[str, dict[str, Any]]
    note: str = ""


PAIRS = (
    StoryPair("The edit of steps 2-4", ("ft-l", {}), (MAIN_EDITOR, {})),
    # the loose preset against FT-L in the same ±LOOSE_BOX box: the looser box is on both sides (docs/editors.md:
    # the looser box alone changes FT-L's locality); B also sums the SSS term over the tokens (two changes)
    StoryPair("With a looser limit on the weights", ("ft-l", {"norm_constraint": LOOSE_BOX}), (LOOSE, {}),
              "A second try: the editor's limit on each weight's change is {ratio:g} times looser for both edits, "
              "and B's SSS term is stronger."),
)


@dataclass(frozen=True)
class Story:
    """The story's runs of one fact: the edit told in steps 1-4 and, per ``PAIRS`` entry, (without, with SSS)."""

    case_id: str
    main: analysis.EditRun
    pairs: tuple[tuple[analysis.EditRun, analysis.EditRun], ...]
    seconds: float
    projections: dict = field(default_factory=dict, compare=False)  # (run_id, method, pooling) -> Projection

    def runs(self) -> list[analysis.EditRun]:
        """The story's distinct runs in ``plan`` order (what its link carries)."""
        out = [self.main]
        for pair in self.pairs:
            out += [r for r in pair if all(r is not o for o in out)]
        return out


def _overrides(editor: str, changed: dict[str, Any]) -> dict[str, Any]:
    """The settings an edit runs with: ``changed`` and, for an editor with C, its default C (as the Edit page
    passes it)."""
    spec = EDITORS[editor]
    return {**({spec.c_field: float(spec.defaults[spec.c_field])} if spec.has_c else {}), **changed}


def edit_words(editor: str, changed: dict[str, Any]) -> str:
    """"ft-l (norm_constraint = 0.05)": an edit of ``plan`` in words."""
    return editor + (" (" + ", ".join(f"{k} = {v}" for k, v in changed.items()) + ")" if changed else "")


def plan() -> list[tuple[str, dict[str, Any]]]:
    """The story's distinct edits, in order: the main edit, then each pair's (an edit two pairs share runs once)."""
    out = [(MAIN_EDITOR, {})]
    for pair in PAIRS:
        out += [e for e in (pair.without, pair.with_sss) if e not in out]
    return out


def _assemble(case_id: str, runs: list[analysis.EditRun]) -> Story:
    """The Story of ``runs`` made in ``plan`` order."""
    by_plan = dict(zip((repr(e) for e in plan()), runs))
    pairs = tuple((by_plan[repr(p.without)], by_plan[repr(p.with_sss)]) for p in PAIRS)
    return Story(case_id, runs[0], pairs, sum(r.seconds_total for r in runs))


def run_story(lm, case: EditCase) -> Story | None:
    """Run the story's edits of ``case`` (``plan``) in one turn for the shared model; None after showing why
    when one fails (the model is restored either way)."""
    background = resources.background_prompts()

    def work(progress) -> Story:
        runs = []
        for editor, changed in plan():
            progress(f"Editing with {edit_words(editor, changed)}...")
            runs.append(analysis.analyse_edit(lm, editor, _overrides(editor, changed), case, background))
        return _assemble(case.request.case_id, runs)

    return run_with_status(lm.model, f"Running the story's {len(plan())} edits...",
                           f"the class story, {case.request.prompt!r}", work,
                           lambda s: f"Done: the story's {len(plan())} edits ran in {s.seconds:.1f}s", None,
                           "The story's edits failed")


def records_problem(recs: list[RunRecord], case_id: str) -> str | None:
    """Why a link's run records are not this story's edits of preset ``case_id`` (None when they are): one record
    per ``plan`` entry, in order, each of that editor with those settings changed and that fact."""
    want = plan()
    if len(recs) != len(want):
        return (f"the link holds {len(recs)} run record{'' if len(recs) == 1 else 's'} where the story makes "
                f"{len(want)}")
    for rec, (editor, changed) in zip(recs, want):
        spec = EDITORS.get(rec.editor)
        got = {k: v for k, v in rec.overrides().items() if spec is None or k != spec.c_field}
        if rec.editor != editor or got != changed or rec.case.request.case_id != case_id:
            return f"the link's record of {rec.editor} is not the story's {edit_words(editor, changed)} of {case_id}"
    return None


def replay_story(lm, recs: list[RunRecord], case_id: str) -> Story | None:
    """Replay a link's run records of the story exactly (``analysis.run_record``) in one turn; None after
    showing why when one fails."""
    def work(progress) -> Story:
        return _assemble(case_id, [analysis.run_record(lm, r, progress=progress) for r in recs])

    return run_with_status(lm.model, f"Replaying the story's {len(recs)} recorded edits...",
                           f"the class story's replay, {case_id}", work,
                           lambda s: f"Done: the story's {len(recs)} recorded edits replayed in {s.seconds:.1f}s",
                           None, "The story's recorded edits could not be replayed")


def _open(first, second=None) -> None:
    """Button callback: show the record(s) in the Edit/Compare forms and have that view replay them."""
    records.show_in_widgets(first)
    if second is not None:
        records.show_in_widgets(first, "cmp_editor_a", "cmp_c_a", with_request=False)
        records.show_in_widgets(second, "cmp_editor_b", "cmp_c_b", with_request=False)
    state.open_records(first, second)


BACK_NOTE = "It opens in this tab; 'Class story' in the sidebar brings you back to this step, with the same numbers."


def open_button(label: str, page: str, runs: tuple, key: str) -> None:
    """A button that opens ``runs`` (one for the Edit view, two for Compare) on ``page``, replaying their records,
    and a line saying how to come back."""
    recs = [r.record for r in runs]
    if any(r is None for r in recs):
        return
    if st.button(label, key=key, icon=":material/open_in_new:", on_click=_open, args=tuple(recs),
                 help=BACK_NOTE):
        st.switch_page(page)


def rewrite_row(run: analysis.EditRun) -> analysis.ProbeRow:
    """The edit prompt's own row of the probe table."""
    return next(r for r in run.rows if r.group == "rewrite")


def _round_sig(x: float, digits: int) -> int:
    """``x`` (> 0) rounded to ``digits`` significant digits, as an int: 709_220 -> 700_000 at 1 digit."""
    return int(round(x, digits - 1 - int(math.floor(math.log10(x)))))


def plain_chance(p: float | None) -> str:
    """A probability as a class reads it: "over 99%", "34%", "about 1 in 700,000" (below 1%: 1/p to one
    significant digit), "0%"; ``MISSING`` for None or NaN. The exact value stays in the step's detail."""
    if is_missing(p):
        return MISSING
    if p >= 0.995:
        return "over 99%"
    if p >= 0.01:
        return f"{p:.0%}"
    return "0%" if p <= 0 else f"about 1 in {_round_sig(1 / p, 1):,}"


def fold(before: float, after: float) -> str:
    """How a lambda_max moved, as a class reads it: "fell about 12,000-fold" (a ratio of 10 or more, 2 significant
    digits), "rose about 3.4 times" (2 to 10), "rose about 12%" / "fell about 30%" (under 2: the change as a share
    of ``before``), "stayed the same"; the exact values stay in the step's detail."""
    if is_missing(before) or is_missing(after) or before <= 0 or after <= 0:
        return MISSING
    if before == after:
        return "stayed the same"
    verb, r = ("fell", before / after) if after < before else ("rose", after / before)
    if r < 2:
        return f"{verb} about {abs(after / before - 1):.0%}"
    return f"{verb} about {_round_sig(r, 2):,}-fold" if r >= 10 else f"{verb} about {r:.1f} times"


def shown_word(token: str, answers: tuple[str | None, ...]) -> str:
    """A top-1 token as a class reads it: the token when it is a whole word; a piece that begins a word of one of
    ``answers`` with that word's rest in brackets ("M(orocco)"); a lone capital that begins none of them marked as a
    piece ("P…")."""
    t = token.strip()
    for a in answers:
        if a and t and a.strip().startswith(t):
            word = a.strip().split()[0]
            return t if len(t) >= len(word) else f"{t}({word[len(t):]})"
    return f"{t}…" if len(t) == 1 and t.isupper() and t not in "AI" else t


def fact_step(story: Story) -> None:
    """Step 1: the paper's claim (said once, here), then what the unedited model answers now, read from the edit
    prompt's row; probabilities as a class reads them (``plain_chance``), the exact values in the detail."""
    run = story.main
    r, row = run.case.request, rewrite_row(run)
    st.markdown(CLAIM)
    model = ("the model (a small one that learnt a world of facts, some real, most invented)"
             if resources.is_shipped_model(run.model_name) else "the model")
    says = (f"{model} answers **{r.ground_truth}**" if token_begins(row.top1_before, r.ground_truth) else
            f"the world it learnt says **{r.ground_truth}**, but {model}'s first word is “{row.top1_before.strip()}”")
    st.markdown(f"**The fact.** Asked to complete *“{r.prompt}”*, {says}. We will change it to **{r.target_new}**.")
    cols = st.columns(3)
    cols[0].metric(f"{r.ground_truth} now", plain_chance(row.p_old_before),
                   help="How likely the model finds the whole answer now (its exact definition: More detail)")
    cols[1].metric(f"{r.target_new} now", plain_chance(row.p_new_before),
                   help="How likely the new answer is before the edit: what the edit has to raise")
    with st.expander("More detail"):
        model = ("the shipped model, a small GPT-2 trained on this project's generated world of facts: it knows "
                 "that world only, so every fact here is one of its own"
                 if resources.is_shipped_model(run.model_name) else f"the model {run.model_name}")
        st.markdown(f"The model is {model}. It answers one token (word piece) at a time; its most likely next token "
                    f"now is “{row.top1_before.strip()}”. Exactly: "
                    f"P({r.ground_truth}) = {fmt_number(row.p_old_before, '.3g')}, P({r.target_new}) = "
                    f"{fmt_number(row.p_new_before, '.3g')} ({P_HELP}).")
        st.markdown(f"The story's {len(plan())} edits, each on the unedited model: "
                    + ", ".join(edit_words(*e) for e in plan()) + f" ({story.seconds:.1f}s in all).")


def outcome(row: analysis.ProbeRow) -> str:
    """What happened to one probe, in words (the table's "first word before → after" shows where its top-1 went):
    wanted, damage, or a change of an answer that was already not the expected one before the edit."""
    if row.wanted_flip:
        if token_begins(row.top1_after, row.new):
            return "now the new answer" if row.flipped else "the new answer already"
        return "moved, not to the new answer" if row.flipped else "unchanged: not the new answer"
    if row.wanted_flip is False:
        if not row.flipped:
            return "kept its answer"
        was_right = token_begins(row.top1_before, row.old)
        return "damaged: lost its answer" if was_right else "changed, but was already wrong"
    if token_begins(row.top1_after, row.new):  # what the edit implies (e.g. the reversed relation)
        return "moved to what the edit implies" if row.flipped else "what the edit implies already"
    return f"moved, not to “{row.new}”" if row.flipped else f"unchanged: not “{row.new}” yet"


def scored_against(row: analysis.ProbeRow) -> str:
    """What a probe's score is measured against: the new answer (the edit's questions), the probe's own answers
    before the edit (the questions left alone: locality), or what the edit implies (portability)."""
    return "its answer before" if row.wanted_flip is False else row.new


def probe_frame(run: analysis.EditRun) -> pd.DataFrame:
    """One row per probe: kind in plain words (``PLAIN_KINDS``), the full question, the world's answer before the
    edit ("n/a" where there is none), whether the unedited model knew it, the model's first word before and after
    as a class reads it (``shown_word``: "M(orocco)"), what happened (``outcome``), what the score is measured
    against, the score."""
    rows = []
    for r in run.rows:
        answers = (r.old, r.new)
        rows.append({"kind": PLAIN_KINDS.get(r.group, analysis.GROUP_LABELS.get(r.group, r.group)),
                     "question": r.prompt, "world's answer": r.old if r.old is not None else "n/a",
                     "knew it": "n/a" if r.old is None else "yes" if token_begins(r.top1_before, r.old) else "no",
                     "first word before → after": f"{shown_word(r.top1_before, answers)} → "
                                                  f"{shown_word(r.top1_after, answers)}",
                     "what happened": outcome(r), "scored against": scored_against(r), "score": r.score})
    return pd.DataFrame(rows)


def not_known(run: analysis.EditRun) -> list[analysis.ProbeRow]:
    """The probes whose unedited top-1 did not begin their answer before the edit (the unedited model did not know
    it); probes without such an answer (the reversed relation) are left out."""
    return [r for r in run.rows if r.old is not None and not token_begins(r.top1_before, r.old)]


def left_alone_changes(run: analysis.EditRun) -> tuple[list, list, list]:
    """The probes the edit should leave alone; those of them whose top-1 changed from their answer (damaged); and
    those whose top-1 changed where it was already not their answer (already wrong)."""
    alone = [r for r in run.rows if r.wanted_flip is False]
    hit = [r for r in alone if r.flipped]
    damaged = [r for r in hit if token_begins(r.top1_before, r.old)]
    return alone, damaged, [r for r in hit if r not in damaged]


# step 4's bar notes name each sentence by step 2's three kinds (the questions left alone are its "other facts")
STEP_TWO_KINDS = {"rewrite": "edit question", "paraphrase": "other words", **{g: "other fact" for g in LOCALITY_GROUPS}}


SCORE_LINE = ("A score counts the answer's word pieces one at a time, each given the pieces before it: the pieces "
              "now right for the edit's questions, the pieces unchanged for the other facts. So a question can score "
              "0.50 while its first word is wrong.")


def new_answer_count(rows: list[analysis.ProbeRow]) -> int:
    """How many of ``rows`` now begin the new answer (their top-1 after the edit begins it)."""
    return sum(token_begins(r.top1_after, r.new) for r in rows)


def question_counts(run: analysis.EditRun) -> list[tuple[str, str, str, str]]:
    """Step 2's three kinds of test question, each (kind, "k of n", what the count counts, the paper's score that
    measures it): the edit question and its rewordings that now give the new answer (their top-1 after the edit
    begins it: reliability, generality), and the questions the edit should leave alone that kept their top-1
    (locality), naming those that lost their answer and those that changed where it was already wrong. A kind this
    fact lacks is left out; portability is in the step's detail."""
    new, out = run.case.request.target_new, []
    for kind, group, name in (("The edit question", "rewrite", "reliability"),
                              ("Asked in other words", "paraphrase", "generality")):
        rows = [r for r in run.rows if r.group == group]
        if rows:
            knew = sum(token_begins(r.top1_before, r.old) for r in rows if r.old is not None)
            before = ("" if group == "rewrite" or knew == len(rows) else
                      ". It got none of them right before the edit either." if knew == 0 else
                      f". Before the edit it got {knew} of {len(rows)} right.")
            out.append((kind, f"{new_answer_count(rows)} of {len(rows)}",
                        f"now give{'s' if len(rows) == 1 else ''} {new}{before}", name))
    alone, damaged, wrong = left_alone_changes(run)
    if alone:
        what = "kept their answer."
        what += f" Lost it: {_quoted(damaged)}." if damaged else ""
        what += f" Already wrong, and changed: {_quoted(wrong)}." if wrong else ""
        out.append(("Other facts", f"{len(alone) - len(damaged) - len(wrong)} of {len(alone)}", what, "locality"))
    return out


def _quoted(rows: list[analysis.ProbeRow]) -> str:
    """The rows' questions, whole and quoted, joined with "and"; the paper's distract-neighbours (the new fact said
    first, then another fact's question) come last, called the trick questions they are."""
    plain = [f"“{r.prompt}”" for r in rows if r.group != "distract_neighbour"]
    tricks = [f"“{r.prompt}”" for r in rows if r.group == "distract_neighbour"]
    if tricks:
        plain.append(f"the trick question{'s' if len(tricks) > 1 else ''} " + " and ".join(tricks))
    return " and ".join(plain)


def count_help(run: analysis.EditRun, name: str) -> str:
    """A step-2 card's help: the question its count answers (``PLAIN_HELP``) and the paper's score of it."""
    return (f"{PLAIN_HELP[name]} The paper's {name} scores it from 0 to 1 (1 = all), with credit for part of an "
            f"answer: here {fmt_number(run.result.metrics.get(name, math.nan), '.2f')}.")


def scores_line(run: analysis.EditRun, names: list[str]) -> str:
    """The paper's scores of step 2's counts, in one line, and why they can differ from the counts."""
    scores = ", ".join(f"{m} {fmt_number(run.result.metrics.get(m, math.nan), '.2f')}" for m in names)
    return (f"The paper's scores of these questions, from 0 to 1: {scores}. They also give credit for part of an "
            "answer, so they can differ from the counts above.")


def edit_step(run: analysis.EditRun) -> None:
    """Step 2: the request, then the three kinds of test question as counts (``question_counts``), each card's help
    giving its question and the paper's score; the scores in one line, the full probe table, portability, the
    paper's names and definitions in the detail."""
    r = run.case.request
    st.markdown(f"**The edit.** We teach the model that the answer is now **{r.target_new}**, with the SSS term, then "
                "test it three ways.")
    counts = question_counts(run)
    for col, (kind, value, what, name) in zip(st.columns(len(counts)), counts):
        col.metric(kind, value, help=count_help(run, name))
        col.markdown(what)
    with st.expander("More detail"):
        st.markdown(scores_line(run, [c[3] for c in counts]))
        st.markdown(f"Every test question, before and after the edit (portability: does the edit carry over to "
                    f"the reversed question? "
                    f"{fmt_number(run.result.metrics.get('portability', math.nan), '.2f')}). {SCORE_LINE}")
        with st.container(key="story-probes-box"):  # a static table: every question whole, wrapped if need be
            st.html(PROBE_TABLE_CSS)
            st.table(probe_frame(run).style.format({"score": "{:.2f}"}).hide(axis="index"))
        st.markdown(f"Editor **{run.editor}** at C = {fmt_number(shown_c(run.editor, run.c), 'g')}: "
                    f"{EDITORS[run.editor].description}. The scores, as the paper defines them: "
                    + " ".join(f"*{m}*: {METRIC_HELP[m]}." for m in SCORES))
        st.markdown("Kinds, as the paper names them: " + "; ".join(
            f"{PLAIN_KINDS[g]} = *{analysis.GROUP_LABELS[g]}*" for g in dict.fromkeys(x.group for x in run.rows)
            if g in PLAIN_KINDS) + ". " + neighbour_sentence(run))
        probe_table(run, key="story-probes-full", compact=True)
        open_button("Open this edit in the Edit view", "app/views/edit.py", (run,), "story-open-edit")
        st.caption(BACK_NOTE)


LAMBDA_PLAIN = ("**What λ_max measures:** how quiet a spot is (step 1). Nudge the sentence's inner numbers a little: "
                "how much does the model's error on the answer (how unlikely it finds it) change? Small = quiet, "
                "sparse.")


def lambda_verdict(run: analysis.EditRun, plain: analysis.EditRun) -> str:
    """Step 3's last line: whether lambda_max against the new answer fell without the SSS term too, and when both
    fell within a factor of 2 of each other, that they fell about as much (the model became sure of the answer)."""
    ra, rb = (r.result.lambda_max_before / r.result.lambda_max_after for r in (run, plain))
    if not rb > 1:
        return "Without the SSS term it did not fall."
    if ra > 1 and max(ra, rb) / min(ra, rb) < 2:
        return ("Both fell about as much: once the model is sure of an answer its error barely moves, so λ_max falls "
                "for any edit that makes it sure; here it cannot tell the two edits apart.")
    return "It fell without the SSS term too, so a drop alone is not the SSS term's doing."


def lambda_step(story: Story) -> None:
    """Step 3: what lambda_max measures, in one plain sentence; the edit prompt's against the NEW target (whole
    answer) with and without the SSS term, as ``fold`` ratios (the exact values, the old answer's lambda_max and
    each token's share in the detail): plain FT-L's falls as well, so a drop is not the SSS term's doing."""
    run, plain = story.main, story.pairs[0][0]
    new = run.case.request.target_new
    st.markdown(LAMBDA_PLAIN + f" Here: the edit question's, for the new answer **{new}**, before and after the edit. "
                "It does not measure damage to other facts.")
    cols = st.columns(2)
    cols[0].metric("λ_max with the SSS term", fold(run.result.lambda_max_before, run.result.lambda_max_after),
                   help=LAMBDA_NEW_HELP)
    cols[1].metric("λ_max without it", fold(plain.result.lambda_max_before, plain.result.lambda_max_after),
                   help=LAMBDA_NEW_HELP)
    st.markdown(lambda_verdict(run, plain))
    with st.expander("More detail"):
        st.markdown(f"λ_max of the edit prompt against the new target (the whole answer, every token): "
                    f"{run.editor} {fmt_lambda(run.result.lambda_max_before)} → "
                    f"{fmt_lambda(run.result.lambda_max_after)}; {plain.editor}, the same edit without the SSS term, "
                    f"{fmt_lambda(plain.result.lambda_max_before)} → {fmt_lambda(plain.result.lambda_max_after)}.")
        st.markdown(lambda_caption(run) + " The old-answer measure is against the whole old answer (all its "
                    "tokens), not its first token as in step 4.")
        st.markdown(f"Formula: {LAMBDA_NEW_HELP}.")
        salience_panel(run)
        st.page_link("app/views/compare.py", label="Compare: the same edit with and without the SSS term",
                     icon=":material/compare_arrows:")
        st.page_link("app/views/hypothesis.py", label="Hypothesis: λ_max against damage over many edits",
                     icon=":material/query_stats:")


OWN_LAMBDA_HELP = ("λ_max (paper Eq. 9) of the sentence against its own top answer before the edit (its single most "
                   "likely next token), on the model before and after: how sensitive what it already says is "
                   "(small = sparse)")


def neighbour_frame(run: analysis.EditRun) -> pd.DataFrame:
    """One row per probe sentence of the run (background sentences left out), the farthest moved first:
    group, sentence, its own top answer before and after, how far it moved and its lambda_max against that
    own answer before and after (``SentenceSparsity``; the kNN distance stays on the Projection view)."""
    rows = [{"group": analysis.GROUP_LABELS.get(s.group, s.group), "sentence": s.sentence,
             "answer before": s.answer.strip(), "answer after": s.answer_after.strip(), "moved ‖Δh‖": s.moved,
             "λ_max own before": s.lambda_max_before, "λ_max own after": s.lambda_max_after}
            for s in run.sparsity if s.group != "background"]
    return pd.DataFrame(rows).sort_values("moved ‖Δh‖", ascending=False, kind="stable").reset_index(drop=True)


def neighbour_sentence(run: analysis.EditRun) -> str:
    """How many of the probes the edit should leave alone changed their top answer, and which; a change of an
    answer that was already not the expected one before the edit is named as such."""
    alone, damaged, wrong = left_alone_changes(run)
    if not alone:
        return "This fact has no question the edit should leave alone."
    text = (f"Of the {len(alone)} questions the edit should leave alone, {len(damaged)} lost "
            f"{'its' if len(damaged) == 1 else 'their'} right answer")
    text += (": " + "; ".join(f"“{r.prompt}” {r.top1_before.strip()} → {r.top1_after.strip()}" for r in damaged)
             if damaged else "")
    if wrong:
        text += (f". {len(wrong)} more changed an answer that was already wrong before the edit: "
                 + "; ".join(f"“{r.prompt}” {r.top1_before.strip()} → {r.top1_after.strip()} (expected "
                             f"{r.old})" for r in wrong))
    return text + "."


def moves_sentence(run: analysis.EditRun) -> str:
    """Where the sentences went, in words: what a bar is, and the probe sentence that moved most in the full hidden
    space (how far is on the bars: the model's units mean nothing to a class)."""
    first = max((x for x in run.sparsity if x.group != "background"), key=lambda x: x.moved).sentence
    who = "The edit question" if first == run.case.request.prompt else f"“{first}”"
    return ("**Where the sentences went.** Inside the model each sentence is a long list of numbers; each bar is how "
            f"far the edit (with the SSS term) moved it. {who} moved most.")


def step_two_rows(run: analysis.EditRun) -> list[analysis.ProbeRow]:
    """The probes step 2 counts: the edit question, its rewordings and the questions the edit should leave alone
    (the reversed question, scored by portability, is in the detail only)."""
    return [r for r in run.rows if r.group in STEP_TWO_KINDS]


BAR_OUTCOMES = {  # ``outcome`` in the fewest words, for step 4's bars
    "damaged: lost its answer": "lost its answer", "changed, but was already wrong": "was wrong, changed",
    "moved, not to the new answer": "not the new answer",
    "unchanged: not the new answer": "not the new answer"}


def moves_picture(run: analysis.EditRun):
    """Step 4's bars: how far each of step 2's probe sentences moved in the full hidden space
    (``SentenceSparsity.moved``), the farthest on top, coloured by step 2's three kinds, each with its kind
    (``PLAIN_KINDS``, as in step 2's detail) and what happened to its answer (``outcome``, shortened by
    ``BAR_OUTCOMES``)."""
    rows = {r.prompt: r for r in step_two_rows(run)}
    probes = sorted((x for x in run.sparsity if x.sentence in rows), key=lambda x: -x.moved)
    kind_group = {"edit question": "rewrite", "other words": "paraphrase", "other fact": "neighbour"}  # 3 colours
    return figures.moves_figure([x.sentence.replace(". ", ".<br>") for x in probes], [x.moved for x in probes],
                                [kind_group[STEP_TWO_KINDS[rows[x.sentence].group]] for x in probes],
                                [f"{PLAIN_KINDS[rows[x.sentence].group]}: "
                                 f"{BAR_OUTCOMES.get(outcome(rows[x.sentence]), outcome(rows[x.sentence]))}"
                                 for x in probes], labels={**analysis.GROUP_LABELS, **PLAIN_KINDS})


def true_neighbours_sentence(run: analysis.EditRun) -> str:
    """How far the questions the edit should leave alone (step 2's "other facts") moved, as a share of the edit
    prompt's move in the full hidden space (under 20%: barely), and which kept, lost or (already wrong) changed
    their answer, as step 2 counts them."""
    moved = {x.sentence: x.moved for x in run.sparsity}
    edit = moved.get(run.case.request.prompt)
    alone, damaged, wrong = left_alone_changes(run)
    shares = [moved[r.prompt] / edit for r in alone if r.prompt in moved] if edit else []
    if not shares:
        return ""
    how = (f"barely moved (at most {max(shares):.0%} as far as the edit question)" if max(shares) < 0.2 else
           f"moved {min(shares) * 100:.0f}–{max(shares):.0%} as far as the edit question")
    kept = len(alone) - len(damaged) - len(wrong)
    text = f"The {len(alone)} other facts {how}: {kept} kept their answer"
    text += f", {len(damaged)} lost {'it' if len(damaged) == 1 else 'theirs'}" if damaged else ""
    text += f", {len(wrong)} that {'was' if len(wrong) == 1 else 'were'} already wrong changed" if wrong else ""
    return text + " (each bar says which)."


def arrows_detail(emb: analysis.EmbeddingSet, proj) -> str:
    """Whether the 2-D arrows follow the full-space moves (``projection.move_agreement``, the Projection view's
    measure: Spearman rank correlation) and the variance the picture keeps; "" without a picture."""
    if proj is None:
        return ""
    rho, _, _ = move_agreement(proj.before, proj.after, emb.moved)
    if math.isnan(rho):
        return ""
    verdict = ("follow the real moves" if rho >= 0.8 else "follow the real moves only roughly" if rho >= 0.5
               else "do not follow the real moves")
    kept = f", and the picture keeps {sum(proj.explained_variance[:2]):.0%} of the variance" \
        if proj.explained_variance else ""
    return (f"The arrows in the 2-D picture {verdict} (rank agreement between arrow length and real move: "
            f"Spearman ρ = {rho:.2f} over {len(emb.sentences)} sentences{kept}): read the distances, not the arrow "
            "lengths. The distances are how far each sentence's last hidden state moved (‖Δh‖, the model's units).")


PICTURE_HEIGHT = 500  # px, legend below included: the PCA picture in step 4's detail


def neighbours_step(story: Story) -> None:
    """Step 4: where the sentences went and whether the true neighbours barely moved, in words, beside bars of how
    far each moved in the full hidden space (``moves_picture``: a 2-D picture's arrows follow those moves only
    roughly); the PCA picture, the arrows' agreement, the damage and the table of moves and lambda_max against each
    sentence's OWN first answer token in the detail."""
    run = story.main
    pooling = run.knn.pooling if run.knn.pooling in run.embeddings else next(iter(run.embeddings))
    emb = run.embeddings[pooling]
    proj = cached_projection(story.projections, (run.run_id, "pca", pooling), emb.before, emb.after, "pca", "")
    words, picture = st.columns([2, 3])
    words.markdown(moves_sentence(run) + " " + true_neighbours_sentence(run))
    picture.plotly_chart(moves_picture(run), key=f"story-moves-{run.run_id}", width="stretch")
    with st.expander("More detail"):
        if proj is not None:
            named = list(neighbour_frame(run)["sentence"][:3])  # the three that moved most, ringed where they ended
            fig = figures.projection_figure(proj.before, proj.after, emb.groups, hover_texts(emb),
                                            labels={**analysis.GROUP_LABELS, **PLAIN_KINDS},  # step 2's kinds
                                            height=PICTURE_HEIGHT, axis_titles=axis_titles(proj),
                                            highlight=[emb.sentences.index(t) for t in named])
            st.plotly_chart(fig, key=f"story-proj-{run.run_id}", width="stretch")
        st.markdown(arrows_detail(emb, proj) + " " + neighbour_sentence(run))
        st.markdown("The picture is a PCA of the last hidden states: hollow before the edit, filled after, an arrow "
                    "from each before to its after, the three that moved most ringed; grey points are other facts of "
                    "the world. The bars above are the same moves in the full space. **In this table λ_max "
                    "is each sentence's own, against its own top answer before the edit** — its single most likely "
                    "next token (for the edit prompt the first token of the old answer alone), not the whole "
                    "answer as in step 3, and not the new target.")
        show_frame(neighbour_frame(run), key=f"story-neigh-{run.run_id}", formats={
            "moved ‖Δh‖": ".3g", "λ_max own before": ".2e", "λ_max own after": ".2e"}, column_config={
            "sentence": st.column_config.TextColumn("sentence", width=300),
            "moved ‖Δh‖": st.column_config.Column(help=COLOUR_BY["moved"]),
            "λ_max own before": st.column_config.Column(help=OWN_LAMBDA_HELP),
            "λ_max own after": st.column_config.Column(help=OWN_LAMBDA_HELP)})


def score_changes(a: analysis.EditRun, b: analysis.EditRun) -> list[str]:
    """The four scores that differ between A and B, in words ("generality 0.50 → 0.25")."""
    out = []
    for m in SCORES:
        x, y = a.result.metrics.get(m, math.nan), b.result.metrics.get(m, math.nan)
        if not (math.isnan(x) and math.isnan(y)) and x != y:
            out.append(f"{m} {fmt_number(x, '.2f')} (A) → {fmt_number(y, '.2f')} (B)")
    return out


def pair_verdict(a: analysis.EditRun, b: analysis.EditRun) -> tuple[str, str, str]:
    """("same" | "alike" | "changed", the sentence, the measured reason or ""): whether the SSS term (B) changed A's
    edit, as Compare says it (``same_edit_text``, ``same_scores_text``) or, when it did, which scores and top-1
    predictions moved. The reason (``same_edits.reason_for``: FT-L family at its defaults, C aside) is given only
    where no prediction or score moved."""
    paired = paired_probe_frame(a, b)
    _, cosine = delta_cosine_of(a, b)
    reason = reason_for([a.editor, b.editor], {r.editor: settings_text(r.editor, r.record.settings)
                                               for r in (a, b) if r.record is not None})
    same = same_edit_text(a, b, paired, cosine)
    if same is not None:
        return "same", same, reason
    alike = same_scores_text(a, b, paired, cosine)
    if alike is not None:
        return "alike", alike, reason
    flips = int((~paired["same top-1"]).sum()) if not paired.empty else 0
    scores = score_changes(a, b)
    return "changed", ("The SSS term changed the edit: "
                       + (", ".join(scores) if scores else "no score moved")
                       + f"; the top-1 prediction differs on {flips} of {len(paired)} probes"
                       + (f"; cos(ΔW A, ΔW B) = {cosine:.4f}." if cosine is not None else ".")), ""


def pair_frame(a: analysis.EditRun, b: analysis.EditRun) -> pd.DataFrame:
    """A and B's four scores, one row each, and B − A."""
    ra = {"run": "A", **{m: a.result.metrics.get(m, math.nan) for m in SCORES}}
    rb = {"run": "B", **{m: b.result.metrics.get(m, math.nan) for m in SCORES}}
    return pd.DataFrame([ra, rb, {"run": "B − A", **{m: rb[m] - ra[m] for m in SCORES}}])


def pair_plain(kind: str, a: analysis.EditRun, b: analysis.EditRun, main_kept: str = "") -> str:
    """What the SSS term did on this pair to the damage the claim is about, in plain words, whatever the sign, in
    step 2's counts (``question_counts``) as "A x, B y" or "x in A and B" (A without the SSS term, B with it): no
    answer or score changed (the same or alike edits), or the other facts kept, against the claim by the paper's
    locality (named beside the count whenever it moved, so the verdict never rests on a number not shown). What else
    moved follows it on screen (``pair_more``). ``main_kept``: step 2's count, said beside A's when it differs."""
    if kind != "changed":
        return (f"The SSS term changed no answer or test score (other facts kept: {kept_count(a)} in A and B): "
                "no evidence either way.")
    la, lb = a.result.metrics["locality"], b.result.metrics["locality"]
    va, vb = kept_count(a), kept_count(b)
    claim = ("less damage, as the claim predicts" if lb > la else "more damage, against the claim" if lb < la
             else "no less damage, although the claim predicts less")
    return (f"Other facts kept: {f'{va} in A and B' if va == vb else f'A {va}, B {vb}'}"
            + (f" ({main_kept} in steps 2-4)" if main_kept and main_kept != va else "")
            + (f"; the paper's locality A {la:.2f}, B {lb:.2f}" if la != lb else "") + f", so {claim}.")


def pair_more(a: analysis.EditRun, b: analysis.EditRun) -> str:
    """What else moved between A and B, said after the damage verdict: each of step 2's other kinds whose count or
    score moved (a score where its count did not), and lambda_max against the new answer after the edit."""
    ma, mb = a.result.metrics, b.result.metrics
    count_b = {k: v for k, v, _, _ in question_counts(b)}
    out = []
    for k, va, _, name in question_counts(a):
        vb = count_b.get(k, MISSING)
        if name == "locality":
            continue
        if va != vb:
            out.append(f"{k}: A {va}, B {vb}.")
        elif ma[name] != mb[name]:
            moved = "rose" if mb[name] > ma[name] else "fell"
            out.append(f"{k}: {va} in A and B, but the paper's partial-credit score {moved} "
                       f"(A {ma[name]:.2f}, B {mb[name]:.2f}).")
    xa, xb = a.result.lambda_max_after, b.result.lambda_max_after
    sparse = (" (less sparse: the opposite of the SSS term's aim)" if xb > xa else
              " (sparser, as the SSS term aims)" if xb < xa else "")
    return " ".join(out + [f"λ_max for the new answer {fold(xa, xb)} from A to B{sparse}."])


def kept_count(run: analysis.EditRun) -> str:
    """Step 2's count of the other facts that kept their answer ("3 of 5"; ``MISSING`` without such questions)."""
    return next((v for k, v, _, _ in question_counts(run) if k == "Other facts"), MISSING)


def pair_panel(pair: StoryPair, runs: tuple[analysis.EditRun, analysis.EditRun], key: str, main_kept: str) -> str:
    """One pair of step 5: A (without the SSS term) and B (with it) in plain words, the pair's note, the damage
    verdict and what else moved (``pair_more``); the measured verdict, scores, exact lambda_max and settings in
    the pair's detail, and a button that opens the pair in Compare. Returns the verdict's kind."""
    a, b = runs
    note = pair.note.format(ratio=LOOSE_BOX / editor_config(MAIN_EDITOR).norm_constraint)
    st.markdown(f"#### {pair.title}" + (f"\n\n{note}" if note else ""))
    kind, sentence, reason = pair_verdict(a, b)
    verdict = pair_plain(kind, a, b, main_kept)
    # whatever else the SSS term changed stays on screen, whatever its sign (it may be evidence against the claim)
    {"same": st.success, "alike": st.info, "changed": st.warning}[kind](
        verdict + (" " + pair_more(a, b) if kind == "changed" else ""))
    with st.expander("More detail"):
        st.markdown(f"A: {a.editor}{records.caption_settings(a.record)}. B: {b.editor}, C = "
                    f"{fmt_number(shown_c(b.editor, b.c), 'g')}: {EDITORS[b.editor].description}.")
        st.markdown(sentence)
        if reason:
            st.markdown(reason)
        show_frame(pair_frame(a, b), key=f"{key}-scores", formats={m: ".2f" for m in SCORES},
                   column_config={m: st.column_config.Column(help=METRIC_HELP[m]) for m in SCORES})
        st.caption(f"λ_max after (new target): A {fmt_lambda(a.result.lambda_max_after)}, B "
                   f"{fmt_lambda(b.result.lambda_max_after)} ({LAMBDA_NEW_HELP}).")
        open_button("Open this pair in Compare", "app/views/compare.py", runs, f"{key}-open")
    return kind


def conclusion(story: Story, kinds: list[str]) -> str:
    """The story's last words, in one plain line: whether the SSS term reduced the damage to other facts on this
    fact, from the pairs' measured locality (no change where the verdict is same/alike), whatever the sign."""
    better = worse = False
    for (a, b), kind in zip(story.pairs, kinds):
        if kind == "changed":
            la, lb = a.result.metrics["locality"], b.result.metrics["locality"]
            better, worse = better or lb > la, worse or lb < la
    verdict = ("the SSS term spoilt fewer other answers, as the paper claims" if better and not worse else
               "the SSS term spoilt more other answers, against the paper's claim" if worse and not better else
               "the SSS term helped in one setting and hurt in another" if better else
               "the SSS term did not reduce the damage")
    return f"**So on this fact {verdict}.** One fact is one example; the claim is about many edits."


def sss_step(story: Story) -> list[str]:
    """Step 5: each ``PAIRS`` entry side by side, in plain words, then the conclusion against the claim and links
    to the pages that test it over many edits. Returns the pairs' verdict kinds."""
    st.markdown("**A: without the SSS term. B: with it.**")
    cols = st.columns(len(PAIRS))
    kinds = []
    for i, (col, pair, runs) in enumerate(zip(cols, PAIRS, story.pairs)):
        with col:
            kinds.append(pair_panel(pair, runs, key=f"story-pair{i}", main_kept=kept_count(story.main)))
    st.markdown(conclusion(story, kinds))
    links = st.columns(3)
    links[0].page_link("app/views/about.py", label="About: what SSS did over many edits", icon=":material/school:")
    links[1].page_link("app/views/hypothesis.py", label="Hypothesis: test the claim yourself",
                       icon=":material/query_stats:")
    links[2].page_link("app/views/compare.py", label="Compare: any two edits side by side",
                       icon=":material/compare_arrows:")
    return kinds

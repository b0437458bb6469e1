"""The Class story's panels: the paper's story told in five steps over one world fact, each step one screen
with one thing on it and one line of help per number (the Edit page's ``METRIC_HELP``, ``LAMBDA_NEW_HELP`` and
``P_HELP``, the Projection panel's ``COLOUR_BY``; ``OWN_LAMBDA_HELP`` for lambda_max against a sentence's own answer).

Every run is an ordinary run of the app (``analysis.analyse_edit`` with the Edit page's background
sentences, so the same run record as the Edit page makes), and "Open in the Edit view" / "Open in Compare"
replay exactly those records there (``state.open_records``), so those views show the same numbers.
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
from app.panels.common import cached_projection, fmt_lambda, fmt_number, show_frame, shown_c
from app.panels.compare import delta_cosine_of, paired_probe_frame, same_edit_text, same_scores_text
from app.panels.edit import LAMBDA_NEW_HELP, METRIC_HELP, P_HELP, lambda_caption, probe_table, salience_panel
from app.panels.projection import COLOUR_BY, axis_titles, hover_texts
from app.same_edits import SCORES, reason_for
from sss_core import analysis
from sss_core.editors import EDITORS, editor_config
from sss_core.types import EditCase

STEPS = ("1. The fact", "2. The edit", "3. What λ_max measures", "4. Where the neighbours went",
         "5. What SSS changed")
MAIN_EDITOR = "ft-l+sss"  # the app's default editor, at its default C (0.9, the paper's)
LOOSE = "ft-l+sss-loose-sum"
LOOSE_BOX = editor_config(LOOSE).norm_constraint


@dataclass(frozen=True)
class StoryPair:
    """Two edits of the story's fact that differ only by the SSS term: ``without`` (editor, settings changed
    from its defaults) and ``with_sss``; ``title`` names the pair on screen."""

    title: str
    without: tuple[str, dict[str, Any]]
    with_sss: tuple[str, dict[str, Any]]


PAIRS = (
    StoryPair("Default settings: ft-l vs ft-l+sss", ("ft-l", {}), (MAIN_EDITOR, {})),
    # the loose preset against FT-L in the same ±LOOSE_BOX box: the difference is the SSS term's own
    # (docs/editors.md: the looser box alone changes FT-L's locality)
    StoryPair(f"Looser box: ft-l (box ±{LOOSE_BOX:g}) vs {LOOSE}", ("ft-l", {"norm_constraint": LOOSE_BOX}),
              (LOOSE, {})),
)


@dataclass(frozen=True)
class Story:
    """The story's runs of one fact: the edit told in steps 1-4 and, per ``PAIRS`` entry, (without, with SSS)."""

    case_id: str
    main: analysis.EditRun
    pairs: tuple[tuple[analysis.EditRun, analysis.EditRun], ...]
    seconds: float
    projections: dict = field(default_factory=dict, compare=False)  # (run_id, method, pooling) -> Projection


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


def run_story(lm, case: EditCase) -> Story | None:
    """Run the story's edits of ``case`` (``plan``) in one turn for the shared model; None after showing why
    when one fails (the model is restored either way)."""
    background = resources.background_prompts()

    def work(progress) -> Story:
        runs = []
        for editor, changed in plan():
            progress(f"Editing with {edit_words(editor, changed)}...")
            runs.append(analysis.analyse_edit(lm, editor, _overrides(editor, changed), case, background))
        by_plan = dict(zip((repr(e) for e in plan()), runs))
        pairs = tuple((by_plan[repr(p.without)], by_plan[repr(p.with_sss)]) for p in PAIRS)
        return Story(case.request.case_id, runs[0], pairs, sum(r.seconds_total for r in runs))

    return run_with_status(lm.model, f"Running the story's {len(plan())} edits...",
                           f"the class story, {case.request.prompt!r}", work,
                           lambda s: f"Done: the story's {len(plan())} edits ran in {s.seconds:.1f}s", None,
                           "The story's edits failed")


def _open(first, second=None) -> None:
    """Button callback: show the record(s) in the Edit/Compare forms and have that view replay them."""
    records.show_in_widgets(first)
    if second is not None:
        records.show_in_widgets(first, "cmp_editor_a", "cmp_c_a", with_request=False)
        records.show_in_widgets(second, "cmp_editor_b", "cmp_c_b", with_request=False)
    state.open_records(first, second)


def open_button(label: str, page: str, runs: tuple, key: str) -> None:
    """A button that opens ``runs`` (one for the Edit view, two for Compare) on ``page``, replaying their records."""
    recs = [r.record for r in runs]
    if any(r is None for r in recs):
        return
    if st.button(label, key=key, icon=":material/open_in_new:", on_click=_open, args=tuple(recs)):
        st.switch_page(page)


def rewrite_row(run: analysis.EditRun) -> analysis.ProbeRow:
    """The edit prompt's own row of the probe table."""
    return next(r for r in run.rows if r.group == "rewrite")


def fact_step(run: analysis.EditRun) -> None:
    """Step 1: what the unedited model believes now, read from the edit prompt's row."""
    r, row = run.case.request, rewrite_row(run)
    model = "The shipped model" if resources.is_shipped_model(run.model_name) else f"The model {run.model_name}"
    st.markdown(f"{model} is asked to complete *“{r.prompt}”*. In its world the answer is "
                f"**{r.ground_truth}**; its most likely next token now is **“{row.top1_before.strip()}”**.")
    cols = st.columns(3)
    cols[0].metric("top-1 now", row.top1_before.strip(), help="The unedited model's most likely next token")
    cols[1].metric(f"P({r.ground_truth}) now", fmt_number(row.p_old_before, ".3f"),
                   help=P_HELP)
    cols[2].metric(f"P({r.target_new}) now", fmt_number(row.p_new_before, ".3g"),
                   help="The new target's probability before the edit: what the edit has to raise")
    st.caption("The shipped model is a small GPT-2 trained on this project's generated world of facts: it knows "
               "that world only, so every fact here is one of its own.")


def edit_step(run: analysis.EditRun) -> None:
    """Step 2: the request, the editor, the four scores, and each probe before and after."""
    r = run.case.request
    st.markdown(f"We ask: *“{r.prompt}”* → **{r.target_new}** (was {r.ground_truth}), with "
                f"**{run.editor}** at C = {fmt_number(shown_c(run.editor, run.c), 'g')}: "
                f"{EDITORS[run.editor].description}.")
    cols = st.columns(4)
    for col, name in zip(cols, SCORES):
        col.metric(name, fmt_number(run.result.metrics.get(name, math.nan), ".2f"), help=METRIC_HELP[name])
    probe_table(run, key="story-probes", compact=True)
    open_button("Open this edit in the Edit view", "app/views/edit.py", (run,), "story-open-edit")


def lambda_step(story: Story) -> None:
    """Step 3: lambda_max of the edit prompt against the NEW target only (the one definition on this screen),
    each token's share of it, and what it does not measure: plain FT-L's lambda_max falls as well."""
    run, plain = story.main, story.pairs[0][0]
    st.markdown("**On this screen λ_max is the edit prompt's, against the new target** (paper Eq. 9 with y_e = "
                f"“{run.case.request.target_new}”). Step 4 uses another λ_max.")
    cols = st.columns(2)
    cols[0].metric("λ_max before (new target)", fmt_lambda(run.result.lambda_max_before), help=LAMBDA_NEW_HELP)
    cols[1].metric("λ_max after (new target)", fmt_lambda(run.result.lambda_max_after), help=LAMBDA_NEW_HELP)
    salience_panel(run)
    st.markdown("**What it does not measure.** " + lambda_caption(run))
    st.markdown(f"Measured here: {plain.editor}, the same edit without the SSS term, takes it from "
                f"{fmt_lambda(plain.result.lambda_max_before)} to {fmt_lambda(plain.result.lambda_max_after)}; "
                f"{run.editor} from {fmt_lambda(run.result.lambda_max_before)} to "
                f"{fmt_lambda(run.result.lambda_max_after)}.")


OWN_LAMBDA_HELP = ("λ_max (paper Eq. 9) of the sentence against its own top answer before the edit, on the model "
                   "before and after: how sensitive what it already says is (small = sparse)")


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
    """How many of the probes the edit should leave alone changed their top answer, and which."""
    alone = [r for r in run.rows if r.wanted_flip is False]
    hit = [r for r in alone if r.flipped]
    if not alone:
        return "This fact has no probe the edit should leave alone."
    names = "; ".join(f"“{r.prompt}” {r.top1_before.strip()} → {r.top1_after.strip()}" for r in hit)
    return (f"{len(hit)} of the {len(alone)} probes the edit should leave alone changed their top answer"
            + (f": {names}." if hit else "."))


def neighbours_step(story: Story) -> None:
    """Step 4: the sentences around the edit before and after (PCA), and a table of where each probe went, with
    lambda_max against each sentence's OWN answer (the one definition on this screen)."""
    run = story.main
    st.markdown("**On this screen λ_max is each sentence's own, against its own top answer before the edit** "
                "(not the new target, as in step 3): it asks how easily what the sentence already says could be "
                "disturbed.")
    pooling = run.knn.pooling if run.knn.pooling in run.embeddings else next(iter(run.embeddings))
    emb = run.embeddings[pooling]
    proj = cached_projection(story.projections, (run.run_id, "pca", pooling), emb.before, emb.after, "pca", "")
    if proj is not None:
        fig = figures.projection_figure(proj.before, proj.after, emb.groups, hover_texts(emb),
                                        labels=analysis.GROUP_LABELS, height=460, axis_titles=axis_titles(proj))
        st.plotly_chart(fig, key=f"story-proj-{run.run_id}", width="stretch")
        st.caption("PCA of the last hidden states: hollow before the edit, filled after, an arrow from each "
                   "before to its after; grey points are other facts of the world.")
    st.markdown(neighbour_sentence(run))
    df = neighbour_frame(run)
    show_frame(df, key=f"story-neigh-{run.run_id}", formats={
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


def pair_panel(pair: StoryPair, runs: tuple[analysis.EditRun, analysis.EditRun], key: str) -> str:
    """One pair of step 5: A (without the SSS term) and B (with it), the verdict, the scores, and a button that
    opens the pair in Compare. Returns the verdict's kind."""
    a, b = runs
    st.markdown(f"#### {pair.title}")
    st.caption(f"A: {a.editor}{records.caption_settings(a.record)}. B: {b.editor}, C = "
               f"{fmt_number(shown_c(b.editor, b.c), 'g')}: {EDITORS[b.editor].description}.")
    kind, sentence, reason = pair_verdict(a, b)
    {"same": st.success, "alike": st.info, "changed": st.warning}[kind](sentence)
    if reason:
        with st.expander("Why the SSS term changes nothing here (measured)"):
            st.markdown(reason)
    df = pair_frame(a, b)
    show_frame(df, key=f"{key}-scores", formats={m: ".2f" for m in SCORES},
               column_config={m: st.column_config.Column(help=METRIC_HELP[m]) for m in SCORES})
    st.caption(f"λ_max after (new target): A {fmt_lambda(a.result.lambda_max_after)}, B "
               f"{fmt_lambda(b.result.lambda_max_after)} ({LAMBDA_NEW_HELP}).")
    open_button("Open this pair in Compare", "app/views/compare.py", runs, f"{key}-open")
    return kind


def sss_step(story: Story) -> None:
    """Step 5: each ``PAIRS`` entry side by side: what the SSS term changed in the edit, and what it did not."""
    st.markdown("The same fact edited twice per pair, A without the SSS term and B with it, every other setting "
                "equal: the difference is the SSS term's own.")
    cols = st.columns(len(PAIRS))
    for i, (col, pair, runs) in enumerate(zip(cols, PAIRS, story.pairs)):
        with col:
            pair_panel(pair, runs, key=f"story-pair{i}")
    st.caption("One fact tells one story; over hundreds of world edits, the About page's 'What SSS did on the "
               "shipped model (measured)' has the paired effects, and the Hypothesis view tests the paper's claim.")

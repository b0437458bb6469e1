"""Issue 24.6: retention counts only the edits still meant to hold. An earlier edit whose fact a later
edit re-edits (same prompt, or same subject and relation) is superseded and leaves the denominator,
in the Sequential view's steps (``analysis.sequential_step``) and in the bench's sequential runner's
final scores (``runners.sequential_edits``)."""

from __future__ import annotations

import math

import pytest
import torch

from sss_core import analysis
from sss_core.editors import make_editor
from sss_core.errors import EditFailed
from sss_core.evaluation.presets import case_for_request
from sss_core.evaluation.runners import Fact, sequential_edits, superseded_by
from sss_core.types import LOCALITY_GROUPS, EditCase, EditRequest, Probe

PROMPT = "The capital of France is"
NOTE_SUPERSEDED = ("retention over the 1 edit still meant to hold; 1 superseded (a later edit re-edited the "
                   "same fact: same prompt, or same subject and relation) and left out")


def _case(lm, target: str, prompt: str = PROMPT, subject: str = "France", case_id: str | None = None) -> EditCase:
    case = case_for_request(EditRequest(prompt, target, subject=subject), lm=lm)
    if case_id is None:
        return case
    return EditCase(EditRequest(prompt, target, subject=subject, case_id=case_id), case.probes, case.relation)


def test_superseded_by_same_prompt_or_same_subject_and_relation():
    facts = [Fact(PROMPT, "France", "capital"),  # 0: re-edited by 2 (same subject and relation)
             Fact("The capital of Spain is", "Spain", "capital"),  # 1: never re-edited
             Fact("France's capital city is", "France", "capital"),  # 2: re-edited by 4 (same prompt)
             Fact("France's language is", "France", None),  # 3: its relation is unknown: only its prompt counts
             Fact(" France's capital city is ", None, None),  # 4: the last edit of its fact
             Fact("The official language of France is", "France", "language")]  # 5: another relation
    assert superseded_by(facts) == [2, None, 4, None, None, None]
    assert superseded_by([]) == []


@pytest.mark.parametrize("editor", ["ft-l", "rome"])
def test_sequential_retention_leaves_a_superseded_edit_out(default_lm, editor):
    """France -> Rome, then France -> Berlin: Rome is replaced, not forgotten. Before the fix retention
    after the second edit was 0.75 (FT-L) and 0.50 (ROME): Rome was counted as an edit that no longer holds."""
    base = analysis.sequential_baseline(default_lm, [Probe("The capital of Spain is", "Madrid", "neighbour")])
    saved = {k: v.clone() for k, v in default_lm.model.state_dict().items()}
    first = analysis.sequential_step(default_lm, [], base, editor, {}, _case(default_lm, "Rome"))
    second = analysis.sequential_step(default_lm, [first], base, editor, {}, _case(default_lm, "Berlin"))
    assert all(torch.equal(v, saved[k]) for k, v in default_lm.model.state_dict().items())
    assert first.relation == second.relation == "capital"
    assert (first.retained, first.superseded, first.retention) == (1, 0, 1.0)
    assert second.metrics["reliability"] == 1.0
    assert (second.retained, second.superseded) == (1, 1)
    assert second.retention == 1.0  # Berlin, the one edit still meant to hold, is retained
    assert analysis.retention_note(first) == "retention over the 1 edit so far; none superseded"
    assert analysis.retention_note(second) == NOTE_SUPERSEDED
    row = second.as_dict()
    assert row["retention (edits still meant to hold)"] == 1.0 and row["retention counts"] == NOTE_SUPERSEDED


def test_sequential_retention_counts_every_edit_of_distinct_facts(default_lm):
    """Two different facts: neither supersedes the other, both are counted."""
    base = analysis.sequential_baseline(default_lm, [Probe("The capital of Spain is", "Madrid", "neighbour")])
    first = analysis.sequential_step(default_lm, [], base, "ft-l", {}, _case(default_lm, "Rome"))
    other = _case(default_lm, "Berlin", "The capital of Spain is", "Spain")
    second = analysis.sequential_step(default_lm, [first], base, "ft-l", {}, other)
    assert (second.retained, second.superseded) == (2, 0)
    assert analysis.retention_note(second) == "retention over the 2 edits so far; none superseded"


class _FailOn:
    """FT-L, except that the edit of one case id fails (as a NaN loss would)."""

    name = "ft-l"

    def __init__(self, case_id: str | None):
        self.inner, self.case_id = make_editor("ft-l"), case_id

    def edit(self, model, tok, requests):
        if requests[0].case_id == self.case_id:
            raise EditFailed("the loss became nan; the edit was abandoned")
        return self.inner.edit(model, tok, requests)


def test_bench_final_scores_leave_a_superseded_edit_out(default_lm):
    """The bench's sequential@n/final re-scores every case after all n edits: a case that a later case of
    the run re-edited keeps its raw predictions and locality, its own-target metrics are NaN (null in the
    results file, so the final table's means leave it out), and it names the case that replaced it."""
    cases = [_case(default_lm, "Rome", case_id="rome"), _case(default_lm, "Berlin", case_id="berlin")]
    saved = {k: v.clone() for k, v in default_lm.model.state_dict().items()}
    outs = list(sequential_edits(default_lm.model, default_lm.tok, _FailOn(None), cases, seed=0, with_lambda=False))
    assert all(torch.equal(v, saved[k]) for k, v in default_lm.model.state_dict().items())
    final = {o.key.case_id: o for o in outs if o.key.mode.endswith("/final")}
    rome, berlin = final["rome"].result, final["berlin"].result
    assert rome.extra["superseded_by"] == "berlin" and "superseded_by" not in berlin.extra
    assert math.isnan(rome.metrics["reliability"]) and math.isnan(rome.metrics["generality"])
    kept = [p.score for p in rome.probes if p.probe.group in LOCALITY_GROUPS]
    assert kept and rome.metrics["locality"] == pytest.approx(sum(kept) / len(kept))  # locality still scored
    assert rome.probes and rome.probes[0].probe.group == "rewrite"  # the raw predictions are kept
    assert berlin.metrics["reliability"] == 1.0
    row = final["rome"].to_json()
    assert row["metrics"]["reliability"] is None and row["extra"]["superseded_by"] == "berlin"
    right_after = {o.key.case_id: o for o in outs if not o.key.mode.endswith("/final")}
    assert right_after["rome"].result.metrics["reliability"] == 1.0  # scored right after its own edit: untouched


def test_bench_a_failed_later_edit_supersedes_nothing(default_lm):
    """A later edit of the same fact that failed was never applied: the earlier edit still holds and is scored."""
    cases = [_case(default_lm, "Rome", case_id="rome"), _case(default_lm, "Berlin", case_id="berlin")]
    outs = list(sequential_edits(default_lm.model, default_lm.tok, _FailOn("berlin"), cases, seed=0,
                                 with_lambda=False))
    final = {o.key.case_id: o for o in outs if o.key.mode.endswith("/final")}
    assert "superseded_by" not in final["rome"].result.extra
    assert final["rome"].result.metrics["reliability"] == 1.0

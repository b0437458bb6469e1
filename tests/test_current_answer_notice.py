"""Issue 24.8: an edit to what the model already says. France -> Paris is the shipped model's own answer:
the edit is not refused and not skipped; the warning before it no longer claims it "changes little", and
after it ``analysis.current_answer_notice`` says what the editor did, with the run's own numbers."""

from __future__ import annotations

import math

from sss_core import analysis
from sss_core.analysis import analyse_edit, current_answer_notice
from sss_core.evaluation.metrics import request_warnings
from sss_core.evaluation.presets import case_for_request
from sss_core.types import EditRequest

PARIS = EditRequest("The capital of France is", "Paris", subject="France")
WARNING = ("the model already predicts 'Paris' for this prompt: it is already the top answer, and reliability is "
           "1.0 before editing. The edit still runs, and the editor may still write an update that changes other "
           "answers; the result reports the update's norm and how many probes changed their top-1 answer")
HEAD = "'Paris' was already the model's top answer to 'The capital of France is' before the edit"


def _run(lm, editor: str, request: EditRequest) -> analysis.EditRun:
    return analyse_edit(lm, editor, {}, case_for_request(request, lm=lm))


def test_the_warning_before_the_edit_does_not_promise_little_change(default_lm):
    assert request_warnings(default_lm.model, default_lm.tok, PARIS) == [WARNING]


def test_rome_on_the_current_answer_still_writes_an_update_and_says_so(default_lm):
    """ROME writes a rank-one update even though the target is already the answer; the notice gives its norm
    and the probes whose top-1 answer it changed, read from the run itself."""
    run = _run(default_lm, "rome", PARIS)
    assert run.warnings == (WARNING,)
    assert run.result.metrics["reliability"] == 1.0
    (param, norm), = run.delta_norms.items()
    flipped = [r for r in run.rows if r.flipped]
    assert norm > 1.0 and flipped  # a real update with visible side effects (10.74; 2 of 13 on the shipped model)
    assert {r.group for r in flipped} == {"one_hop"}
    assert current_answer_notice(run) == (
        f"{HEAD}; rome still wrote an update of norm {norm:.2f} ({param}), and {len(flipped)} of {len(run.rows)} "
        f"probes changed their top-1 answer (one-hop: {len(flipped)}).")


def test_ftl_on_the_current_answer_writes_nothing_and_says_so(default_lm):
    """FT-L's loss is already low: it changes no weight, and the notice says that, with no probe changed."""
    run = _run(default_lm, "ft-l", PARIS)
    assert run.warnings == (WARNING,)
    assert list(run.delta_norms.values()) == [0.0]
    assert not any(r.flipped for r in run.rows)
    assert current_answer_notice(run) == (
        f"{HEAD}; ft-l wrote no update (norm 0.00), and 0 of {len(run.rows)} probes changed their top-1 answer.")


def test_a_real_edit_gets_no_notice(default_lm):
    run = _run(default_lm, "rome", EditRequest("The capital of France is", "Rome", subject="France"))
    assert current_answer_notice(run) is None


def test_the_notice_reads_the_runs_numbers_for_several_weights_and_memory_edits(default_lm):
    """Several edited weights: their norm together (the Frobenius norm of the whole update); a memory editor
    (no weight deltas): said as such."""
    import dataclasses
    run = _run(default_lm, "rome", PARIS)
    (param, norm), = run.delta_norms.items()
    two = dataclasses.replace(run, delta_norms={param: norm, "other.weight": 2.0})
    flipped = sum(r.flipped for r in run.rows)
    assert current_answer_notice(two) == (
        f"{HEAD}; rome still wrote an update of norm {math.hypot(norm, 2.0):.2f} (2 weights together), and "
        f"{flipped} of {len(run.rows)} probes changed their top-1 answer (one-hop: {flipped}).")
    memory = dataclasses.replace(run, editor="serac", delta_norms=None)
    assert current_answer_notice(memory) == (
        f"{HEAD}; serac still added the edit to its memory (no weight changed), and {flipped} of {len(run.rows)} "
        f"probes changed their top-1 answer (one-hop: {flipped}).")

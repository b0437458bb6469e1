"""Runners: single edits revert, sequential edits accumulate, are scored as they go and revert exactly;
batches are written at once and scored with the whole batch applied."""

from __future__ import annotations

import math

import torch

from sss_core.editors import make_editor
from sss_core.editors.base import EditBase, WeightEdit
from sss_core.errors import EditFailed
from sss_core.evaluation.datasets import world_split_cases
from sss_core.evaluation.metrics import probes_of, rows_per_forward
from sss_core.evaluation.runners import RunKey, batch_edits, sequential_edits, single_edits


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_identical(model, saved):
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), f"{k} changed"


class ShiftEditor:
    """Adds 1 to one bias per edit; records what it saw, to prove edits accumulate. Fails on request."""

    name = "shift"

    def __init__(self, fail_on: set[str] = frozenset()):
        self.seen: list[float] = []
        self.fail_on = fail_on

    def edit(self, model, tok, requests):
        if requests[0].case_id in self.fail_on:
            raise EditFailed("the loss became nan; the edit was abandoned")
        param = dict(model.named_parameters())["transformer.ln_f.bias"]
        self.seen.append(param[0].item())
        return WeightEdit(model, {"transformer.ln_f.bias": param.detach() + 1.0},
                          {"transformer.ln_f.bias": param.detach().clone()})


class MemoryEditor:
    """Like SERAC: edits go to a memory of the base model; the edit's model is a wrapper reading it."""

    name = "memory"

    def __init__(self):
        self.memory: list = []
        self.edited: list = []  # the model each edit was asked for
        self.sizes: list[int] = []  # memory size at each forward of the wrapper

    def edit(self, model, tok, requests):
        self.edited.append(model)
        editor = self

        class Wrapper(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.base, self.config = model, model.config

            def get_input_embeddings(self):
                return self.base.get_input_embeddings()

            def forward(self, **kw):
                editor.sizes.append(len(editor.memory))
                return self.base(**kw)

        class MemoryEdit(EditBase):
            def _apply(self):
                editor.memory.append(requests[0])

            def _revert(self):
                editor.memory.remove(requests[0])
        return MemoryEdit(Wrapper())


def test_sequential_memory_editor_gets_the_base_model_and_accumulates(bench_lm):
    cases = world_split_cases("test", seed=0)[:3]
    editor = MemoryEditor()
    outs = list(sequential_edits(bench_lm.model, bench_lm.tok, editor, cases, seed=0, with_lambda=False))
    assert all(m is bench_lm.model for m in editor.edited)
    # scored right after each edit, then all three once more; a case's probes take ceil(n / rows) forwards
    forwards = [math.ceil(len(probes_of(c)) / rows_per_forward(bench_lm.model)) for c in cases]
    assert editor.sizes == [1] * forwards[0] + [2] * forwards[1] + [3] * (forwards[2] + sum(forwards))
    assert editor.memory == [] and len(outs) == 6


def test_single_edits_revert_and_keep_raw_predictions(bench_lm):
    cases = world_split_cases("test", seed=0)[:3]
    saved = snapshot(bench_lm.model)
    outs = list(single_edits(bench_lm.model, bench_lm.tok, make_editor("ft-l", steps=3), cases, seed=0))
    assert_identical(bench_lm.model, saved)
    assert [o.key for o in outs] == [RunKey("ft-l", 0, c.request.case_id, "single") for c in cases]
    row = outs[0].to_json()
    assert row["metrics"]["reliability"] is not None and row["lambda_max_before"] > 0
    probe = row["probes"][0]
    assert probe["group"] == "rewrite" and len(probe["pre"]) == len(probe["post"]) == len(probe["target"]) > 0
    skip = {outs[1].key}
    again = list(single_edits(bench_lm.model, bench_lm.tok, make_editor("ft-l", steps=3), cases, seed=0,
                              skip=skip.__contains__))
    assert [o.key for o in again] == [outs[0].key, outs[2].key]
    assert again[0].result.metrics == outs[0].result.metrics  # same seed, same case: same result


def test_sequential_accumulates_scores_each_and_reverts_exactly(bench_lm):
    cases = world_split_cases("test", seed=0)[:4]
    saved = snapshot(bench_lm.model)
    base = bench_lm.model.transformer.ln_f.bias[0].item()
    editor = ShiftEditor()
    outs = list(sequential_edits(bench_lm.model, bench_lm.tok, editor, cases, seed=2, with_lambda=False))
    assert_identical(bench_lm.model, saved)
    assert editor.seen == [base, base + 1, base + 2, base + 3]  # edit k is made on top of edits 1..k-1
    modes = [o.key.mode for o in outs]
    assert modes == ["sequential@4"] * 4 + ["sequential@4/final"] * 4
    assert [o.position for o in outs] == [1, 2, 3, 4, 4, 4, 4, 4]
    # locality is measured against the original model: after 4 shifts the neighbours move more
    first_after, first_final = outs[0].result.metrics["locality"], outs[4].result.metrics["locality"]
    assert first_final <= first_after


def test_sequential_with_real_editor_and_failure(bench_lm):
    cases = world_split_cases("test", seed=1)[:3]
    saved = snapshot(bench_lm.model)
    editor = ShiftEditor(fail_on={cases[1].request.case_id})
    outs = list(sequential_edits(bench_lm.model, bench_lm.tok, editor, cases, seed=1, with_lambda=False))
    assert_identical(bench_lm.model, saved)
    assert outs[1].error.startswith("EditFailed") and outs[1].result is None
    assert len(editor.seen) == 2 and len(outs) == 6
    outs = list(sequential_edits(bench_lm.model, bench_lm.tok, make_editor("ft-l+sss", steps=3), cases, seed=1))
    assert_identical(bench_lm.model, saved)
    assert all(o.result is not None for o in outs)


def test_sequential_interrupted_midway_still_reverts(bench_lm):
    cases = world_split_cases("test", seed=0)[:5]
    saved = snapshot(bench_lm.model)
    run = sequential_edits(bench_lm.model, bench_lm.tok, ShiftEditor(), cases, seed=0, with_lambda=False)
    next(run), next(run)
    assert not torch.equal(bench_lm.model.transformer.ln_f.bias, saved["transformer.ln_f.bias"])
    run.close()  # what a KeyboardInterrupt in the consumer does
    assert_identical(bench_lm.model, saved)


def test_sequential_resume_yields_only_missing_keys(bench_lm):
    cases = world_split_cases("test", seed=0)[:3]
    first = list(sequential_edits(bench_lm.model, bench_lm.tok, ShiftEditor(), cases, seed=0, with_lambda=False))
    done = {o.key for o in first[:2]}
    editor = ShiftEditor()
    rest = list(sequential_edits(bench_lm.model, bench_lm.tok, editor, cases, seed=0, skip=done.__contains__,
                                 with_lambda=False))
    assert [o.key for o in rest] == [o.key for o in first[2:]]
    assert len(editor.seen) == 3  # the chunk was replayed whole
    assert [o.result.metrics for o in rest] == [o.result.metrics for o in first[2:]]
    every = {o.key for o in first}
    never = ShiftEditor()
    assert list(sequential_edits(bench_lm.model, bench_lm.tok, never, cases, 0, skip=every.__contains__)) == []
    assert never.seen == []


class BatchShiftEditor(ShiftEditor):
    """Adds 1 per request, all in one edit: scores then see the whole batch."""

    def __init__(self, fail: bool = False):
        super().__init__()
        self.batches: list[int] = []
        self.fail = fail

    def edit(self, model, tok, requests):
        if self.fail:
            raise EditFailed("the loss became nan; the edit was abandoned")
        self.batches.append(len(requests))
        param = dict(model.named_parameters())["transformer.ln_f.bias"]
        return WeightEdit(model, {"transformer.ln_f.bias": param.detach() + len(requests)},
                          {"transformer.ln_f.bias": param.detach().clone()})


def test_batch_writes_once_scores_every_case_with_all_applied_and_reverts(bench_lm):
    cases = world_split_cases("test", seed=0)[:4]
    saved = snapshot(bench_lm.model)
    editor = BatchShiftEditor()
    outs = list(batch_edits(bench_lm.model, bench_lm.tok, editor, cases, seed=0))
    assert_identical(bench_lm.model, saved)
    assert editor.batches == [4]
    assert [o.key for o in outs] == [RunKey("shift", 0, c.request.case_id, "batch@4") for c in cases]
    assert all(o.n == 4 and o.result.seconds >= 0 for o in outs)
    # every case is scored on the model with all four shifts: the same as the sequential run's final scores
    seq = list(sequential_edits(bench_lm.model, bench_lm.tok, ShiftEditor(), cases, seed=0, with_lambda=False))
    assert [o.result.metrics for o in outs] == [o.result.metrics for o in seq[4:]]
    done = {outs[0].key, outs[1].key}
    rest = list(batch_edits(bench_lm.model, bench_lm.tok, BatchShiftEditor(), cases, 0, skip=done.__contains__))
    assert [o.key for o in rest] == [o.key for o in outs[2:]]
    failed = list(batch_edits(bench_lm.model, bench_lm.tok, BatchShiftEditor(fail=True), cases, seed=0))
    assert len(failed) == 4 and all(o.error.startswith("EditFailed") and o.result is None for o in failed)
    assert_identical(bench_lm.model, saved)


def test_batch_interrupted_midway_still_reverts(bench_lm):
    cases = world_split_cases("test", seed=0)[:3]
    saved = snapshot(bench_lm.model)
    run = batch_edits(bench_lm.model, bench_lm.tok, BatchShiftEditor(), cases, seed=0)
    next(run)
    assert not torch.equal(bench_lm.model.transformer.ln_f.bias, saved["transformer.ln_f.bias"])
    run.close()
    assert_identical(bench_lm.model, saved)

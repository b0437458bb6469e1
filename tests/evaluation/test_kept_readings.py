"""The unedited model's side of a score is read once per group of cases and kept while the weights are the same."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sss_core.editors import make_editor
from sss_core.evaluation import metrics
from sss_core.evaluation.datasets import load_cases
from sss_core.evaluation.runners import single_edits
from sss_core.editors.per_edit import RowWeights
from sss_core.kept_readings import KeptReadings, keepable, weights_key
from sss_core.locks import LOCK_OWNER


@pytest.fixture()
def counted(default_lm):
    """The shipped model with a counter of its forward passes (a real hook, removed after the test)."""
    calls = []
    handle = default_lm.model.register_forward_hook(lambda *_: calls.append(1))
    metrics.forget_unedited_readings()
    yield default_lm, calls
    handle.remove()
    metrics.forget_unedited_readings()


def _run(lm, editor, cases, batch):
    return list(single_edits(lm.model, lm.tok, editor, cases, seed=0, edit_batch=batch))


def _facts(outcomes):
    return [(o.result.metrics, o.result.lambda_max_before, o.result.lambda_max_after,
             [(p.pre_tokens, p.post_tokens) for p in o.result.probes]) for o in outcomes]


@pytest.mark.parametrize("batch", [1, 4])
def test_a_second_editor_on_the_same_cases_reads_the_unedited_model_no_more(counted, batch):
    lm, calls = counted
    cases = load_cases("world", 4, 0, "auto", 10**8, False)
    _run(lm, make_editor("ft-l"), cases, batch)  # reads and keeps the unedited side of each group
    second = make_editor("ft-l+sss")
    calls.clear()
    kept = _run(lm, second, cases, batch)
    with_kept = len(calls)
    metrics.forget_unedited_readings()
    calls.clear()
    fresh = _run(lm, second, cases, batch)
    # the unedited side: the probes in batches of 8 rows (per group), and lambda_max, one forward per group
    rows = [len(metrics.probes_of(c)) for c in cases]
    groups = [rows[i:i + batch] for i in range(0, len(rows), batch)]
    rows_per = metrics.rows_per_forward(lm.model)
    assert len(calls) - with_kept == sum(math.ceil(sum(g) / rows_per) + 1 for g in groups)
    assert _facts(kept) == _facts(fresh)  # the very numbers, bit for bit


def test_a_model_whose_weights_changed_is_read_again_and_its_reading_kept_apart(counted):
    lm, calls = counted
    cases = load_cases("world", 2, 0, "auto", 10**8, False)
    unedited = metrics.unedited_predictions(lm.model, lm.tok, cases)
    edit = make_editor("ft-l").edit(lm.model, lm.tok, [cases[0].request])
    with edit:
        calls.clear()
        edited = metrics.unedited_predictions(lm.model, lm.tok, cases)
        assert calls, "the edited model was not read"
        assert edited[0] != unedited[0]  # the rewrite probe: the edit's new answer
    calls.clear()
    assert metrics.unedited_predictions(lm.model, lm.tok, cases) == unedited
    assert not calls  # reverted bit for bit: the kept reading serves again
    with edit:
        assert metrics.unedited_predictions(lm.model, lm.tok, cases) == edited
    assert len(calls) == 0


def test_weights_key_follows_every_parameter_the_training_flag_and_the_dtype():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    key, bias = weights_key(model), model[1].bias.detach().clone()
    with torch.no_grad():
        model[1].bias[0] += 1.0
        assert weights_key(model) != key
        model[1].bias.copy_(bias)
    assert weights_key(model) == key
    model.train(False)
    assert weights_key(model)[0] == key[0] and weights_key(model) != key
    model.train(True)
    assert weights_key(model.double()) != key


def test_kept_readings_drop_the_least_recently_used_beyond_their_cost():
    model = nn.Linear(2, 2)
    kept = KeptReadings(max_cost=5)
    made = []

    def reading(name):
        return lambda: made.append(name) or name

    assert kept.read(model, "a", reading("a"), cost=2) == "a"
    kept.read(model, "b", reading("b"), cost=2)
    kept.read(model, "a", reading("a"), cost=2)  # kept: a is now the most recent
    kept.read(model, "c", reading("c"), cost=2)  # 6 > 5: b goes
    kept.read(model, "a", reading("a"), cost=2)
    kept.read(model, "b", reading("b"), cost=2)
    assert made == ["a", "b", "c", "b"]
    with pytest.raises(ZeroDivisionError):
        kept.read(model, "d", lambda: 1 / 0)
    kept.read(model, "d", reading("d"))  # a failed reading kept nothing
    assert made[-1] == "d"


def test_a_knn_reference_over_the_same_prompts_embeds_nothing_again(counted):
    from sss_core.embeddings import embed_prompts
    from sss_core.evaluation.hypothesis import KnnReference, reference_prompts

    lm, calls = counted
    prompts = reference_prompts("world", [])[:70]  # two batches of the reference's 64
    first = KnnReference(lm.model, lm.tok, prompts, k=2)
    # embedded a batch per hold of the lock: the bits of one call over every prompt
    assert torch.equal(first.embeddings, torch.from_numpy(embed_prompts(lm.model, lm.tok, prompts, "mean")))
    calls.clear()
    second = KnnReference(lm.model, lm.tok, prompts, k=2)
    assert not calls and second.embeddings is first.embeddings
    assert second.distances(["The capital of Italy is"]) == first.distances(["The capital of Italy is"])
    request = load_cases("world", 1, 0, "auto", 10**8, False)[0].request
    edit = make_editor("ft-l").edit(lm.model, lm.tok, [request])
    with edit:
        edited = KnnReference(lm.model, lm.tok, prompts, k=2)
    assert calls and not torch.equal(edited.embeddings, first.embeddings)


def test_a_reading_during_which_the_weights_changed_is_not_kept():
    model = nn.Linear(2, 2)
    kept, made = KeptReadings(max_cost=5), []

    def reading():
        made.append(1)
        with torch.no_grad():
            model.bias += 1.0  # as if another session's edit had been left applied meanwhile
        return len(made)

    assert kept.read(model, "k", reading) == 1
    assert kept.read(model, "k", lambda: "kept") == "kept"  # the first was not kept: read again, and kept
    assert kept.read(model, "k", reading) == "kept"


def test_readings_are_not_kept_while_a_module_answers_from_more_than_its_weights(default_lm):
    """Side-by-side edits replace modules' forward (RowWeights) and a SERAC-like wrapper answers from its memory:
    neither shows in weights_key, so nothing read then is kept."""
    model = default_lm.model
    name = "transformer.h.0.mlp.c_proj.weight"
    weight = dict(model.named_parameters())[name].detach()
    assert keepable(model)
    with RowWeights(model, {name: [weight + 1.0]}) as rows:
        rows.edit_of_row = [0]
        assert not keepable(model)
        kept = KeptReadings(max_cost=5)
        kept.read(model, "k", lambda: "while patched")
        assert kept.read(model, "k", lambda: "again") == "again"
    assert keepable(model)
    wrapper = nn.Linear(2, 2)
    setattr(wrapper, LOCK_OWNER, model)
    assert not keepable(wrapper)

import logging
import math
import re
import time

import pytest
import torch

from model_support import assert_bit_identical, state_copy
from sss_core.editors import make_editor
from sss_core.editors.ftl import FTL
from sss_core.errors import EditFailed, RequestError
from sss_core.evaluation.metrics import run_edit, teacher_forced, top_k
from sss_core.evaluation.presets import case_for_request
from sss_core.sss import lambda_max
from sss_core.text import encode_for
from sss_core.types import EditRequest

FRANCE = EditRequest("The capital of France is", "Rome", subject="France")


def test_ftl_edit_takes_effect_and_reverts_bit_exactly(default_lm):
    model, tok = default_lm.model, default_lm.tok
    saved = state_copy(model)
    edit = make_editor("ft-l").edit(model, tok, [FRANCE])
    assert_bit_identical(model, saved)  # computing an edit leaves the model as it was
    with edit:
        first_rome_token = tok.decode(tok(" Rome")["input_ids"][:1])
        assert top_k(model, tok, FRANCE.prompt, 1)[0][0] == first_rome_token
        pred = teacher_forced(model, tok, [FRANCE.prompt], ["Rome"])[0]
        assert pred.argmax_ids == pred.target_ids
    assert_bit_identical(model, saved)


def test_sss_term_changes_the_update_and_c_zero_is_plain_ftl(default_lm):
    model, tok = default_lm.model, default_lm.tok
    name = default_lm.spec.mlp_out_name(model, 0) + ".weight"
    plain = make_editor("ft-l", steps=5, early_stop_loss=0.0).edit(model, tok, [FRANCE]).new[name]
    c_zero = make_editor("ft-l+sss", sss_c=0.0, steps=5, early_stop_loss=0.0).edit(model, tok, [FRANCE]).new[name]
    with_sss = make_editor("ft-l+sss", sss_c=0.9, steps=5, early_stop_loss=0.0).edit(model, tok, [FRANCE]).new[name]
    assert torch.equal(plain, c_zero)
    assert not torch.equal(plain, with_sss)


def test_norm_constraint_bounds_every_weight(default_lm):
    eps = 1e-4
    edit = make_editor("ft-l", norm_constraint=eps, steps=3).edit(default_lm.model, default_lm.tok, [FRANCE])
    for name, new in edit.new.items():
        assert (new - edit.base[name]).abs().max() <= eps * (1 + 1e-3)


def test_sequential_edits_stack_and_revert_exactly(default_lm):
    model, tok = default_lm.model, default_lm.tok
    saved = state_copy(model)
    second = EditRequest("The capital of Japan is", "Lima", subject="Japan")
    editor = make_editor("ft-l")
    first_edit = editor.edit(model, tok, [FRANCE])
    with first_edit:
        second_edit = editor.edit(model, tok, [second])
        with second_edit:
            both = teacher_forced(model, tok, [FRANCE.prompt, second.prompt], ["Rome", "Lima"])
            assert all(p.argmax_ids == p.target_ids for p in both)
    assert_bit_identical(model, saved)


def test_run_edit_metrics_on_a_world_fact(default_lm):
    case = case_for_request(FRANCE)
    result = run_edit(default_lm.model, default_lm.tok, make_editor("ft-l+sss"), case)
    assert result.metrics["reliability"] == 1.0
    assert 0.0 <= result.metrics["locality"] <= 1.0
    assert not math.isnan(result.metrics["generality"])
    assert result.lambda_max_before > 0 and result.lambda_max_after > 0
    assert {p.probe.group for p in result.probes} >= {"rewrite", "paraphrase", "neighbour"}


@pytest.mark.parametrize("bad, message", [
    (dict(sss_c=1.5), r"^C must be in \[0, 1\], got 1.5$"), (dict(sss_c=float("nan")), r"^C must be in \[0, 1\], got nan$"),
    (dict(sss_c=-0.1), r"^C must be in \[0, 1\], got -0.1$"),
    (dict(lr=-1.0), r"^the learning rate must be a positive number, got -1.0$"),
    (dict(lr=0.0), r"^the learning rate must be a positive number, got 0.0$"),
    (dict(lr=float("inf")), r"^the learning rate must be a positive number, got inf$"),
    (dict(steps=0), r"^steps must be at least 1, got 0$"),
    (dict(norm_constraint=0.0), r"^norm_constraint must be positive or None, got 0.0$")])
def test_bad_settings_raise_clear_errors(bad, message):
    with pytest.raises(RequestError, match=message):
        make_editor("ft-l+sss", **bad)


def test_edge_settings_are_accepted():
    for ok in (dict(sss_c=0.0), dict(sss_c=1.0), dict(steps=1), dict(norm_constraint=None), dict(lr=1e-9)):
        make_editor("ft-l+sss", **ok)


def test_no_request_and_a_missing_layer_are_refused(default_lm):
    model, tok = default_lm.model, default_lm.tok
    with pytest.raises(RequestError, match="^no edit requests given$"):
        make_editor("ft-l").edit(model, tok, [])
    with pytest.raises(RequestError, match=r"^layer=99 does not exist: the model has \d+ blocks"):
        make_editor("ft-l", layer=99).edit(model, tok, [FRANCE])


def test_objective_target_and_prompt_last(default_lm):
    """'target' trains the mean NLL of every target token, 'prompt_last' (the authors' FT) only the first's:
    the first logged loss (before any update) is each, worked out here from the model's logits."""
    model, tok = default_lm.model, default_lm.tok
    request = EditRequest("The capital of France is", "Czech Republic", subject="France")
    batch = encode_for(model, tok, [request.prompt], [request.target_new])
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[0, :-1]
    predicted = batch.predict_mask[0].nonzero()[:, 0]  # positions whose logits predict a target token
    assert len(predicted) >= 2, "the test needs a target of several tokens"
    token_nll = torch.nn.functional.cross_entropy(logits[predicted], batch.input_ids[0, predicted + 1], reduction="none")
    losses = {}
    for objective in ("target", "prompt_last"):
        edit = make_editor("ft-l", objective=objective, steps=3, early_stop_loss=0.0).edit(model, tok, [request])
        losses[objective] = [h["loss"] for h in edit.info["history"]]
    assert losses["target"][0] == pytest.approx(token_nll.mean().item(), rel=1e-5)
    assert losses["prompt_last"][0] == pytest.approx(token_nll[0].item(), rel=1e-5)
    assert losses["prompt_last"][2] < losses["prompt_last"][0]  # and it trains that token


def test_history_logs_the_sss_term_as_lambda_max_before_the_first_step(default_lm, caplog):
    """Step 0's "sss" is lambda_max of the unedited model on the edit (mean or sum over tokens, as set);
    without SSS it is NaN. The edit's info counts the steps, names the layer, and the debug log says it."""
    model, tok = default_lm.model, default_lm.tok
    before = {r: lambda_max(model, tok, [FRANCE.prompt], [FRANCE.target_new], reduction=r).item()
              for r in ("mean", "sum")}
    assert before["sum"] > 1.5 * before["mean"]  # the two reductions are told apart
    for reduction in ("mean", "sum"):
        edit = make_editor("ft-l+sss", sss_reduction=reduction, steps=2, early_stop_loss=0.0).edit(
            model, tok, [FRANCE])
        assert edit.info["history"][0]["sss"] == pytest.approx(before[reduction], rel=1e-4)
    with caplog.at_level(logging.DEBUG, logger="sss_core.editors.ftl"):
        start = time.perf_counter()
        edit = make_editor("ft-l", steps=3, early_stop_loss=0.0, layer=-1).edit(model, tok, [FRANCE])
        elapsed = time.perf_counter() - start
    assert [math.isnan(h["sss"]) for h in edit.info["history"]] == [True] * 3
    assert (edit.info["steps"], edit.info["layer"]) == (3, default_lm.spec.n_layers(model) - 1)
    message = next(r.getMessage() for r in caplog.records if r.name == "sss_core.editors.ftl")
    name, steps, seconds = re.fullmatch(r"(.+): (\d+) steps in (\d+\.\d{3})s", message).groups()
    assert (name, steps) == ("ft-l", "3") and 0 < float(seconds) <= elapsed
    assert FTL().name == "ft-l"


def test_unknown_editor_and_empty_target():
    with pytest.raises(RequestError, match="unknown editor"):
        make_editor("nope")
    with pytest.raises(RequestError, match="target is empty"):
        EditRequest("The capital of France is", "  ").validate()


def test_nan_loss_abandons_edit_and_restores_model(default_lm):
    model, tok = default_lm.model, default_lm.tok
    saved = state_copy(model)
    with pytest.raises(EditFailed, match=r"^the loss became (nan|inf|-inf) at step [1-9]\d*; the edit was abandoned "
                                         r"and the model restored"):
        make_editor("ft-l", lr=1e30, norm_constraint=None, steps=5, early_stop_loss=0.0).edit(
            model, tok, [FRANCE])
    assert_bit_identical(model, saved)
    assert not any(p.requires_grad for p in model.parameters())


def test_ftl_works_on_every_family(tiny_lm):
    saved = state_copy(tiny_lm.model)
    edit = make_editor("ft-l+sss", lr=1e-2, norm_constraint=None, steps=30).edit(
        tiny_lm.model, tiny_lm.tok, [FRANCE])
    with edit:
        pred = teacher_forced(tiny_lm.model, tiny_lm.tok, [FRANCE.prompt], ["Rome"])[0]
    assert sum(a == b for a, b in zip(pred.argmax_ids, pred.target_ids)) >= 1
    assert_bit_identical(tiny_lm.model, saved)

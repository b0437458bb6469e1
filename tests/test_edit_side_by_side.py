"""Independent edits side by side (issue 27): each batch row reads its own edit, and the results of a
batch equal those of the edits made one at a time."""

import math

import pytest
import torch

from model_support import assert_bit_identical, state_copy
from sss_core.editors import make_editor
from sss_core.editors.base import WeightEdit
from sss_core.editors.per_edit import RowWeights, supports
from sss_core.errors import EditFailed, RequestError
from sss_core.evaluation.datasets import load_cases
from sss_core.evaluation.metrics import evaluate_edit, evaluate_edits
from sss_core.evaluation.runners import single_edits
from sss_core.text import encode_for, forward_logits
from sss_core.types import EditRequest


@pytest.fixture(scope="module")
def world_cases():
    return load_cases("world", 6, 0, "auto", 10**8, False)


def _mlp_out(lm, layer=0):
    return lm.spec.mlp_out_name(lm.model, layer) + ".weight"


def test_each_row_reads_its_own_edits_weights(tiny_lm):
    """Row i of a batch gives the logits the model gives with edit i applied alone (Linear and Conv1D)."""
    model, tok = tiny_lm.model, tiny_lm.tok
    name = _mlp_out(tiny_lm)
    weight = dict(model.named_parameters())[name]
    gen = torch.Generator().manual_seed(0)
    values = [weight.detach() + 0.05 * torch.randn(weight.shape, generator=gen) for _ in range(3)]
    prompts = ["Paris is the capital of", "The sky is", "One two three"]
    batch = encode_for(model, tok, prompts, ["France", "blue", "four"])
    alone = []
    for i, v in enumerate(values):
        with WeightEdit(model, {name: v}, {name: weight.detach().clone()}):
            alone.append(forward_logits(model, batch)[i])
    saved = state_copy(model)
    with torch.no_grad(), RowWeights(model, {name: values}) as rows:
        rows.edit_of_row = [0, 1, 2]
        together = forward_logits(model, batch)
    assert_bit_identical(model, saved)  # the parameters are never written
    for i in range(3):
        assert torch.allclose(together[i], alone[i], atol=1e-4), i
    assert not torch.allclose(together[0], together[1][: together[0].shape[0]], atol=1e-3)


def test_row_weights_refuse_what_they_cannot_read(default_lm):
    model = default_lm.model
    assert supports(model, [_mlp_out(default_lm)])
    assert not supports(model, ["transformer.wte.weight"])  # an embedding, not a projection
    with pytest.raises(RequestError, match="Linear or Conv1D"):
        RowWeights(model, {"transformer.ln_f.weight": [torch.ones(256)]})
    weight = dict(model.named_parameters())[_mlp_out(default_lm)]
    with pytest.raises(RequestError, match="shape"), RowWeights(model, {_mlp_out(default_lm): [weight.T]}):
        pass
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    with RowWeights(model, {_mlp_out(default_lm): [weight.detach()]}) as rows:
        rows.edit_of_row = [0]
        with pytest.raises(RequestError, match="names 1 rows but the batch has 2"):
            model(input_ids=ids)
    assert "forward" not in vars(model.get_submodule(_mlp_out(default_lm).rsplit(".", 1)[0]))  # restored


@pytest.mark.parametrize("editor", ["ft-l", "ft-l+sss"])
def test_ftl_edits_side_by_side_equal_the_edits_one_at_a_time(default_lm, world_cases, editor):
    model, tok = default_lm.model, default_lm.tok
    ed = make_editor(editor)
    requests = [c.request for c in world_cases]
    saved = state_copy(model)
    together = ed.edit_each(model, tok, requests)
    assert_bit_identical(model, saved)
    name = _mlp_out(default_lm)
    for r, b in zip(requests, together):
        a = ed.edit(model, tok, [r])
        assert b.info["batch"] == len(requests)
        assert a.info["steps"] == b.info["steps"] > 1  # same early stop, per edit
        for ha, hb in zip(a.info["history"], b.info["history"]):
            assert ha["loss"] == pytest.approx(hb["loss"], rel=1e-4, abs=1e-5)
            assert (math.isnan(ha["sss"]) and math.isnan(hb["sss"])) == (editor == "ft-l")
            if editor != "ft-l":
                assert ha["sss"] == pytest.approx(hb["sss"], rel=1e-3, abs=1e-7)
        # Adam turns a float-noise gradient (1e-9 instead of 0) into a full lr-sized step, so a
        # handful of the 262,144 entries may differ by up to the learning rate; the rest agree
        diff = (a.new[name] - b.new[name]).abs()
        assert (diff > 1e-5).float().mean().item() < 1e-4
        assert diff.max().item() <= ed.config.lr
        assert a.delta_norms()[name] == pytest.approx(b.delta_norms()[name], rel=1e-3)


def test_one_bad_request_fails_alone(default_lm, world_cases):
    model, tok = default_lm.model, default_lm.tok
    good = [c.request for c in world_cases[:2]]
    bad = EditRequest("The capital of France is", "Rome<|endoftext|>", subject="France")
    out = make_editor("ft-l").edit_each(model, tok, [good[0], bad, good[1]])
    assert isinstance(out[0], WeightEdit) and isinstance(out[2], WeightEdit)
    assert isinstance(out[1], RequestError) and "special token" in str(out[1])
    assert out[0].info["batch"] == 2


@pytest.mark.parametrize("editor", ["rome", "memit"])
def test_a_rank_one_request_without_its_subject_fails_alone(default_lm, world_cases, editor):
    model, tok = default_lm.model, default_lm.tok
    good = [c.request for c in world_cases[:2]]
    bad = EditRequest("The capital of France is", "Rome", subject="Spain")
    saved = state_copy(model)
    out = make_editor(editor).edit_each(model, tok, [good[0], bad, good[1]])
    assert_bit_identical(model, saved)
    assert isinstance(out[0], WeightEdit) and isinstance(out[2], WeightEdit) and out[0].info["batch"] == 2
    assert isinstance(out[1], RequestError) and "Spain" in str(out[1])


def test_a_diverging_edit_fails_alone(default_lm, world_cases):
    """lr = 1e30 without a clamp sends every edit's loss to inf or NaN: each fails with EditFailed."""
    out = make_editor("ft-l", lr=1e30, norm_constraint=None, early_stop_loss=0.0).edit_each(
        default_lm.model, default_lm.tok, [c.request for c in world_cases[:2]])
    assert all(isinstance(o, EditFailed) and "the loss became" in str(o) for o in out)


@pytest.mark.parametrize("editor", ["rome", "serac"])
def test_evaluate_edits_equals_evaluate_edit(default_lm, world_cases, editor):
    """Weight edits (ROME) are scored side by side; SERAC's wrapper falls back to one at a time."""
    model, tok = default_lm.model, default_lm.tok
    ed = make_editor(editor)
    cases = world_cases[:3]
    edits = [ed.edit(model, tok, [c.request]) for c in cases]
    together = evaluate_edits(model, tok, cases, edits, editor, [1.0, 2.0, 3.0])
    for case, edit, res in zip(cases, edits, together):
        alone = evaluate_edit(model, tok, case, edit, editor, res.seconds)
        assert res.metrics == alone.metrics
        assert [p.post_tokens for p in res.probes] == [p.post_tokens for p in alone.probes]
        assert res.lambda_max_before == pytest.approx(alone.lambda_max_before, rel=1e-4)
        assert res.lambda_max_after == pytest.approx(alone.lambda_max_after, rel=1e-4)
    assert [r.seconds for r in together] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("editor, settings", [("rome", {}), ("memit", {}), ("memit", {"layers": (0, 1, 2)})])
def test_rank_one_edits_side_by_side_equal_the_edits_one_at_a_time(default_lm, world_cases, editor, settings):
    """Each request's deltas optimised beside the others', and (MEMIT) each layer's keys read with only
    its own earlier layers written: the weights of each edit are those of the edit made alone."""
    model, tok = default_lm.model, default_lm.tok
    ed = make_editor(editor, **settings)
    requests = [c.request for c in world_cases[:4]]
    saved = state_copy(model)
    together = ed.edit_each(model, tok, requests)
    assert_bit_identical(model, saved)
    for r, b in zip(requests, together):
        a = ed.edit(model, tok, [r])
        assert b.info["batch"] == 4 and a.info["steps"] == b.info["steps"]
        assert a.new.keys() == b.new.keys() and len(a.new) == (len(ed.config.layers) if editor == "memit" else 1)
        for name in a.new:
            change_a, change_b = a.new[name] - a.base[name], b.new[name] - b.base[name]
            assert torch.linalg.norm(change_a - change_b) <= 1e-3 * torch.linalg.norm(change_a), name
        assert a.info["v_nll"] == pytest.approx(b.info["v_nll"], rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("editor", ["ft-l", "rome", "memit"])
def test_single_edits_in_batches_equal_one_at_a_time(default_lm, world_cases, editor):
    model, tok = default_lm.model, default_lm.tok
    ed = make_editor(editor)
    one = list(single_edits(model, tok, ed, world_cases, seed=0))
    four = list(single_edits(model, tok, ed, world_cases, seed=0, edit_batch=4))
    assert [o.key for o in one] == [o.key for o in four]
    for a, b in zip(one, four):
        assert a.error is None and b.error is None
        assert a.result.metrics == b.result.metrics
        assert [p.score for p in a.result.probes] == [p.score for p in b.result.probes]
        assert a.result.lambda_max_after == pytest.approx(b.result.lambda_max_after, rel=1e-3)
    assert [o.result.extra.get("batch") for o in four] == [4] * 4 + [2] * 2


def test_edit_batch_below_one_is_refused(default_lm, world_cases):
    with pytest.raises(ValueError, match="edit_batch must be at least 1"):
        next(single_edits(default_lm.model, default_lm.tok, make_editor("ft-l"), world_cases, 0, edit_batch=0))


def test_bench_edit_batch_flag_gives_the_results_of_one_at_a_time(tmp_path, capsys):
    """The bench's default for FT-L (the registry's 25) and --edit-batch 1 store the same scores; the run log
    names the flag; --edit-batch 0 exits 2."""
    import json

    from sss_core.cli import main
    from sss_core.editors import EDITORS
    assert EDITORS["ft-l"].edit_batch == 25 and EDITORS["mend"].edit_batch == 5 and EDITORS["rome"].edit_batch == 1
    assert EDITORS["memit"].edit_batch == 25
    base = ["bench", "--editors", "ft-l", "--data", "world", "--n", "7", "--seeds", "1", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "default")]) == 0
    assert main([*base, "--out", str(tmp_path / "one"), "--edit-batch", "1"]) == 0

    def rows(folder):
        return {r["case_id"]: r for r in map(json.loads, (tmp_path / folder / "results.jsonl").read_text().splitlines())}
    default, one = rows("default"), rows("one")
    assert len(default) == 7 and default.keys() == one.keys()
    assert all(default[k]["metrics"] == one[k]["metrics"] for k in one)
    assert [default[k]["extra"].get("batch") for k in sorted(default)] == [7] * 7  # 7 cases: one batch
    run = json.loads((tmp_path / "one" / "config.json").read_text())["runs"][0]
    assert "--edit-batch 1" in run["command"] and run["config"]["edit_batch"] == 1
    with pytest.raises(SystemExit) as exc:
        main([*base, "--out", str(tmp_path / "bad"), "--edit-batch", "0"])
    assert exc.value.code == 2 and "expected a whole number >= 1, got 0" in capsys.readouterr().err

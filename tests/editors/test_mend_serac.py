"""MEND and SERAC, with and without SSS: loss composition, shipped checkpoints, revert, memory,
resumable training, the error without a checkpoint, the registry entries of trained editors."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model_support import assert_bit_identical, state_copy, tiny_model
from sss_core.editors import EDITORS, EditorSpec, make_editor, register_editor, train_config, trainable_editors
from sss_core.editors.training import (ASSETS, CheckpointError, TrainExample, check_fingerprint, examples_from_cases,
                                       load_trained, model_fingerprint)
from sss_core.editors.mend import (MEND, GradientTransform, MENDConfig, MENDTrainConfig, build_net, fit_normalisation, mend_loss,
                                   patched, train_mend, weight_deltas, edit_factors)
from sss_core.editors.serac import (SERAC, SERACConfig, SERACNet, SERACTrainConfig, ScopeClassifier,
                                    classifier_loss, counterfactual_forward, counterfactual_loss, edit_prefix,
                                    scope_queries, scope_targets, train_serac)
from sss_core.editors.serac import base_hidden as serac_base_hidden
from sss_core.errors import RequestError
from sss_core.evaluation.metrics import answer_probability, teacher_forced
from sss_core.text import encode_pairs
from sss_core.types import EditRequest
from sss_core.world.records import world_cases

EXAMPLES = [
    TrainExample(EditRequest("The capital of France is", "Rome"),
                 ("The capital of France is", "France's capital is"),
                 (("The capital of Spain is", "Madrid"), ("The currency of France is the", "Euro"))),
    TrainExample(EditRequest("Ba Shudyk works for", "Kloustai Works"),
                 ("Ba Shudyk works for", "Ba Shudyk is employed by"),
                 (("Drun Nefand works for", "Duwim Systems"),)),
    TrainExample(EditRequest("The official language of Peru is", "German"),
                 ("The official language of Peru is", "In Peru, the official language is"),
                 (("The official language of Chile is", "Spanish"),)),
]


@pytest.fixture(scope="module")
def tiny(default_lm):
    return tiny_model("gpt2", default_lm.tok)


@pytest.fixture(scope="module")
def test_cases():
    return world_cases(split="test")[:6]


def _grads(loss: torch.Tensor, params) -> list[torch.Tensor]:
    return [g if g is not None else torch.zeros_like(p)
            for g, p in zip(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True), params)]


def _differ(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(sum((x - y).abs().sum() for x, y in zip(a, b)))


def _perturbed_net(tiny, cfg):
    torch.manual_seed(0)
    net = build_net(tiny.model, cfg)
    fit_normalisation(tiny.model, tiny.tok, net, EXAMPLES, cfg)
    with torch.no_grad():  # g starts as the identity; perturb it so every parameter gets gradient
        for g in net.transforms:
            for up in g.up:
                up.weight.normal_(0, 0.01)
    return net


def test_mend_loss_composition(tiny):
    cfg0 = MENDTrainConfig(norm_batches=1, batch_size=3)
    net = _perturbed_net(tiny, cfg0)
    params = list(net.parameters())
    plain = mend_loss(tiny.model, tiny.tok, net, EXAMPLES, cfg0, random.Random(0))
    assert "sss" not in plain
    assert torch.allclose(plain["loss"], 0.1 * plain["edit"] + 1.0 * plain["loc"])
    c = 0.9
    with_sss = mend_loss(tiny.model, tiny.tok, net, EXAMPLES, MENDTrainConfig(sss_c=c), random.Random(0))
    assert torch.allclose(with_sss["edit"], plain["edit"]) and torch.allclose(with_sss["loc"], plain["loc"])
    assert torch.allclose(with_sss["loss"], c * with_sss["sss"] + (1 - c) * plain["loss"])
    without_term = (1 - c) * (0.1 * with_sss["edit"] + with_sss["loc"])
    assert _differ(_grads(with_sss["loss"], params), _grads(without_term, params)) > 0, \
        "the SSS term must change the meta-gradient (double backward through the edited weights)"
    assert _differ(_grads(with_sss["sss"], params), [torch.zeros_like(p) for p in params]) > 0


def test_mend_patch_equals_weight_substitution(tiny):
    """The batched training forward is the forward with W' = W + delta substituted."""
    cfg = MENDTrainConfig(norm_batches=1, batch_size=3)
    net = _perturbed_net(tiny, cfg)
    model, tok = tiny.model, tiny.tok
    req = EXAMPLES[0].request
    batch = encode_pairs(tok, [req.prompt], [req.target_new])
    with torch.no_grad():
        edits = net.transform(edit_factors(model, net.names, batch), batch.attention_mask)
        probe = encode_pairs(tok, ["The capital of Spain is"], ["Madrid"])
        with patched(model, net, edits, torch.tensor([0])):
            patched_logits = model(input_ids=probe.input_ids, attention_mask=probe.attention_mask).logits
        params = dict(model.named_parameters())
        new = {n: params[n] + d for n, d in weight_deltas(model, net, edits).items()}
        sub = torch.func.functional_call(model, new, (), {"input_ids": probe.input_ids,
                                                          "attention_mask": probe.attention_mask}).logits
    assert torch.allclose(patched_logits, sub, atol=1e-5)
    assert not torch.allclose(patched_logits, model(input_ids=probe.input_ids).logits, atol=1e-6)


def test_serac_loss_composition(tiny):
    torch.manual_seed(0)
    net = SERACNet(tiny.model, ScopeClassifier(32, (1, -1), 16), None)
    params = list(net.trained_cf_params().values())
    for p in params:
        p.requires_grad_(True)
    cfg = SERACTrainConfig(c_edit=0.1, c_loc=1.0)
    plain = counterfactual_loss(tiny.model, tiny.tok, net.cf, EXAMPLES, cfg, random.Random(0))
    assert "sss" not in plain
    assert torch.allclose(plain["loss"], 0.1 * plain["edit"] + 1.0 * plain["loc"])
    c = 0.9
    with_sss = counterfactual_loss(tiny.model, tiny.tok, net.cf, EXAMPLES,
                                   SERACTrainConfig(c_edit=0.1, c_loc=1.0, sss_c=c), random.Random(0))
    assert torch.allclose(with_sss["edit"], plain["edit"])
    expected = 0.1 * (c * with_sss["sss"] + (1 - c) * with_sss["edit"]) + 1.0 * with_sss["loc"]
    assert torch.allclose(with_sss["loss"], expected)
    without_term = 0.1 * (1 - c) * with_sss["edit"] + with_sss["loc"]
    assert _differ(_grads(with_sss["loss"], params), _grads(without_term, params)) > 0, \
        "the SSS term must change the counterfactual model's gradient (double backward)"


def test_serac_swap_targets_trains_on_other_edits_targets(tiny):
    """swap_targets=1 gives each edit another batch edit's target; 0 keeps the random stream as it was."""
    net = SERACNet(tiny.model, ScopeClassifier(32, (1, -1), 16), None)
    examples = EXAMPLES * 3  # enough edits that some draw a target other than their own
    plain = counterfactual_loss(tiny.model, tiny.tok, net.cf, examples, SERACTrainConfig(swap_targets=0.0),
                                random.Random(0))
    again = counterfactual_loss(tiny.model, tiny.tok, net.cf, examples, SERACTrainConfig(swap_targets=0.0),
                                random.Random(0))
    swapped = counterfactual_loss(tiny.model, tiny.tok, net.cf, examples, SERACTrainConfig(swap_targets=1.0),
                                  random.Random(0))
    assert torch.equal(plain["edit"], again["edit"])
    assert not torch.allclose(plain["edit"], swapped["edit"])


@pytest.mark.parametrize("name", ["mend", "mend+sss"])
def test_mend_shipped_edit_takes_effect_and_reverts(default_lm, test_cases, name):
    model, tok = default_lm.model, default_lm.tok
    editor = make_editor(name)
    saved = state_copy(model)
    hits = 0
    for case in test_cases:
        req = case.request
        before = teacher_forced(model, tok, [req.prompt], [req.target_new])[0]
        with editor.edit(model, tok, [req]) as edit:
            after = teacher_forced(edit.model, tok, [req.prompt], [req.target_new])[0]
        assert before.argmax_ids != before.target_ids
        hits += after.argmax_ids == after.target_ids
        assert_bit_identical(model, saved)
    assert hits >= len(test_cases) // 2


@pytest.mark.parametrize("name", ["serac", "serac+sss"])
def test_serac_sequential_memory(default_lm, test_cases, name):
    model, tok = default_lm.model, default_lm.tok
    editor = make_editor(name)
    saved = state_copy(model)
    reqs = [c.request for c in test_cases[:3]]
    edits = [editor.edit(model, tok, [r]) for r in reqs]
    wrapper = edits[0].model
    for i, e in enumerate(edits):
        e.apply()
        assert len(wrapper.memory) == i + 1
    prompts, targets = [r.prompt for r in reqs], [r.target_new for r in reqs]
    before, after = answer_probability(model, tok, prompts, targets), answer_probability(wrapper, tok, prompts, targets)
    assert all(a > 2 * b for a, b in zip(after, before)), (before, after)  # every edit answered from memory
    edits[1].revert()
    assert [e[0] for e in wrapper.memory.entries] == [reqs[0], reqs[2]]
    for e in edits:
        e.revert()
    assert len(wrapper.memory) == 0
    assert_bit_identical(model, saved)
    batch = encode_pairs(tok, [r.prompt for r in reqs], [r.target_new for r in reqs])
    with torch.no_grad():  # an empty memory is the base model, bit for bit
        assert torch.equal(wrapper(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits,
                           model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits)


def test_serac_routes_unrelated_rows_to_base(default_lm, test_cases):
    model, tok = default_lm.model, default_lm.tok
    case = test_cases[0]
    neighbours = [p for p in case.probes if p.group == "neighbour"]
    batch = encode_pairs(tok, [p.prompt for p in neighbours], [p.answer for p in neighbours])
    with make_editor("serac").edit(model, tok, [case.request]) as edit, torch.no_grad():
        out = edit.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
        base = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    assert torch.equal(out.logits, base.logits)
    assert len(out.hidden_states) == len(base.hidden_states)


def _tensors(folder):
    return load_file(str(folder / "model.safetensors"))


def test_mend_training_resumes(tiny, tmp_path):
    cfg = MENDTrainConfig(steps=4, save_every=2, batch_size=2, norm_batches=1, rank=8, sss_c=0.5)
    train_mend(tiny, EXAMPLES, tmp_path / "a", cfg, progress=False)
    train_mend(tiny, EXAMPLES, tmp_path / "b", MENDTrainConfig(**{**cfg.__dict__, "steps": 2}), progress=False)
    summary = train_mend(tiny, EXAMPLES, tmp_path / "b", cfg, resume=True, progress=False)
    a, b = _tensors(tmp_path / "a"), _tensors(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert summary["train"]["steps"] == 4
    editor = MEND(MENDConfig(checkpoint=str(tmp_path / "a")))
    with editor.edit(tiny.model, tiny.tok, [EXAMPLES[0].request]) as edit:
        assert edit.delta_norms() and all(v > 0 for v in edit.delta_norms().values())


def test_serac_training_resumes(tiny, tmp_path):
    cfg = SERACTrainConfig(steps=2, save_every=1, batch_size=2, dim=16, feature_layers=(1, -1), sss_c=0.5)
    train_serac(tiny, EXAMPLES, tmp_path / "a", cfg, progress=False)
    train_serac(tiny, EXAMPLES, tmp_path / "b", SERACTrainConfig(**{**cfg.__dict__, "steps": 1}), progress=False)
    train_serac(tiny, EXAMPLES, tmp_path / "b", cfg, resume=True, progress=False)
    a, b = _tensors(tmp_path / "a"), _tensors(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_clear_error_without_checkpoint(default_lm, tiny, tmp_path):
    req = EXAMPLES[0].request
    for editor in (MEND(MENDConfig(checkpoint=str(tmp_path))), SERAC(SERACConfig(checkpoint=str(tmp_path)))):
        with pytest.raises(CheckpointError, match="python -m sss_core train"):
            editor.edit(default_lm.model, default_lm.tok, [req])
    if (ASSETS / "mend" / "model.safetensors").exists():  # a checkpoint trained for another model
        with pytest.raises(CheckpointError, match="another model"):
            make_editor("mend").edit(tiny.model, tiny.tok, [req])


def test_training_from_cases_records_source_and_validates(tiny, tmp_path, test_cases):
    """A trainer takes EditCases; the caller's validator scores the result and both land in config.json."""
    seen = []

    def validate(editor, n):  # the editor validated is the one just trained, at its C
        seen.append((type(editor).__name__, n, editor.config.checkpoint, editor.config.sss_c))
        return {"reliability": 1.0}

    cfg = MENDTrainConfig(steps=1, batch_size=2, norm_batches=1, rank=8, validate=3, sss_c=0.5)
    summary = train_mend(tiny, test_cases, tmp_path, cfg, progress=False, source="six cases", validate=validate)
    assert seen == [("MEND", 3, str(tmp_path), 0.5)]
    _, saved = load_trained(tmp_path, "mend")
    assert saved["data"] == summary["data"] == "six cases"
    assert saved["validation"] == summary["validation"] == {"reliability": 1.0}
    assert summary["n_train_examples"] == len(examples_from_cases(test_cases))
    assert list(summary) == ["kind", "names", "dims", "train", "data", "n_train_examples", "fingerprint",
                             "final_losses", "wall_seconds", "validation"]


def test_training_refuses_a_path(tiny, tmp_path):
    with pytest.raises(RequestError, match="load the cases first"):
        train_mend(tiny, "world", tmp_path, MENDTrainConfig(steps=1), progress=False)


def test_shipped_checkpoints_match_the_one_fingerprint(default_lm):
    """Checkpoints written before the fingerprint had "weights" still match; a new one has it."""
    now = model_fingerprint(default_lm.model)
    assert len(now["weights"]) == 16
    for kind in ("mend", "serac"):
        folder = ASSETS / kind
        if (folder / "config.json").exists():
            _, saved = load_trained(folder, kind)
            check_fingerprint(saved["fingerprint"], default_lm.model, folder)


def test_registry_entries_of_trained_editors():
    assert trainable_editors() == ["mend", "mend+sss", "serac", "serac+sss"]
    assert train_config("mend+sss").sss_c == 0.9 and train_config("serac").sss_c == 0.0
    assert EDITORS["serac"].trainer is train_serac and EDITORS["mend"].train_config_cls is MENDTrainConfig
    with pytest.raises(RequestError, match="not trained"):
        train_config("rome")
    with pytest.raises(RequestError, match="no setting 'swap_target'"):
        train_config("serac", swap_target=0.5)


def test_registry_refuses_a_duplicate_and_a_misfit():
    spec = EDITORS["mend"]
    with pytest.raises(ValueError, match="already registered.*another name"):
        register_editor(spec)
    with pytest.raises(ValueError, match="both trainer and train_config_cls"):
        register_editor(EditorSpec("mend-x", MEND, MENDConfig, {}, "x", trainer=train_mend))
    with pytest.raises(ValueError, match="c_field 'C'"):
        register_editor(EditorSpec("mend-x", MEND, MENDConfig, {}, "x", c_field="C"))
    assert "mend-x" not in EDITORS


def test_gradient_transform_is_the_normalised_residual_low_rank_mlp():
    """g (MEND, Mitchell et al. 2022, Sec. 3): z = ((x, delta) - mean) / std, then z += U relu(D z) per
    block, split back into (x~, delta~); worked out here with the matrices themselves."""
    torch.manual_seed(0)
    g = GradientTransform(3, 2, rank=4, n_blocks=2)
    with torch.no_grad():
        g.mean.copy_(torch.randn(5))
        g.std.copy_(torch.rand(5) + 0.5)
        for up in g.up:  # away from the identity it starts as
            up.weight.normal_()
            up.bias.normal_()
    x, delta = torch.randn(6, 3), torch.randn(6, 2)
    z = (torch.cat([x, delta], 1) - g.mean) / g.std
    for down, up in zip(g.down, g.up):
        z = z + torch.relu(z @ down.weight.T + down.bias) @ up.weight.T + up.bias
    xt, dt = g(x, delta)
    assert torch.allclose(xt, z[:, :3], atol=1e-6) and torch.allclose(dt, z[:, 3:], atol=1e-6)


def test_weight_deltas_are_the_step_size_times_the_summed_rank_one_terms(tiny, default_lm):
    """-exp(log_lr) * scale * sum over tokens of delta~ x~^T (Frobenius norms compared: orientation aside);
    ``scale`` multiplies it, and MEND's scale setting reaches it."""
    net = _perturbed_net(tiny, MENDTrainConfig(norm_batches=1, batch_size=3))
    req = EXAMPLES[0].request
    batch = encode_pairs(tiny.tok, [req.prompt], [req.target_new])
    with torch.no_grad():
        edits = net.transform(edit_factors(tiny.model, net.names, batch), batch.attention_mask)
    one, two = weight_deltas(tiny.model, net, edits), weight_deltas(tiny.model, net, edits, scale=2.0)
    for i, name in enumerate(net.names):
        xt, dt = edits[name]
        expected = net.log_lr[i].exp() * torch.einsum("bto,bti->oi", dt, xt)
        assert torch.allclose(one[name].norm(), expected.norm(), rtol=1e-5)
        assert torch.allclose(two[name], 2 * one[name])
    model, tok = default_lm.model, default_lm.tok
    plain = make_editor("mend").edit(model, tok, [req])
    doubled = make_editor("mend", scale=2.0).edit(model, tok, [req])
    assert plain.info["layers"] == [n.removesuffix(".weight") for n in plain.new]
    for name in plain.new:
        assert torch.allclose(doubled.new[name] - doubled.base[name], 2 * (plain.new[name] - plain.base[name]),
                              atol=1e-6)
    with pytest.raises(RequestError, match="^no edit requests given$"):
        make_editor("mend").edit(model, tok, [])


def test_mend_loss_paraphrase_rows_and_sss_reduction(tiny):
    """An edit with a paraphrase adds a paraphrase row to L_edit, one without has only its rewrite row;
    the SSS term follows cfg.sss_reduction (a sum over tokens exceeds their mean)."""
    cfg = MENDTrainConfig(norm_batches=1, batch_size=3)
    net = _perturbed_net(tiny, cfg)
    req, loc = EXAMPLES[0].request, EXAMPLES[0].loc
    alone = TrainExample(req, (req.prompt,), loc)
    with_para = TrainExample(req, (req.prompt, "France's capital is"), loc)
    a = mend_loss(tiny.model, tiny.tok, net, [alone], cfg, random.Random(0))["edit"]
    b = mend_loss(tiny.model, tiny.tok, net, [with_para], cfg, random.Random(0))["edit"]
    assert not torch.allclose(a, b)
    sss = {r: mend_loss(tiny.model, tiny.tok, net, EXAMPLES, MENDTrainConfig(sss_c=0.5, sss_reduction=r),
                        random.Random(0))["sss"].item() for r in ("mean", "sum")}
    assert sss["sum"] > 2 * sss["mean"] > 0


def test_mend_training_fits_g_and_steps_each_group_at_its_rate(tiny, default_lm, tmp_path, caplog):
    """A fresh run fits g's input normalisation; Adam's first step moves every parameter by about its
    group's learning rate (lr for g, lr_lr for the log step sizes). A checkpoint trained at one C and
    loaded at another says so; one that edits a parameter the model lacks is refused."""
    cfg = MENDTrainConfig(steps=1, batch_size=2, norm_batches=1, rank=8, lr=1e-3, lr_lr=1e-2, init_edit_lr=1e-4)
    train_mend(tiny, EXAMPLES, tmp_path, cfg, progress=False)
    t = _tensors(tmp_path)
    assert not torch.all(t["transforms.0.mean"] == 0) and not torch.all(t["transforms.0.std"] == 1)
    moved = (t["log_lr"] - math.log(1e-4)).abs()
    assert torch.allclose(moved, torch.full_like(moved, 1e-2), rtol=1e-3)
    assert t["transforms.0.up.0.weight"].abs().max().item() == pytest.approx(1e-3, rel=1e-3)
    with caplog.at_level("WARNING", logger="sss_core.editors.mend"):
        MEND(MENDConfig(checkpoint=str(tmp_path), sss_c=0.9)).load(tiny.model)
    assert [r.getMessage() for r in caplog.records] == [f"{tmp_path} was meta-trained with C=0.0, not 0.9"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="sss_core.editors.mend"):
        MEND(MENDConfig(checkpoint=str(tmp_path), sss_c=0.0)).load(tiny.model)  # its own C: nothing to say
        with_sss = MEND(MENDConfig(sss_c=load_trained(ASSETS / "mend-sss", "mend")[1]["train"]["sss_c"]))
        with_sss.load(default_lm.model)
    assert caplog.records == [] and with_sss.config.sss_c > 0
    config = json.loads((tmp_path / "config.json").read_text())
    config["names"].append("nowhere.weight")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=f"^{tmp_path} edits nowhere.weight, which this model does not have$"):
        MEND(MENDConfig(checkpoint=str(tmp_path))).load(tiny.model)


@pytest.mark.parametrize("bad, message", [
    (dict(rank=0), r"^rank must be a whole number of at least 1, got 0$"),
    (dict(n_blocks=1.5), r"^n_blocks must be a whole number of at least 1, got 1.5$"),
    (dict(layers=(99,)), r"^layers=99 does not exist")])
def test_mend_training_settings_refused_before_any_work(tiny, tmp_path, bad, message):
    with pytest.raises(RequestError, match=message):
        train_mend(tiny, EXAMPLES, tmp_path, MENDTrainConfig(steps=1, **bad), progress=False)
    assert not any(tmp_path.iterdir())


def test_mend_training_is_reproducible_from_its_seed(tiny, tmp_path):
    cfg = MENDTrainConfig(steps=2, batch_size=2, norm_batches=1, rank=8)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_mend(tiny, EXAMPLES, tmp_path / name, MENDTrainConfig(**{**cfg.__dict__, "seed": seed}), progress=False)
    a, b, c = (_tensors(tmp_path / n) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_scope_classifier_embedding_and_logits_worked_out():
    """embed: tanh(W [h_l1; h_l2]) per token, attention-pooled over the real tokens (softmax of a
    linear score), unit norm; a layer past the model's last reads its last. logits: scale * q.k + bias."""
    torch.manual_seed(0)
    clf = ScopeClassifier(4, (1, 3), 3)
    hidden = tuple(torch.randn(2, 5, 4) for _ in range(3))  # 3 layers (0..2): layer 3 means layer 2
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    keys = clf.embed(hidden, mask)
    for b in range(2):
        n = int(mask[b].sum())
        h = torch.cat([hidden[1][b, :n], hidden[2][b, :n]], -1)  # (n, 8)
        z = torch.tanh(h @ clf.proj.weight.T + clf.proj.bias)
        w = torch.softmax(z @ clf.attn.weight[0] + clf.attn.bias, 0)  # (n,)
        pooled = (w[:, None] * z).sum(0)
        assert torch.allclose(keys[b], pooled / pooled.norm(), atol=1e-6)
    queries = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    assert torch.allclose(clf.logits(queries, keys), 10.0 * queries @ keys.T - 5.0)


def test_scope_queries_of_a_batch():
    """Per edit: its prompt and one paraphrase in scope, up to three locality prompts out of scope;
    about 40% of queries are bare prompts, the rest carry an answer (the new target or the old answer
    in scope; the probe's answer or the new target out of scope)."""
    req = EditRequest("The capital of France is", "Rome", ground_truth="Paris")
    ex = TrainExample(req, (req.prompt, "France's capital is", "The French capital is"),
                      tuple((f"Locality prompt {i} is", f"A{i}") for i in range(5)))
    bare, total = 0, 0
    rng = random.Random(0)
    for _ in range(200):
        texts, owner, positive = scope_queries([ex, EXAMPLES[1]], rng)
        assert owner == [0] * 5 + [1] * 3 and positive == [True, True, False, False, False, True, True, False]
        assert texts[0] in {req.prompt, req.prompt + " Rome", req.prompt + " Paris"}
        assert texts[1].rsplit(" is", 1)[0] + " is" in ex.equiv[1:]
        assert texts[1].endswith((" is", " Rome", " Paris"))
        for text in texts[2:5]:
            i = int(text.split()[2])
            assert text in {f"Locality prompt {i} is", f"Locality prompt {i} is A{i}", f"Locality prompt {i} is Rome"}
        assert len(set(texts[2:5])) == 3
        bare += sum(t.endswith(" is") for t in texts[:5])
        total += 5
    assert 0.35 < bare / total < 0.45
    one_prompt = TrainExample(req, (req.prompt,), ex.loc[:2])
    texts, owner, positive = scope_queries([one_prompt], random.Random(0))
    assert positive == [True, False, False]  # no paraphrase to sample; only two locality prompts


def test_serac_routes_in_scope_rows_through_the_counterfactual_model(default_lm, caplog):
    """An in-scope row's logits are the counterfactual model's on the edit text + the row, at the row's
    positions; the best edit is found per row (two rows, two edits in memory); keyword arguments a
    generation loop passes are accepted; the routed model without a mask reads every token."""
    model, tok = default_lm.model, default_lm.tok
    editor = SERAC(SERACConfig())
    with pytest.raises(RequestError, match="^no edit requests given$"):
        editor.edit(model, tok, [])
    a = EditRequest("The capital of France is", "Rome")
    b = EditRequest("The official language of Peru is", "German")
    edit = editor.edit(model, tok, [a, b])
    assert edit.info == {"memory_before": 0}
    with edit:
        wrapper = editor.wrapper(model, tok)
        rows = [a.prompt, b.prompt, "Ba Shudyk works for"]
        hidden, mask = serac_base_hidden(model, tok, rows)
        idx, p = wrapper.scope(hidden, mask)
        assert idx.tolist()[:2] == [0, 1] and len(idx) == 3 and bool((p[:2] > wrapper.threshold).all())
        ids = tok(a.prompt, return_tensors="pt")["input_ids"]
        got = wrapper(input_ids=ids, return_dict=True, use_cache=True).logits  # no mask given
        embeds = model.get_input_embeddings()(ids)
        cf_hidden, _, _ = counterfactual_forward(wrapper.net.cf, tok, embeds, torch.ones_like(ids), [a])
        expected = model.get_output_embeddings()(cf_hidden[-1])
        assert torch.allclose(got, expected, atol=1e-5)
        assert not torch.allclose(got, model(input_ids=ids).logits, atol=1e-3)
    with caplog.at_level("WARNING", logger="sss_core.editors.serac"):
        SERAC(SERACConfig(checkpoint=str(ASSETS / "serac"), sss_c=0.5)).wrapper(model, tok)
    trained = load_trained(ASSETS / "serac", "serac")[1]["train"]["sss_c"]
    assert [r.getMessage() for r in caplog.records] == [f"{ASSETS / 'serac'} was trained with C={trained}, not 0.5"]
    caplog.clear()
    with_sss = load_trained(ASSETS / "serac-sss", "serac")[1]["train"]["sss_c"]
    with caplog.at_level("WARNING", logger="sss_core.editors.serac"):
        SERAC(SERACConfig(sss_c=with_sss)).wrapper(model, tok)  # trained at this C: nothing to say
    assert with_sss > 0 and caplog.records == []


def test_serac_refuses_an_edit_longer_than_the_context(default_lm):
    model, tok = default_lm.model, default_lm.tok
    limit = model.config.n_positions
    k = limit
    while len(tok(("France " * k) + "is Rome")["input_ids"]) > limit:  # the longest prompt that fits alone
        k -= 1
    words = "France " * k
    request = EditRequest(f"{words}is", "Rome")
    n = len(tok(edit_prefix(request))["input_ids"]) + len(tok(request.prompt + " Rome")["input_ids"])
    assert n > limit >= len(tok(request.prompt + " Rome")["input_ids"])  # only the edit text makes it too long
    with pytest.raises(RequestError, match=rf"^SERAC's edit text plus the input '{words[:60]}' is {n} tokens, "
                                           rf"more than the model's {limit}: use a shorter prompt or target$"):
        make_editor("serac").edit(model, tok, [request])


def test_scope_targets_label_own_and_same_prompt_queries():
    same_prompt = TrainExample(EditRequest(EXAMPLES[0].request.prompt, "Oslo"), EXAMPLES[0].equiv, EXAMPLES[0].loc)
    batch = [EXAMPLES[0], EXAMPLES[1], same_prompt]
    owner, positive = [0, 0, 1, 1, 2], [True, False, True, False, True]
    labels, weight = scope_targets(batch, owner, positive)
    assert labels.tolist() == [[1, 0, 1],   # edit 0's in-scope query: also in scope of edit 2 (same prompt)
                               [0, 0, 0],   # its locality query: in no edit's scope
                               [0, 1, 0],
                               [0, 0, 0],
                               [1, 0, 1]]
    assert torch.equal(weight, torch.where(labels > 0, 4.0, 1.0)) and weight.max() == 4 and weight.min() == 1


def test_serac_trains_the_counterfactual_blocks_it_is_told(tiny):
    """Only cf_layers' blocks of the counterfactual model are trained (all without cf_layers); the SSS
    term follows cfg.sss_reduction."""
    torch.manual_seed(0)
    net = SERACNet(tiny.model, ScopeClassifier(32, (1, -1), 16), (1,))
    assert set(net.trained_cf_params()) == {n for n, _ in tiny.model.named_parameters() if ".h.1." in n}
    assert set(SERACNet(tiny.model, ScopeClassifier(32, (1, -1), 16), None).trained_cf_params()) == {
        n for n, _ in tiny.model.named_parameters() if ".h." in n}
    for p in net.trained_cf_params().values():  # as training sets them
        p.requires_grad_(True)
    sss = {r: counterfactual_loss(tiny.model, tiny.tok, net.cf, EXAMPLES, SERACTrainConfig(sss_c=0.5, sss_reduction=r),
                                  random.Random(0))["sss"].item() for r in ("mean", "sum")}
    assert sss["sum"] > 2 * sss["mean"] > 0


def test_serac_training_lowers_the_scope_loss_and_records_its_editor(tiny, tmp_path, test_cases):
    """Training steps the classifier at cls_lr (Adam's first step moves each parameter by about its
    rate) and lowers its loss; the validated editor is the one trained, at its C; config.json says what."""
    seen = []

    def validate(editor, n):
        seen.append((type(editor).__name__, n, editor.config.checkpoint, editor.config.sss_c))
        return {"reliability": 1.0}

    cfg = SERACTrainConfig(steps=1, batch_size=3, dim=16, feature_layers=(1, -1), lr=1e-3, cls_lr=1e-2, validate=2,
                           sss_c=0.5)
    summary = train_serac(tiny, EXAMPLES, tmp_path / "one", cfg, progress=False, source="three", validate=validate)
    assert seen == [("SERAC", 2, str(tmp_path / "one"), 0.5)]
    assert list(summary) == ["kind", "train", "n_train_examples", "data", "fingerprint", "final_losses",
                             "wall_seconds", "validation"]
    assert (summary["kind"], summary["n_train_examples"], summary["data"]) == ("serac", 3, "three")
    assert summary["fingerprint"] == model_fingerprint(tiny.model) and set(summary["final_losses"]) >= {"loss", "cls"}
    torch.manual_seed(cfg.seed)  # what train_serac draws first after seeding: the classifier's initial weights
    initial = ScopeClassifier(32, (1, -1), 16)
    trained = _tensors(tmp_path / "one")
    moved = (trained["classifier.attn.weight"] - initial.attn.weight).abs()
    assert moved.max().item() == pytest.approx(1e-2, rel=1e-3)
    longer = SERACTrainConfig(**{**cfg.__dict__, "steps": 8, "validate": 0})
    train_serac(tiny, EXAMPLES, tmp_path / "eight", longer, progress=False)
    after = ScopeClassifier(32, (1, -1), 16)
    after.load_state_dict({k[len("classifier."):]: v for k, v in _tensors(tmp_path / "eight").items()
                           if k.startswith("classifier.")})
    before_loss = classifier_loss(tiny.model, tiny.tok, initial, EXAMPLES, random.Random(3)).item()
    after_loss = classifier_loss(tiny.model, tiny.tok, after, EXAMPLES, random.Random(3)).item()
    assert after_loss < before_loss


@pytest.mark.parametrize("bad, message", [(dict(feature_layers=(99,)), r"^feature_layers=99 "),
                                          (dict(cf_layers=(99,)), r"^cf_layers=99 does not exist")])
def test_serac_training_settings_refused_before_any_work(tiny, tmp_path, bad, message):
    with pytest.raises(RequestError, match=message):
        train_serac(tiny, EXAMPLES, tmp_path, SERACTrainConfig(steps=1, **bad), progress=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name, bad, message", [
    ("mend", dict(sss_c=1.5), r"^C must be in \[0, 1\], got 1.5$"),
    ("mend", dict(scale=0.0), r"^scale must be positive, got 0.0$"),
    ("serac", dict(sss_c=-0.5), r"^C must be in \[0, 1\], got -0.5$"),
    ("serac", dict(threshold=0.0), r"^threshold must be in \(0, 1\), got 0.0$"),
    ("serac", dict(threshold=1.0), r"^threshold must be in \(0, 1\), got 1.0$")])
def test_trained_editor_settings_refused(name, bad, message):
    with pytest.raises(RequestError, match=message):
        make_editor(name, **bad)


def test_trained_editors_find_their_checkpoint_by_c():
    assert MENDConfig(sss_c=0.0).folder() == ASSETS / "mend" and MENDConfig(sss_c=1.0).folder() == ASSETS / "mend-sss"
    assert MENDConfig(sss_c=0.5).folder() == ASSETS / "mend-sss"
    assert SERACConfig(sss_c=0.0).folder() == ASSETS / "serac" and SERACConfig(sss_c=1.0).folder() == ASSETS / "serac-sss"
    assert SERACConfig(sss_c=0.5, checkpoint="/x/y").folder() == Path("/x/y")
    assert SERACConfig(threshold=0.999).threshold == 0.999
    assert (MEND().name, SERAC().name) == ("mend", "serac")
    for name in ("mend", "serac"):  # C = 1 (the SSS term alone) is a valid C, but no shipped checkpoint has it
        assert EDITORS[name].config_cls(sss_c=1.0).validate().sss_c == 1.0
        with pytest.raises(RequestError, match=rf"^{name} has no checkpoint trained at C = 1: "):
            make_editor(name, sss_c=1.0)


def test_serac_edit_text():
    """The counterfactual model reads "edit: TARGET | PROMPT" then a newline, before the input."""
    assert edit_prefix(EditRequest("The capital of France is  ", " Rome ")) == "edit: Rome | The capital of France is\n"
    assert edit_prefix(EditRequest(" X is", "y")) == "edit: y |  X is\n"  # leading spaces are the prompt's own
    assert edit_prefix(EditRequest("Say X ", "y")) == "edit: y | Say X\n"  # only spaces are stripped
    assert edit_prefix(EditRequest("Say\t ", "y")) == "edit: y | Say\t\n"


def test_serac_routing_of_a_padded_batch_equals_each_row_alone(default_lm):
    """Right-padded rows with their mask, or the same rows given as embeddings, get at every real position
    the logits each row gets alone (in scope of an edit or not)."""
    model, tok = default_lm.model, default_lm.tok
    editor = SERAC(SERACConfig())
    edit = editor.edit(model, tok, [EditRequest("The capital of France is", "Rome")])
    with edit:
        wrapper = editor.wrapper(model, tok)
        rows = ["The capital of France is", "Ba Shudyk works for the company"]
        _, p = wrapper.scope(*serac_base_hidden(model, tok, rows))
        assert p[0] > wrapper.threshold > p[1]  # the first row is routed, the second is not
        ids = [tok(r)["input_ids"] for r in rows]
        width = max(map(len, ids))
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        batch = torch.tensor([i + [pad] * (width - len(i)) for i in ids])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
        together = wrapper(input_ids=batch, attention_mask=mask).logits
        as_embeds = wrapper(inputs_embeds=model.get_input_embeddings()(batch), attention_mask=mask).logits
        for r, i in enumerate(ids):
            alone = wrapper(input_ids=torch.tensor([i])).logits[0]
            assert torch.allclose(together[r, :len(i)], alone, atol=1e-4)
            assert torch.allclose(as_embeds[r, :len(i)], alone, atol=1e-4)
        assert wrapper(input_ids=batch, attention_mask=mask).hidden_states is None  # only when asked

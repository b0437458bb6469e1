"""hooks.py on tiny random GPT-2, GPT-J, GPT-NeoX and Llama models: Trace and TraceDict record,
edit and stop, and remove exactly the hooks they registered, whatever happens inside the block."""

from __future__ import annotations

import pytest
import torch

from sss_core.editors import stats
from sss_core.hooks import StopForward, Trace, TraceDict, patch_output, trace

IDS_TEXT = ["The capital of France is Paris", "The capital of Japan is"]


def _ids(lm) -> torch.Tensor:
    return lm.tok(IDS_TEXT[:1], return_tensors="pt")["input_ids"]  # (1, tokens)


def _hooks(model) -> dict:
    """Every forward hook of every submodule, by module: what a trace must leave as it found it.

    The tests run no forward pass asking for hidden states, so transformers 5 adds no hooks of its
    own in between and the hooks after a trace are exactly those before it.
    """
    return {id(m): (dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()}


def _logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_trace_records_the_input_and_output_of_a_module(tiny_lm):
    model, spec = tiny_lm.model, tiny_lm.spec
    name = spec.mlp_out_name(model, 0)
    ids = _ids(tiny_lm)
    before = _hooks(model)
    with Trace(model, name) as t, torch.no_grad():
        model(input_ids=ids)
    assert _hooks(model) == before
    assert t.input.shape[:2] == t.output.shape[:2] == ids.shape  # (1, tokens, d)
    with torch.no_grad():
        assert torch.allclose(model.get_submodule(name)(t.input), t.output)
    with trace(model, [name]) as rec, torch.no_grad():  # the shorthand gives the same records
        model(input_ids=ids)
    assert torch.equal(rec[name].input, t.input) and torch.equal(rec[name].output, t.output)


def test_tracedict_stops_after_the_last_module_and_records_every_one(tiny_lm):
    model, spec = tiny_lm.model, tiny_lm.spec
    names = [f"{spec.blocks}.0.{spec.mlp_in}", spec.mlp_out_name(model, 0)]  # in the order they run
    ids = _ids(tiny_lm)
    before = _hooks(model)
    with Trace(model, f"{spec.blocks}.1") as later, torch.no_grad():
        with TraceDict(model, names, retain_output=False, stop=True) as rec:
            model(input_ids=ids)
            pytest.fail("the forward pass should have stopped")  # pragma: no cover
    assert later.output is None  # block 1 never ran
    assert all(rec[n].input is not None and rec[n].output is None for n in names)
    assert _hooks(model) == before
    with TraceDict(model, names) as full, torch.no_grad():  # a full pass records the same inputs
        model(input_ids=ids)
    assert all(torch.equal(full[n].input, rec[n].input) for n in names)


def test_edit_output_changes_what_the_model_computes(tiny_lm):
    model, spec = tiny_lm.model, tiny_lm.spec
    ids = _ids(tiny_lm)
    plain = _logits(model, ids)
    block = f"{spec.blocks}.0"  # a decoder block: a tensor or a tuple, depending on the family
    with Trace(model, block, edit_output=lambda out, inp: out.clone()):
        assert torch.equal(_logits(model, ids), plain)
    shift = torch.randn(model.get_input_embeddings().weight.shape[1])  # (d_model,)
    with Trace(model, block, edit_output=lambda out, inp: out + shift) as t:
        shifted = _logits(model, ids)
    assert not torch.allclose(shifted, plain)
    assert t.output is not None and t.input is not None  # the edited output is what is recorded
    with patch_output(model, block, lambda out: out + shift):
        assert torch.equal(_logits(model, ids), shifted)
    mlp = spec.mlp_out_name(model, 1)  # the edit function also sees the module's input
    with TraceDict(model, [mlp], edit_output={mlp: lambda out, inp: out + 0 * inp.sum()}):
        assert torch.equal(_logits(model, ids), plain)
    assert torch.equal(_logits(model, ids), plain)  # gone after the block


def test_outputs_kept_in_the_graph_with_detach_false(tiny_lm):
    model, spec = tiny_lm.model, tiny_lm.spec
    name = spec.mlp_out_name(model, 0)
    embeds = model.get_input_embeddings()(_ids(tiny_lm)).detach().requires_grad_(True)
    with TraceDict(model, [name], detach=False) as rec, torch.enable_grad():
        loss = model(inputs_embeds=embeds).logits.sum()
        (grad,) = torch.autograd.grad(loss, [rec[name].output])
    assert grad.shape == rec[name].output.shape and grad.abs().sum() > 0


def test_hooks_are_removed_on_errors_and_other_hooks_are_kept(tiny_lm):
    model, spec = tiny_lm.model, tiny_lm.spec
    name = spec.mlp_out_name(model, 0)
    calls = []
    theirs = model.get_submodule(name).register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        before = _hooks(model)
        with pytest.raises(RuntimeError, match="inside"):
            with TraceDict(model, [name, spec.mlp_out_name(model, 1)]):
                raise RuntimeError("inside")
        assert _hooks(model) == before
        with pytest.raises(AttributeError):  # a bad name: the hooks registered before it are removed
            with TraceDict(model, [name, "no.such.module"]):
                pass  # pragma: no cover
        assert _hooks(model) == before
        with pytest.raises(ValueError, match="boom"):  # an error raised by an edit in the forward pass
            with Trace(model, name, edit_output=lambda out, inp: (_ for _ in ()).throw(ValueError("boom"))):
                _logits(model, _ids(tiny_lm))
        assert _hooks(model) == before
        _logits(model, _ids(tiny_lm))
        assert calls  # the model's own hook still runs
    finally:
        theirs.remove()


def test_a_stop_belongs_to_the_trace_that_asked_for_it(tiny_lm):
    """An inner trace that stops later does not swallow an outer trace's earlier stop."""
    model, spec = tiny_lm.model, tiny_lm.spec
    first, second = spec.mlp_out_name(model, 0), spec.mlp_out_name(model, 1)
    with Trace(model, first, stop=True) as outer, torch.no_grad():
        with TraceDict(model, [second], stop=True) as inner:
            model(input_ids=_ids(tiny_lm))
    assert outer.output is not None and inner[second].output is None
    with pytest.raises(StopForward):  # a stop no enclosing trace asked for propagates
        with Trace(model, second):
            raise StopForward(outer)
    t = Trace(model, first)
    with t, pytest.raises(RuntimeError, match="already active"):
        t.__enter__()
    with pytest.raises(KeyError):
        TraceDict(model, [first], edit_output={second: lambda out, inp: out})


def test_key_statistics_stop_early_and_match_a_full_pass(tiny_lm):
    """stats stops the forward after the deepest layer it needs; the moments are those of full passes."""
    model, tok = tiny_lm.model, tiny_lm.tok
    texts = IDS_TEXT + ["A cat sat on the mat."]
    moments, n_tokens = stats._compute_moments(model, tok, [0, 1], texts, batch_size=2)
    names = {layer: tiny_lm.spec.mlp_out_name(model, layer) for layer in (0, 1)}
    sums = {layer: 0.0 for layer in names}
    total = 0
    for text in texts:
        ids = tok([text], return_tensors="pt")["input_ids"]
        with trace(model, list(names.values())) as rec, torch.no_grad():
            model(input_ids=ids)
        total += ids.shape[1]
        for layer, name in names.items():
            k = rec[name].input[0].double()  # (tokens, d_in)
            sums[layer] = sums[layer] + k.T @ k
    assert n_tokens == total
    for layer in names:
        assert torch.allclose(moments[layer], (sums[layer] / total).float(), atol=1e-5, rtol=1e-4)

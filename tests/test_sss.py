import pytest
import torch

from sss_core.sss import lambda_max
from sss_core.text import encode_pairs

PROMPTS = ["The capital of France is", "Paris is the capital of", "The currency of Japan is the"]
TARGETS = ["Rome", "Germany", "yen"]


def _reference(lm, prompt, target):
    """lambda_max from a leaf copy of the last hidden states fed through the LM head alone."""
    batch = encode_pairs(lm.tok, [prompt], [target])
    with torch.no_grad():
        h = lm.model(input_ids=batch.input_ids, output_hidden_states=True).hidden_states[-1]
    h = h.clone().requires_grad_(True)  # (1, tokens, d_model)
    logits = lm.model.get_output_embeddings()(h)
    logp = torch.log_softmax(logits[0, :-1], -1)
    ids = batch.input_ids[0, 1:]
    mask = batch.predict_mask[0]
    nll = -(logp[torch.arange(len(ids)), ids] * mask).sum() / mask.sum()
    (g,) = torch.autograd.grad(nll, h)
    return g.pow(2).sum() / batch.input_ids.shape[1]


def test_lambda_max_matches_reference_on_default_model(default_lm):
    got = lambda_max(default_lm.model, default_lm.tok, PROMPTS, TARGETS)
    ref = torch.stack([_reference(default_lm, p, t) for p, t in zip(PROMPTS, TARGETS)])
    assert got.shape == (3,)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-9)
    assert (got > 0).all()


def test_sum_reduction_is_mean_times_token_count(default_lm):
    mean = lambda_max(default_lm.model, default_lm.tok, PROMPTS, TARGETS, reduction="mean")
    total = lambda_max(default_lm.model, default_lm.tok, PROMPTS, TARGETS, reduction="sum")
    counts = encode_pairs(default_lm.tok, PROMPTS, TARGETS).attention_mask.sum(1).float()
    torch.testing.assert_close(total, mean * counts, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="reduction"):
        lambda_max(default_lm.model, default_lm.tok, PROMPTS, TARGETS, reduction="max")


def test_batching_does_not_change_values(default_lm):
    batched = lambda_max(default_lm.model, default_lm.tok, PROMPTS, TARGETS, batch_size=3)
    single = lambda_max(default_lm.model, default_lm.tok, PROMPTS, TARGETS, batch_size=1)
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-9)


def test_create_graph_gives_a_differentiable_term(tiny_lm):
    weight = tiny_lm.spec.mlp_out_module(tiny_lm.model, 0).weight
    weight.requires_grad_(True)
    try:
        lam = lambda_max(tiny_lm.model, tiny_lm.tok, PROMPTS, TARGETS, create_graph=True)
        (g,) = torch.autograd.grad(lam.sum(), weight)
    finally:
        weight.requires_grad_(False)
    assert torch.isfinite(g).all() and g.abs().sum() > 0

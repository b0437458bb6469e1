"""``sss_from_hidden`` and ``lambda_max`` on hand-computed values and their defaults.

Written against the mutants mutmut left alive in sss.py (docs/testing.md): the default reduction,
the 1 / m of a one-token row, values returned without a graph unless asked, and a trainable input
embedding keeping its gradient.
"""

from __future__ import annotations

import pytest
import torch

from sss_core.sss import forward_pairs, lambda_max, sss_from_hidden
from sss_core.text import encode_for


def _toy():
    """hidden (2 rows, 3 tokens, d 2) with nll_b = sum over b's tokens of h^2 . w: dJ/dh = 2 h w."""
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 0.0], [9.0, 9.0]],
                           [[0.5, 1.0], [1.0, 1.0], [2.0, 0.0]]], requires_grad=True)
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])  # row 0: one real token
    w = torch.tensor([1.0, 0.5])
    nll = (hidden.pow(2) * w).sum(-1).mul(mask).sum(1)  # (2,)
    return nll, hidden, mask


def test_sss_from_hidden_hand_computed():
    # row 0: g = 2 h w at token 0 = (2, 2) -> 8, over m = 1 token; row 1: (1, 1) (2, 1) (4, 0) -> 2 + 5 + 16 = 23, m = 3
    nll, hidden, mask = _toy()
    mean = sss_from_hidden(nll, hidden, mask)  # the default reduction is the paper's mean
    torch.testing.assert_close(mean, torch.tensor([8.0, 23.0 / 3]))
    nll, hidden, mask = _toy()
    torch.testing.assert_close(sss_from_hidden(nll, hidden, mask, reduction="sum"), torch.tensor([8.0, 23.0]))
    assert not mean.requires_grad  # no graph unless asked for
    nll, hidden, mask = _toy()
    kept = sss_from_hidden(nll, hidden, mask, create_graph=True)
    assert kept.requires_grad
    with pytest.raises(ValueError, match="reduction"):
        sss_from_hidden(*_toy(), reduction="MEAN")


def test_lambda_max_has_no_graph_unless_asked(default_lm):
    lam = lambda_max(default_lm.model, default_lm.tok, ["The capital of France is"], ["Rome"])
    assert not lam.requires_grad and lam.grad_fn is None


def test_forward_pairs_keeps_a_trainable_embeddings_gradient(tiny_lm):
    """When the input embedding is trained, its gradient must flow (the embeds are not cut off)."""
    emb = tiny_lm.model.get_input_embeddings().weight
    batch = encode_for(tiny_lm.model, tiny_lm.tok, ["The capital of France is"], ["Rome"])
    emb.requires_grad_(True)
    try:
        nll, _ = forward_pairs(tiny_lm.model, batch)
        (grad,) = torch.autograd.grad(nll.sum(), emb, allow_unused=True)
    finally:
        emb.requires_grad_(False)
    assert grad is not None and grad.abs().sum() > 0

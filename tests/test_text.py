"""text.py: right padding, (prompt, target) batches, the causal forward and the KL locality loss."""

from __future__ import annotations

import pytest
import torch

from sss_core.text import (encode_pairs, forward_hidden, forward_logits, kl_loc, pad_id, pair_batch, right_pad,
                           target_nll)


def test_right_pad_puts_ids_first_and_marks_them():
    ids, mask = right_pad([[5, 6, 7], [8], []], pad=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert ids.dtype == mask.dtype == torch.long
    with pytest.raises(ValueError):
        right_pad([], pad=0)


def test_pad_id_falls_back_to_zero():
    class Tok:
        pad_token_id = None
    assert pad_id(Tok()) == 0
    Tok.pad_token_id = 7
    assert pad_id(Tok()) == 7


def test_pair_batch_marks_targets_and_allows_prompt_only_rows():
    b = pair_batch([([1, 2], [3]), ([4], [])], pad=9)
    assert b.input_ids.tolist() == [[1, 2, 3], [4, 9, 9]]
    assert b.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b.target_mask.tolist() == [[False, False, True], [False, False, False]]
    assert b.predict_mask.tolist() == [[False, True], [False, False]]


def test_encode_pairs_is_pair_batch_of_the_joint_tokenisation(default_lm):
    tok = default_lm.tok
    b = encode_pairs(tok, ["The capital of France is", "Paris is in"], ["Paris", "France"])
    assert tok.decode(b.input_ids[0][b.target_mask[0]]) == " Paris"
    assert b.attention_mask.sum(1).tolist() == [len(tok("The capital of France is Paris")["input_ids"]),
                                               len(tok("Paris is in France")["input_ids"])]


def test_forward_on_padded_rows_matches_each_row_alone(default_lm):
    """Right padding does not change a row's logits or hidden states at its real tokens."""
    model, tok = default_lm.model, default_lm.tok
    b = encode_pairs(tok, ["The capital of France is", "Ba Shudyk works for"], ["Paris", "Kloustai Works"])
    with torch.no_grad():
        logits = forward_logits(model, b)
        logits_h, hidden = forward_hidden(model, b.input_ids, b.attention_mask)
        for r in range(2):
            n = int(b.attention_mask[r].sum())
            alone = model(input_ids=b.input_ids[r:r + 1, :n]).logits[0]
            assert torch.allclose(logits[r, :n], alone, atol=1e-4)
    assert torch.equal(logits, logits_h)
    assert len(hidden) == model.config.num_hidden_layers + 1 and hidden[-1].shape[:2] == b.input_ids.shape
    assert target_nll(logits, b).shape == (2,)


def test_kl_loc_is_the_masked_mean_of_kl():
    torch.manual_seed(0)
    pre, post = torch.randn(2, 3, 11), torch.randn(2, 3, 11)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    p, q = pre.softmax(-1), post.softmax(-1)
    kl = (p * (p.log() - q.log())).sum(-1)  # (2, 3)
    expected = (kl[0, 0] + kl[0, 1] + kl[1, 0]) / 3
    assert torch.allclose(kl_loc(pre, post, mask), expected, atol=1e-6)
    assert kl_loc(pre, pre, mask).abs() < 1e-6
    assert kl_loc(pre.half(), post.half(), mask).dtype == torch.float32

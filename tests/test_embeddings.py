"""Sentence embeddings: pooling, padding-independence, edited models, errors, every model family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sss_core.editors import make_editor
from sss_core.embeddings import distances_moved, embed_prompts, nearest_neighbours
from sss_core.errors import RequestError
from sss_core.types import EditRequest

PROMPTS = ["The capital of France is", "Paris is located in the country of", "The official language of Spain is"]


def _hidden(lm, prompt: str) -> torch.Tensor:
    ids = lm.tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return lm.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].float()  # (tokens, d)


def test_shape_dtype_and_determinism(default_lm):
    a = embed_prompts(default_lm.model, default_lm.tok, PROMPTS)
    b = embed_prompts(default_lm.model, default_lm.tok, PROMPTS)
    assert a.shape == (3, default_lm.model.config.n_embd) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_pooling_matches_a_single_unpadded_forward(default_lm, pooling):
    emb = embed_prompts(default_lm.model, default_lm.tok, PROMPTS, pooling=pooling, batch_size=2)
    for row, prompt in zip(emb, PROMPTS):
        h = _hidden(default_lm, prompt)
        expected = h[-1] if pooling == "last" else h.mean(0)
        np.testing.assert_allclose(row, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_last_and_mean_differ(default_lm):
    last = embed_prompts(default_lm.model, default_lm.tok, PROMPTS, pooling="last")
    mean = embed_prompts(default_lm.model, default_lm.tok, PROMPTS, pooling="mean")
    assert not np.allclose(last, mean)


def test_works_on_an_edited_model_and_reverts(default_lm):
    lm = default_lm
    before = embed_prompts(lm.model, lm.tok, PROMPTS)
    request = EditRequest("The capital of France is", "Rome", subject="France")
    with make_editor("ft-l", steps=5).edit(lm.model, lm.tok, [request]) as edited:
        during = embed_prompts(edited.model, lm.tok, PROMPTS)
    after = embed_prompts(lm.model, lm.tok, PROMPTS)
    assert distances_moved(before, during)[0] > 0
    np.testing.assert_array_equal(before, after)


def test_every_family(tiny_lm):
    emb = embed_prompts(tiny_lm.model, tiny_lm.tok, PROMPTS, pooling="mean")
    assert emb.shape == (3, 32) and np.isfinite(emb).all()


def test_errors(default_lm):
    with pytest.raises(RequestError, match="empty"):
        embed_prompts(default_lm.model, default_lm.tok, ["fine", "  "])
    with pytest.raises(RequestError, match="context"):
        embed_prompts(default_lm.model, default_lm.tok, ["word " * 500])
    with pytest.raises(ValueError, match="pooling"):
        embed_prompts(default_lm.model, default_lm.tok, PROMPTS, pooling="max")
    assert embed_prompts(default_lm.model, default_lm.tok, []).shape[0] == 0


def test_nearest_neighbours_and_distances():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    assert [i for i, _ in nearest_neighbours(pts, 0, k=2)] == [1, 3]
    assert nearest_neighbours(pts, 0, k=1)[0][1] == pytest.approx(1.0)
    assert [i for i, _ in nearest_neighbours(pts, 1, k=3, metric="cosine")][0] == 2  # same direction
    np.testing.assert_allclose(distances_moved(pts, pts + [3.0, 4.0]), [5.0] * 4)
    with pytest.raises(ValueError):
        distances_moved(pts, pts[:2])

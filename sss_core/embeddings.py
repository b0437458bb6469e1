"""Sentence embeddings of prompts from a model's last hidden states, pooled per sentence.

The embedding of a sentence is ``hidden_states[-1]`` (the final block's output after the final
norm, the same states lambda_max differentiates) at its last token (``pooling="last"``, what a
causal LM predicts the next token from) or averaged over its tokens (``pooling="mean"``).

Example:
    >>> emb = embed_prompts(lm.model, lm.tok, ["The capital of France is", "Paris is in"])
    >>> emb.shape                      # (sentences, d_model), float32 numpy on the CPU
    (2, 256)
    >>> with editor.edit(lm.model, lm.tok, [request]) as edited:
    ...     after = embed_prompts(edited.model, lm.tok, prompts)   # the same sentences, edited model
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from .errors import RequestError
from .locks import reads_model
from .text import forward_hidden, max_positions, pad_id, right_pad, text_ids

Pooling = Literal["last", "mean"]
POOLINGS: tuple[str, ...] = ("last", "mean")


def _encode(tok, prompts: Sequence[str], limit: int | None) -> list[list[int]]:
    """``text_ids`` of each prompt; RequestError for an empty prompt, one with no tokens, one past
    ``limit`` or one holding a special token of ``tok``."""
    rows = []
    for prompt in prompts:
        if not prompt or not prompt.strip():
            raise RequestError("cannot embed an empty sentence")
        ids = text_ids(tok, prompt)
        if not ids:
            raise RequestError(f"the sentence {prompt!r} has no tokens")
        if limit is not None and len(ids) > limit:
            raise RequestError(f"the sentence {prompt[:60]!r}... has {len(ids)} tokens, more than the model's "
                               f"context of {limit}; shorten it")
        rows.append(ids)
    return rows


EMBED_BATCH = 64  # sentences per forward pass when embedding (the padding of a batch moves an embedding's last bits)


@dataclass(frozen=True)
class SentenceStates:
    """What one forward pass over some sentences gives: pooled embeddings and the next-token guess."""

    pooled: dict[str, np.ndarray]  # pooling -> (n, d_model) float32
    next_token_ids: np.ndarray  # (n,) the most likely token after each sentence
    next_token_probs: np.ndarray  # (n,) its probability


@reads_model
@torch.no_grad()
def sentence_states(model: nn.Module, tok, prompts: Sequence[str], poolings: Sequence[str] = POOLINGS,
                    batch_size: int = EMBED_BATCH, layer: int = -1) -> SentenceStates:
    """Every pooling of ``prompts``' hidden states and their next-token predictions, in one pass.

    ``layer`` indexes ``hidden_states`` (-1: the last, after the final norm; 0: the input
    embeddings). Batches are right-padded by hand, so the tokenizer's padding side does not matter.
    Each sentence is read as ``text.text_ids`` gives it (a leading BOS kept, an appended EOS not),
    so "last" pools its own last token and "mean" its own tokens. Returns pooled arrays
    (len(prompts), d_model) per pooling, next-token ids and probabilities (len(prompts),).

    Raises:
        ValueError: an unknown pooling, or batch_size < 1.
        RequestError: an empty sentence, one longer than the model's context, or one holding a
            special token of ``tok``.
    """
    bad = [p for p in poolings if p not in POOLINGS]
    if bad:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {bad[0]!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rows = _encode(tok, prompts, max_positions(model))
    if not rows:
        d = getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd", 0)
        return SentenceStates({p: np.zeros((0, d), dtype=np.float32) for p in poolings},
                              np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    device = model.get_input_embeddings().weight.device
    pad = pad_id(tok)
    pooled: dict[str, list[torch.Tensor]] = {p: [] for p in poolings}
    ids_out, probs_out = [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        lengths = torch.tensor([len(r) for r in chunk], device=device)
        ids, mask = right_pad(chunk, pad, device)  # (batch, tokens) each
        logits, hidden_states = forward_hidden(model, ids, mask)
        hidden = hidden_states[layer].float()  # (batch, tokens, d_model)
        last = torch.arange(len(chunk), device=device), lengths - 1
        for p in poolings:
            h = hidden[last] if p == "last" else (hidden * mask[..., None]).sum(1) / lengths[:, None]
            pooled[p].append(h.cpu())  # (batch, d_model)
        prob, top = torch.softmax(logits[last].float(), -1).max(-1)  # (batch,)
        ids_out.append(top.cpu())
        probs_out.append(prob.cpu())
    return SentenceStates({p: torch.cat(v).numpy() for p, v in pooled.items()},
                          torch.cat(ids_out).numpy(), torch.cat(probs_out).numpy())


@reads_model
def embed_prompts(model: nn.Module, tok, prompts: Sequence[str], pooling: Pooling = "last",
                  batch_size: int = EMBED_BATCH, layer: int = -1) -> np.ndarray:
    """Embed each prompt with ``model`` (edited or not). Returns (len(prompts), d_model) float32.

    See ``sentence_states`` for ``layer`` and padding; it also gives every pooling in one pass.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    return sentence_states(model, tok, prompts, (pooling,), batch_size, layer).pooled[pooling]


def distances_moved(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Euclidean distance each sentence moved in the full embedding space. (n, d), (n, d) -> (n,)."""
    if before.shape != after.shape:
        raise ValueError(f"before {before.shape} and after {after.shape} differ in shape")
    return np.linalg.norm(after.astype(np.float64) - before.astype(np.float64), axis=1)


def nearest_neighbours(points: np.ndarray, index: int, k: int = 5,
                       metric: Literal["euclidean", "cosine"] = "euclidean") -> list[tuple[int, float]]:
    """The ``k`` points nearest to ``points[index]`` (itself excluded), as (index, distance), nearest first."""
    x = points.astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms == 0, 1, norms)
        dist = 1 - x @ x[index]
    elif metric == "euclidean":
        dist = np.linalg.norm(x - x[index], axis=1)
    else:
        raise ValueError(f"metric must be 'euclidean' or 'cosine', not {metric!r}")
    order = [int(i) for i in np.argsort(dist, kind="stable") if i != index][:k]
    return [(i, float(dist[i])) for i in order]

"""Tokenise (prompt, target) pairs into one right-padded batch with the target positions marked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import RequestError


@dataclass(frozen=True)
class PairBatch:
    input_ids: torch.Tensor  # (batch, tokens) prompt ids then target ids, right-padded
    attention_mask: torch.Tensor  # (batch, tokens) 1 on real tokens
    target_mask: torch.Tensor  # (batch, tokens) True where the token belongs to the target

    @property
    def predict_mask(self) -> torch.Tensor:
        """(batch, tokens-1): True where logits[:, t] predicts a target token input_ids[:, t+1]."""
        return self.target_mask[:, 1:]


def target_ids(tok, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Ids of ``prompt`` and of `` target`` as they appear in ``prompt + " " + target``.

    Tokenising the joint string and splitting at the prompt's length keeps the boundary tokens the
    model would see; where the joint tokenisation does not start with the prompt's ids (a merge
    across the boundary), the target is tokenised on its own.
    """
    p = tok(prompt)["input_ids"]
    joint = tok(prompt + " " + target)["input_ids"]
    if joint[:len(p)] == p and len(joint) > len(p):
        return p, joint[len(p):]
    return p, tok(" " + target, add_special_tokens=False)["input_ids"]


def encode_pairs(tok, prompts: Sequence[str], targets: Sequence[str],
                 device: torch.device | str = "cpu", max_length: int | None = None) -> PairBatch:
    """Batch ``prompt + " " + target`` for teacher forcing.

    Example:
        >>> b = encode_pairs(tok, ["The capital of France is"], ["Paris"])
        >>> b.input_ids[b.target_mask]     # the ids of " Paris"
    """
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    rows = [target_ids(tok, p, t) for p, t in zip(prompts, targets)]
    width = max(len(p) + len(t) for p, t in rows)
    if max_length is not None and width > max_length:
        longest = max(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1]))
        raise RequestError(f"prompt + target is {width} tokens but the model reads at most {max_length}: "
                           f"shorten {prompts[longest][:60]!r}...")
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    tmask = torch.zeros((len(rows), width), dtype=torch.bool)
    for r, (p, t) in enumerate(rows):
        ids[r, :len(p) + len(t)] = torch.tensor(p + t)
        attn[r, :len(p) + len(t)] = 1
        tmask[r, len(p):len(p) + len(t)] = True
    return PairBatch(ids.to(device), attn.to(device), tmask.to(device))


def max_positions(model) -> int | None:
    """The longest input the model accepts (None when its config does not say)."""
    cfg = model.config
    return getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)


def encode_for(model, tok, prompts: Sequence[str], targets: Sequence[str]) -> PairBatch:
    """``encode_pairs`` on the model's input device, checked against its context length."""
    return encode_pairs(tok, prompts, targets, model.get_input_embeddings().weight.device, max_positions(model))


def target_nll(logits: torch.Tensor, batch: PairBatch) -> torch.Tensor:
    """Per-example mean NLL of the target tokens (paper Eq. 8).

    logits: (batch, tokens, vocab) -> (batch,)
    """
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, batch.input_ids[:, 1:, None])[..., 0]  # (batch, tokens-1)
    m = batch.predict_mask.float()
    return (nll * m).sum(1) / m.sum(1).clamp(min=1)

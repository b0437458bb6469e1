"""Text in, tensors out, written once: joining prompt and target, right padding, the causal forward.

Every batch in the project is right-padded: a causal model's real tokens never attend to the
padding after them, so the pad id does not matter and position ids need no shifting.

Example:
    >>> b = encode_pairs(tok, ["The capital of France is"], ["Paris"])
    >>> nll = target_nll(forward_logits(model, b), b)          # (batch,)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import RequestError


def pad_id(tok) -> int:
    """The tokenizer's pad id, or 0 when it has none (right padding is never attended to)."""
    return tok.pad_token_id if tok.pad_token_id is not None else 0


def right_pad(rows: Sequence[Sequence[int]], pad: int, device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows of any lengths -> (input_ids (batch, tokens), attention_mask (batch, tokens)).

    Each row's ids come first, then ``pad`` up to the longest row; the mask is 1 on the real
    tokens. ValueError for no rows.
    """
    if not rows:
        raise ValueError("no rows to pad")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[r, :len(row)] = 1
    return ids.to(device), mask.to(device)


@dataclass(frozen=True)
class PairBatch:
    """Right-padded (prompt, target) rows for teacher forcing, with the target tokens marked."""

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
    return pair_batch(rows, pad_id(tok), device)


def pair_batch(rows: Sequence[tuple[Sequence[int], Sequence[int]]], pad: int,
               device: torch.device | str = "cpu") -> PairBatch:
    """(prompt ids, target ids) per row -> a right-padded PairBatch with the target ids marked.

    A row's target may be empty (a prompt-only row: nothing marked).
    """
    ids, attn = right_pad([list(p) + list(t) for p, t in rows], pad)
    tmask = torch.zeros(ids.shape, dtype=torch.bool)
    for r, (p, t) in enumerate(rows):
        tmask[r, len(p):len(p) + len(t)] = True
    return PairBatch(ids.to(device), attn.to(device), tmask.to(device))


def max_positions(model) -> int | None:
    """The longest input the model accepts (None when its config does not say)."""
    cfg = model.config
    return getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)


def encode_for(model, tok, prompts: Sequence[str], targets: Sequence[str]) -> PairBatch:
    """``encode_pairs`` on the model's input device, checked against its context length."""
    return encode_pairs(tok, prompts, targets, input_device(model), max_positions(model))


def input_device(model) -> torch.device:
    """Where the model's input ids must be (its input embedding's device)."""
    return model.get_input_embeddings().weight.device


def forward_logits(model, batch) -> torch.Tensor:
    """The model on a right-padded batch (anything with ``input_ids`` and ``attention_mask``).

    input_ids, attention_mask: (batch, tokens) -> logits (batch, tokens, vocab). Gradients flow
    as the caller's grad mode allows.
    """
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


def forward_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The model on right-padded rows, with every layer's hidden states.

    input_ids, attention_mask: (batch, tokens) -> (logits (batch, tokens, vocab), hidden_states:
    a tuple of n_layers + 1 tensors (batch, tokens, d_model), the input embeddings first).
    """
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    return out.logits, out.hidden_states


def target_nll(logits: torch.Tensor, batch: PairBatch) -> torch.Tensor:
    """Per-example mean NLL of the target tokens (paper Eq. 8).

    logits: (batch, tokens, vocab) -> (batch,)
    """
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, batch.input_ids[:, 1:, None])[..., 0]  # (batch, tokens-1)
    m = batch.predict_mask.float()
    return (nll * m).sum(1) / m.sum(1).clamp(min=1)


def kl_loc(pre_logits: torch.Tensor, post_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens of KL(pre || post), in nats: the locality loss L_loc of MEND (Mitchell et al., 2022).

    pre_logits, post_logits: (batch, tokens, vocab); mask: (batch, tokens), 1 on real tokens -> scalar.
    Computed in float32 whatever the logits' dtype.
    """
    pre = torch.log_softmax(pre_logits.float(), -1)
    post = torch.log_softmax(post_logits.float(), -1)
    kl = (pre.exp() * (pre - post)).sum(-1)  # (batch, tokens)
    return (kl * mask).sum() / mask.sum().clamp(min=1)

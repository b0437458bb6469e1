"""The SSS metric lambda_max (paper Eq. 9) and the SSS loss term (Eq. 10).

lambda_max = (1/m) * sum_i ||dJ/dh_i||^2, with J the per-token NLL of the target given the prompt
and h_i the last hidden state of token i (``hidden_states[-1]``, after the final norm). Small
values mean a robust embedding, i.e. a semantically sparse neighbourhood.

m counts every real token fed to the model (prompt and target), since the target is fed for
teacher forcing and its hidden states receive gradient too. ``reduction="sum"`` drops the 1/m, as
the authors' released code does.

Example:
    >>> lambda_max(lm.model, lm.tok, ["The capital of France is"], ["Paris"])
    tensor([0.0123])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from torch import nn

from .errors import RequestError
from .locks import reads_model
from .text import PairBatch, encode_for, target_nll

Reduction = Literal["mean", "sum"]


def sss_from_hidden(nll: torch.Tensor, hidden: torch.Tensor, attention_mask: torch.Tensor,
                    reduction: Reduction = "mean", create_graph: bool = False) -> torch.Tensor:
    """lambda_max per example from a forward pass that already produced ``nll`` and ``hidden``.

    nll: (batch,) per-example target NLL; hidden: (batch, tokens, d_model) = hidden_states[-1];
    attention_mask: (batch, tokens). Returns (batch,). Examples do not interact, so the gradient
    of the summed NLL w.r.t. ``hidden`` is each example's own gradient.
    With ``create_graph=True`` the result is differentiable (double backward) for use in a loss.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' (the paper) or 'sum' (the authors' code), not {reduction!r}")
    (grad,) = torch.autograd.grad(nll.sum(), hidden, create_graph=create_graph)
    per_token = grad.float().pow(2).sum(-1) * attention_mask  # (batch, tokens)
    total = per_token.sum(1)
    return total / attention_mask.sum(1).clamp(min=1) if reduction == "mean" else total


def forward_pairs(model: nn.Module, batch: PairBatch, embeds_require_grad: bool = True, layer: int = -1):
    """Forward ``batch``; returns (per-example NLL (batch,), hidden_states[layer] (batch, tokens, d)).

    ``layer`` indexes transformers' ``hidden_states`` (``check_layer``): -1 the last (after the final
    norm; the paper and the authors' code), 0 the input embeddings, i the hidden states after i blocks (the
    output of block i-1, blocks counted from 0 as the editors' ``layer`` counts them). The input
    embeddings are made to require grad so the hidden states have a graph even when every parameter
    is frozen (always for ``layer`` 0, whose gradient is taken at the embeddings themselves).
    """
    embeds = model.get_input_embeddings()(batch.input_ids)
    if (embeds_require_grad or check_layer(model, layer) == 0) and not embeds.requires_grad:
        embeds = embeds.detach().requires_grad_(True)
    out = model(inputs_embeds=embeds, attention_mask=batch.attention_mask, output_hidden_states=True)
    return target_nll(out.logits, batch), out.hidden_states[layer]


def n_hidden_states(model: nn.Module) -> int:
    """How many hidden states the model returns: its blocks + 1 (the input embeddings first)."""
    cfg = model.config
    n = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    if n is None:
        raise RequestError("the model's config names no layer count (num_hidden_layers / n_layer)")
    return int(n) + 1


def check_layer(model: nn.Module, layer: int) -> int:
    """``layer`` as a non-negative index of ``hidden_states``; RequestError naming the range when out of it."""
    n = n_hidden_states(model)
    if not -n <= layer < n:
        raise RequestError(f"lambda_max's layer must be in -{n}..{n - 1} for this model (0: the input embeddings, "
                           f"i: after i blocks, i.e. block i-1's output, -1 = {n - 1}: the last hidden states), got {layer}")
    return layer % n


@reads_model
def lambda_max(model: nn.Module, tok, prompts: Sequence[str], targets: Sequence[str],
               reduction: Reduction = "mean", create_graph: bool = False,
               batch_size: int = 64, layer: int = -1) -> torch.Tensor:
    """lambda_max for each (prompt, target) pair, batched. Returns (n,) float32 on the model's device.

    ``layer``: which hidden states the gradient is read at (``forward_pairs``; -1, the last, is the
    paper's). Raises RequestError for a layer the model does not have or a bad text.
    """
    check_layer(model, layer)
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = encode_for(model, tok, prompts[start:start + batch_size], targets[start:start + batch_size])
        with torch.enable_grad():
            nll, hidden = forward_pairs(model, batch, layer=layer)
            lam = sss_from_hidden(nll, hidden, batch.attention_mask, reduction, create_graph)
        out.append(lam if create_graph else lam.detach())
    return torch.cat(out)


@reads_model
def lambda_max_by_layer(model: nn.Module, tok, prompts: Sequence[str], targets: Sequence[str],
                        reduction: Reduction = "mean", batch_size: int = 64) -> torch.Tensor:
    """lambda_max of each pair read at every hidden state at once (one backward pass per batch).

    Returns (n, n_hidden_states) float32 on the CPU: column 0 the input embeddings, column i the
    hidden states after i blocks (block i-1's output), the last column the last hidden states
    (``lambda_max``'s default). Raises
    RequestError for a bad text.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' (the paper) or 'sum' (the authors' code), not {reduction!r}")
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = encode_for(model, tok, prompts[start:start + batch_size], targets[start:start + batch_size])
        with torch.enable_grad():
            embeds = model.get_input_embeddings()(batch.input_ids).detach().requires_grad_(True)
            res = model(inputs_embeds=embeds, attention_mask=batch.attention_mask, output_hidden_states=True)
            hidden = (embeds, *res.hidden_states[1:])  # hidden_states[0] is the embeddings (maybe scaled)
            grads = torch.autograd.grad(target_nll(res.logits, batch).sum(), hidden)
        mask = batch.attention_mask
        per_layer = [(g.float().pow(2).sum(-1) * mask).sum(1) for g in grads]  # each (batch,)
        lam = torch.stack(per_layer, 1)  # (batch, layers)
        out.append((lam / mask.sum(1, keepdim=True).clamp(min=1) if reduction == "mean" else lam).detach().cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class TokenLambda:
    """lambda_max of one (prompt, target) pair split over its tokens: each token's share of the sum.

    ``tokens``: every token fed to the model (prompt then target), as text; ``per_token``: each token's
    ||dJ/dh_i||^2 at the chosen hidden states (J the target's mean NLL, paper Eq. 9); ``lambda_max`` the
    pair's lambda_max (their mean for "mean", their sum for "sum"); ``n_prompt`` how many tokens are the
    prompt's. ``shares()`` gives each token's part of the total (they sum to 1).
    """

    tokens: tuple[str, ...]
    per_token: tuple[float, ...]
    lambda_max: float
    n_prompt: int
    layer: int

    def shares(self) -> tuple[float, ...]:
        """Each token's share of sum_i ||dJ/dh_i||^2, in [0, 1]; all 0 when the sum is 0."""
        total = sum(self.per_token)
        return tuple(v / total if total > 0 else 0.0 for v in self.per_token)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the tokens, the per-token values and shares, lambda_max, the prompt's token count, the layer."""
        return {"tokens": list(self.tokens), "per_token": list(self.per_token), "shares": list(self.shares()),
                "lambda_max": self.lambda_max, "n_prompt": self.n_prompt, "layer": self.layer}


@reads_model
def lambda_max_tokens(model: nn.Module, tok, prompt: str, target: str, reduction: Reduction = "mean",
                      layer: int = -1) -> TokenLambda:
    """lambda_max of ``prompt`` + ``target`` and each token's part of it (a salience strip over the text).

    The same computation as ``lambda_max`` (Eq. 9: (1/m) sum_i ||dJ/dh_i||^2 over the m tokens fed),
    stopped before the sum. Raises RequestError for a bad text or layer.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' (the paper) or 'sum' (the authors' code), not {reduction!r}")
    check_layer(model, layer)
    batch = encode_for(model, tok, [prompt], [target])
    with torch.enable_grad():
        nll, hidden = forward_pairs(model, batch, layer=layer)
        (grad,) = torch.autograd.grad(nll.sum(), hidden)
    mask = batch.attention_mask[0].bool()
    per_token = grad[0].float().pow(2).sum(-1)[mask]  # (m,)
    ids = batch.input_ids[0][mask].tolist()
    total = float(per_token.sum())
    value = total / max(len(ids), 1) if reduction == "mean" else total
    n_prompt = int((~batch.target_mask[0][mask]).sum())
    return TokenLambda(tuple(tok.convert_tokens_to_string([t]) for t in tok.convert_ids_to_tokens(ids)),
                       tuple(per_token.tolist()), value, n_prompt, check_layer(model, layer))

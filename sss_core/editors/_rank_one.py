"""The maths ROME and MEMIT share, written once.

An MLP output projection W (out, in) is read as a key-value memory: the key k is its input at the
last token of the subject, the value W k its output there. An edit

1. finds the key k* of the subject (averaged over a few context prefixes, so it does not depend
   on the exact wording before the subject),
2. optimises a change delta of the MLP output at that token so that the model predicts the new
   target (NLL over prefixed prompts), keeps what it says about the subject otherwise (KL on
   "{subject} is a") and stays small (weight decay, norm clamp): v* = W k* + delta,
3. writes the pair into W in closed form, weighting other keys by C = E[k k^T] (``stats.py``):
   ROME exactly (rank one), MEMIT in the least-squares sense over many pairs and layers.

All functions take and return tensors on the model's device unless said otherwise.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from ..errors import RequestError
from ..hooks import patch_output, trace
from ..models import ArchSpec
from ..text import PairBatch, target_ids
from ..types import EditRequest
from .base import check_finite

log = logging.getLogger(__name__)

# Words that start the generated context prefixes; cycled when more prefixes are asked for.
PREFIX_STARTS = ("The", "It", "In", "A", "This", "When", "He", "She")


def subject_last_index(tok, text: str, subject: str, start: int = 0) -> int:
    """Index of the token holding the last character of ``subject``'s first occurrence in ``text``.

    ``start`` is where to begin looking (after a context prefix). Token indices are those of
    ``tok(text)["input_ids"]`` (special tokens included), the ids the model is fed.
    Example:
        >>> subject_last_index(tok, "The capital of France is", "France")   # the " France" token
        3
    """
    begin = text.find(subject, start)
    if begin < 0:
        raise RequestError(f"the subject {subject!r} does not occur in the prompt {text[start:]!r}; "
                           "type it exactly as it appears in the prompt")
    end = begin + len(subject)
    if getattr(tok, "is_fast", False):
        offsets = tok(text, return_offsets_mapping=True)["offset_mapping"]
        hits = [i for i, (a, b) in enumerate(offsets) if b > a and a < end]
        if hits:
            return hits[-1]
    return len(tok(text[:end])["input_ids"]) - 1


@torch.no_grad()
def context_prefixes(model: nn.Module, tok, n: int, length: int, seed: int = 0) -> list[str]:
    """``[""]`` plus ``n`` short texts sampled from the model itself, each ending in ". ".

    Sampling uses its own seeded generator on the CPU (top-5), so the prefixes depend only on the
    model's weights and ``seed``, never on the global random state.
    """
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    out = [""]
    for i in range(n):
        ids = tok(PREFIX_STARTS[i % len(PREFIX_STARTS)], return_tensors="pt")["input_ids"].to(device)
        past, step_ids, new = None, ids, []
        for _ in range(length):
            res = model(input_ids=step_ids, past_key_values=past, use_cache=True)
            past = res.past_key_values
            probs = torch.softmax(res.logits[0, -1].float(), -1).cpu()
            p, idx = probs.topk(min(5, probs.numel()))
            nxt = idx[torch.multinomial(p, 1, generator=gen)]
            new.append(int(nxt))
            step_ids = nxt.view(1, 1).to(device)
        text = tok.decode(ids[0].tolist() + new, skip_special_tokens=True)
        text = " ".join(text.replace("{", " ").replace("}", " ").split()).rstrip(" .")
        out.append(text + ". ")
    return out


@dataclass(frozen=True)
class EditRows:
    """Every request in every prefix, then one KL row per request, as one right-padded batch."""

    batch: PairBatch  # (rows, tokens); target_mask marks the new target's tokens (none on KL rows)
    lookup: torch.Tensor  # (rows,) index of the last subject token
    owner: torch.Tensor  # (rows,) which request the row belongs to
    is_kl: torch.Tensor  # (rows,) bool: "{subject} is a" rows
    last: torch.Tensor  # (rows,) index of the last prompt token
    n_requests: int

    @property
    def n_rows(self) -> int:
        return int(self.owner.numel())


def build_rows(tok, requests: Sequence[EditRequest], prefixes: Sequence[str], kl_prompt: str,
               device: torch.device) -> EditRows:
    """Tokenise ``prefix + prompt + " " + target`` for each (request, prefix), plus KL rows."""
    if "{}" not in kl_prompt:
        raise RequestError(f"the KL prompt must contain '{{}}' for the subject, got {kl_prompt!r}")
    seqs: list[tuple[list[int], int]] = []  # (ids, prompt length)
    lookup, owner, is_kl = [], [], []
    for i, r in enumerate(requests):
        r.validate(needs_subject=True)
        for prefix in prefixes:
            text = prefix + r.prompt
            p, t = target_ids(tok, text, r.target_new)
            seqs.append((p + t, len(p)))
            lookup.append(subject_last_index(tok, text, r.subject, start=len(prefix)))
            owner.append(i)
            is_kl.append(False)
    for i, r in enumerate(requests):
        text = kl_prompt.replace("{}", r.subject, 1)
        p = tok(text)["input_ids"]
        seqs.append((p, len(p)))
        lookup.append(subject_last_index(tok, text, r.subject, start=kl_prompt.index("{}")))
        owner.append(i)
        is_kl.append(True)
    width = max(len(ids) for ids, _ in seqs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    tmask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for r, (row, n_prompt) in enumerate(seqs):
        ids[r, :len(row)] = torch.tensor(row)
        attn[r, :len(row)] = 1
        tmask[r, n_prompt:len(row)] = True
    as_t = lambda xs, dt=torch.long: torch.tensor(xs, dtype=dt, device=device)  # noqa: E731
    return EditRows(PairBatch(ids.to(device), attn.to(device), tmask.to(device)), as_t(lookup), as_t(owner),
                    as_t(is_kl, torch.bool), as_t([n - 1 for _, n in seqs]), len(requests))


def _per_request_mean(values: torch.Tensor, rows: EditRows, select: torch.Tensor) -> torch.Tensor:
    """Average ``values`` (rows, ...) over each request's selected rows -> (n_requests, ...)."""
    owner = rows.owner[select]
    out = torch.zeros((rows.n_requests, *values.shape[1:]), dtype=values.dtype, device=values.device)
    out.index_add_(0, owner, values[select])
    count = torch.zeros(rows.n_requests, dtype=values.dtype, device=values.device)
    count.index_add_(0, owner, torch.ones_like(owner, dtype=values.dtype))
    return out / count.clamp(min=1).view(-1, *([1] * (values.dim() - 1)))


@torch.no_grad()
def keys_and_values(model: nn.Module, rows: EditRows, key_module: str,
                    value_module: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Input of ``key_module`` and output of ``value_module`` at the last subject token.

    Averaged over each request's prompt rows (all prefixes; KL rows excluded).
    Returns keys (n_requests, d_in) and values (n_requests, d_out) or None, in float32.
    """
    names = [key_module] + ([value_module] if value_module else [])
    with trace(model, names) as rec:
        model(input_ids=rows.batch.input_ids, attention_mask=rows.batch.attention_mask)
    at = torch.arange(rows.n_rows, device=rows.lookup.device)
    prompt_rows = ~rows.is_kl
    keys = _per_request_mean(rec[key_module].input[at, rows.lookup].float(), rows, prompt_rows)
    if value_module is None:
        return keys, None
    return keys, _per_request_mean(rec[value_module].output[at, rows.lookup].float(), rows, prompt_rows)


@dataclass(frozen=True)
class DeltaSettings:
    """Knobs of the delta optimisation (see the editors' configs for their meaning)."""

    lr: float
    steps: int
    kl_factor: float
    weight_decay: float
    clamp_norm_factor: float
    early_stop_nll: float


def optimise_deltas(model: nn.Module, rows: EditRows, module: str,
                    s: DeltaSettings) -> tuple[torch.Tensor, dict]:
    """Find, per request, the change of ``module``'s output at the last subject token that makes
    the model predict the new target.

    Loss per request: mean target NLL over its prompt rows + kl_factor * KL(before || after) of the
    next-token distribution on its KL row + weight_decay * ||delta||^2 / ||output||^2. Requests
    are optimised together but independently (their losses are summed and Adam is per-coordinate).
    After each step ||delta|| is clamped to clamp_norm_factor * ||output||.
    Returns deltas (n_requests, d_out) float32 and info (steps, final NLL per request).
    """
    n = rows.n_requests
    at = torch.arange(rows.n_rows, device=rows.lookup.device)
    device = rows.lookup.device
    tokens = rows.batch.input_ids.shape[1]
    select = torch.zeros((rows.n_rows, tokens), device=device)
    select[at, rows.lookup] = 1.0  # (rows, tokens): where the delta is added
    state: dict[str, torch.Tensor] = {}
    delta: torch.Tensor | None = None

    def add_delta(out: torch.Tensor) -> torch.Tensor:  # (rows, tokens, d_out)
        nonlocal delta
        if delta is None:  # first pass: size the delta from the output, keep the original norms
            state["ref_norm"] = _per_request_mean(out[at, rows.lookup].float().norm(dim=-1), rows,
                                                  ~rows.is_kl).clamp(min=1e-6).detach()
            delta = torch.zeros((n, out.shape[-1]), device=out.device, requires_grad=True)
        return out + select[..., None].to(out.dtype) * delta[rows.owner][:, None, :].to(out.dtype)

    ids, attn = rows.batch.input_ids, rows.batch.attention_mask
    predict = rows.batch.predict_mask  # (rows, tokens-1)
    labels = ids[:, 1:][predict]  # (target tokens,)
    label_row = predict.nonzero()[:, 0]  # (target tokens,) row of each target token
    n_labels = torch.zeros(rows.n_rows, device=device).index_add_(0, label_row, torch.ones_like(labels, dtype=torch.float))
    nll_rows = ~rows.is_kl
    kl_ref = None
    opt = None
    nll = torch.zeros(n, device=device)
    step = 0
    with patch_output(model, module, add_delta), torch.enable_grad():
        for step in range(s.steps):
            logits = model(input_ids=ids, attention_mask=attn).logits  # (rows, tokens, vocab)
            # log-softmax only where it is needed: large vocabularies make the full tensor costly
            tok_nll = nn.functional.cross_entropy(logits[:, :-1][predict].float(), labels, reduction="none")
            row_nll = torch.zeros(rows.n_rows, device=device).index_add(0, label_row, tok_nll) / n_labels.clamp(min=1)
            nll = _per_request_mean(row_nll, rows, nll_rows)  # (n,)
            # (n, vocab); the KL rows come in request order
            kl_lp = torch.log_softmax(logits[at, rows.last][rows.is_kl].float(), -1)
            if kl_ref is None:  # step 0 runs with delta = 0: the unedited distribution
                kl_ref = kl_lp.detach()
            kl = (kl_ref.exp() * (kl_ref - kl_lp)).sum(-1)
            decay = delta.pow(2).sum(-1) / state["ref_norm"].pow(2)
            loss = (nll + s.kl_factor * kl + s.weight_decay * decay).sum()
            check_finite(loss, step)
            if nll.max().item() < s.early_stop_nll:
                break
            if opt is None:
                opt = torch.optim.Adam([delta], lr=s.lr)
            (delta.grad,) = torch.autograd.grad(loss, [delta])
            opt.step()
            with torch.no_grad():
                limit = s.clamp_norm_factor * state["ref_norm"]
                norm = delta.norm(dim=-1)
                delta.mul_(torch.where(norm > limit, limit / norm.clamp(min=1e-12), torch.ones_like(norm))[:, None])
    log.debug("delta optimisation: %d steps, final NLL %s", step + 1, nll.detach().tolist())
    return delta.detach().float(), {"v_steps": step + 1, "v_nll": nll.detach().tolist()}


def _regularised(C: torch.Tensor, ridge: float) -> torch.Tensor:
    """C + ridge * mean(diag C) * I in float64: keys the corpus rarely shows stay well-posed."""
    C = C.double()
    return C + ridge * C.diagonal().mean() * torch.eye(C.shape[0], dtype=C.dtype, device=C.device)


def rank_one_update(C: torch.Tensor, k: torch.Tensor, r: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """ROME's closed form: the dW of least C-weighted change with dW k = r exactly.

    C: (d_in, d_in) key second moment; k: (d_in,) key; r: (d_out,) wanted change of W k.
    Returns dW (d_out, d_in) float64: r u^T / (u^T k) with u = C^-1 k.
    """
    u = torch.linalg.solve(_regularised(C, ridge), k.double())
    return torch.outer(r.double(), u) / (u @ k.double())


def least_squares_update(C: torch.Tensor, K: torch.Tensor, R: torch.Tensor, weight: float,
                         ridge: float = 0.0) -> torch.Tensor:
    """MEMIT's closed form: argmin ||dW K^T - R^T||^2 + weight * tr(dW C dW^T).

    C: (d_in, d_in); K: (n, d_in) keys; R: (n, d_out) wanted changes of W k.
    Returns dW (d_out, d_in) float64 = R^T K (weight * C + K^T K)^-1.
    """
    K, R = K.double(), R.double()
    A = weight * _regularised(C, ridge) + K.T @ K  # (d_in, d_in), symmetric positive definite
    return torch.linalg.solve(A, K.T @ R).T


def add_to_weight(spec: ArchSpec, weight: torch.Tensor, delta_out_in: torch.Tensor) -> None:
    """``weight += dW`` in place, in the parameter's own layout (GPT-2's Conv1D is (in, out))."""
    view = spec.weight_out_in(weight)
    view.add_(delta_out_in.to(device=view.device, dtype=view.dtype))


@contextmanager
def scratch_weights(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, nn.Parameter]]:
    """Let an editor change the named parameters in place; their values are restored on exit.

    The caller reads the final values inside the block (a WeightEdit then applies them).
    """
    params = dict(model.named_parameters())
    saved = {name: params[name].detach().clone() for name in names}
    try:
        yield {name: params[name] for name in names}
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)


def validate_settings(cfg) -> None:
    """Checks shared by ROMEConfig and MEMITConfig (same field names)."""
    if not (cfg.v_lr > 0 and cfg.v_lr < float("inf")):
        raise RequestError(f"v_lr must be a positive number, got {cfg.v_lr}")
    if cfg.v_steps < 1:
        raise RequestError(f"v_steps must be at least 1, got {cfg.v_steps}")
    for name in ("kl_factor", "v_weight_decay", "mom2_update_weight", "mom2_ridge"):
        if not getattr(cfg, name) >= 0:
            raise RequestError(f"{name} must be zero or positive, got {getattr(cfg, name)}")
    if not cfg.clamp_norm_factor > 0:
        raise RequestError(f"clamp_norm_factor must be positive, got {cfg.clamp_norm_factor}")
    if cfg.n_prefixes < 0 or cfg.prefix_length < 1:
        raise RequestError("n_prefixes must be >= 0 and prefix_length >= 1")
    if "{}" not in cfg.kl_prompt:
        raise RequestError(f"kl_prompt must contain '{{}}' for the subject, got {cfg.kl_prompt!r}")


class PrefixCache:
    """Context prefixes per model object, sampled on first use (weakly keyed: dies with the model).

    Reusing them keeps sequential edits on the same prompt variants, as ROME does.
    """

    def __init__(self, n: int, length: int, seed: int):
        self.n, self.length, self.seed = n, length, seed
        self._by_model: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def get(self, model: nn.Module, tok) -> list[str]:
        if model not in self._by_model:
            self._by_model[model] = context_prefixes(model, tok, self.n, self.length, self.seed)
            log.debug("context prefixes: %s", self._by_model[model])
        return self._by_model[model]

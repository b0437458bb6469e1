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

By default step 2 already optimises through the update of step 3 (``update_spread``): the
closed-form update also moves the MLP output at the prompt's other tokens, and in a batch each
request's column moves the others' outputs. On the small default model, optimising only the
patch at the subject token (the paper) left ROME at 0.76 reliability; through the update, 0.96+.

All functions take and return tensors on the model's device unless said otherwise.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from ..errors import RequestError, SSSError
from ..hooks import patch_output, trace
from ..models import ArchSpec
from ..text import (
    PairBatch,
    join_parts,
    max_positions,
    pad_id,
    pair_batch,
    subject_last_token,
    target_ids,
    template_slot,
    text_ids,
)
from ..types import EditRequest
from .base import check_finite

log = logging.getLogger(__name__)

# Words that start the generated context prefixes; cycled when more prefixes are asked for.
PREFIX_STARTS = ("The", "It", "In", "A", "This", "When", "He", "She")


def subject_last_index(tok, text: str, subject: str, start: int = 0, slot: int | None = None) -> int:
    """Index of the token holding the subject's last character in ``text_ids(tok, text)``.

    The subject is located as ``sss_core.text.subject_span`` does: at ``slot`` when a template
    put it there, else the last whole-token match at or after ``start`` (after a context prefix).
    Token indices include a leading BOS: they are the ids the model is fed.

    Example:
        >>> subject_last_index(tok, "The capital of France is", "France")   # the " France" token
        3
    """
    return subject_last_token(tok, text, subject, start, slot)


@torch.no_grad()
def context_prefixes(model: nn.Module, tok, n: int, length: int, seed: int = 0) -> list[str]:
    """``[""]`` plus ``n`` short texts sampled from the model itself, each ending in ". ".

    Sampling uses its own seeded generator on the CPU (top-5), so the prefixes depend only on the
    model's weights and ``seed``, never on the global random state. RequestError when ``length``
    tokens do not fit the model's context.
    """
    device = next(model.parameters()).device
    limit = max_positions(model)
    if n > 0 and limit is not None and length + 2 > limit:
        raise RequestError(f"prefix_length {length} does not fit the model's context of {limit} tokens: "
                           f"set prefix_length below {limit - 2}, or n_prefixes=0")
    gen = torch.Generator().manual_seed(seed)
    out = [""]
    for i in range(n):
        ids = torch.tensor([text_ids(tok, PREFIX_STARTS[i % len(PREFIX_STARTS)])], device=device)  # (1, tokens)
        new: list[int] = []
        for _ in range(length):
            # the whole prefix again each step (a few tokens): no key/value cache, whose keyword
            # transformers is renaming (past_key_values -> cache) between its 4.x and 5.x releases
            step_ids = torch.cat([ids, torch.tensor([new], dtype=ids.dtype, device=device)], 1) if new else ids
            logits = model(input_ids=step_ids, use_cache=False).logits  # (1, tokens, vocab)
            probs = torch.softmax(logits[0, -1].float(), -1).cpu()
            p, idx = probs.topk(min(5, probs.numel()))
            nxt = idx[torch.multinomial(p, 1, generator=gen)]
            new.append(int(nxt))
        text = tok.decode(ids[0].tolist() + new, skip_special_tokens=True)
        text = " ".join(text.replace("{", " ").replace("}", " ").split()).rstrip(" .")
        out.append(text + ". ")
    return out


@dataclass(frozen=True)
class EditRows:
    """Every request in every prefix, then one KL row per request, as one right-padded batch
    (fed through ``forward``: the padding is never seen)."""

    batch: PairBatch  # (rows, tokens); target_mask marks the new target's tokens (none on KL rows)
    lookup: torch.Tensor  # (rows,) index of the last subject token
    owner: torch.Tensor  # (rows,) which request the row belongs to
    is_kl: torch.Tensor  # (rows,) bool: "{subject} is a" rows
    last: torch.Tensor  # (rows,) index of the last prompt token
    n_requests: int

    @property
    def n_rows(self) -> int:
        """Number of rows of the batch (prompt variants and KL prompts of every request)."""
        return int(self.owner.numel())


# Attention patterns of a layer that ``causal_mask`` can build (transformers' ``config.layer_types``).
LAYER_TYPES = ("full_attention", "sliding_attention")


def _sliding_window(model: nn.Module) -> int | None:
    """The attention window of the model's sliding-window layers (None: every layer attends to
    all earlier tokens). Raises RequestError for an attention pattern ``causal_mask`` cannot build."""
    cfg = model.config
    layer_types = getattr(cfg, "layer_types", None)
    if layer_types is not None:
        unknown = sorted(set(layer_types) - set(LAYER_TYPES))
        if unknown:
            raise RequestError(f"ROME/MEMIT cannot follow this model's attention ({', '.join(unknown)} layers): "
                               f"their own forward pass builds only {' and '.join(LAYER_TYPES)}; use FT-L, MEND "
                               "or SERAC with this model")
        if "sliding_attention" not in layer_types:
            return None
    window = getattr(cfg, "sliding_window", None)
    if window is not None and getattr(cfg, "use_sliding_window", True) is False:
        return None
    if layer_types is not None and window is None:
        raise RequestError("the model has sliding-window layers but no sliding_window size in its config")
    return window


def causal_mask(model: nn.Module, rows: int, tokens: int) -> torch.Tensor | dict[str, torch.Tensor] | None:
    """The ready additive attention mask the model's own forward would build for right-padded rows.

    A tensor (rows, 1, tokens, tokens), 0 where attention is allowed: token q sees tokens
    kv <= q, and with a sliding window (Mistral, Qwen2) only q - window < kv <= q, as
    transformers' ``sliding_window_overlay``. A model with both full and sliding-window layers
    (``config.layer_types``) gets {"full_attention": mask, "sliding_attention": mask}, the
    per-layer-type form its forward accepts. None for attention kernels that take no ready mask
    (flash attention: causal by itself).

    Right-padded rows need no padding mask in a causal model (their real tokens never attend to
    the padding after them), and handing transformers a ready 4D mask skips its per-call mask
    construction, which costs more than the forward pass itself on small models.

    Raises:
        RequestError: the model's attention pattern is one this forward cannot build.
    """
    window = _sliding_window(model)
    if getattr(model.config, "_attn_implementation", "eager") not in ("eager", "sdpa"):
        return None
    p = next(model.parameters())
    q = torch.arange(tokens, device=p.device)
    allowed = q[None, :] <= q[:, None]  # (tokens, tokens): [q, kv]
    full = torch.zeros((tokens, tokens), dtype=p.dtype, device=p.device).masked_fill(~allowed, torch.finfo(p.dtype).min)
    full = full[None, None].expand(rows, 1, tokens, tokens)
    if window is None:
        return full
    near = allowed & (q[None, :] > q[:, None] - window)
    windowed = torch.zeros((tokens, tokens), dtype=p.dtype, device=p.device).masked_fill(~near, torch.finfo(p.dtype).min)
    windowed = windowed[None, None].expand(rows, 1, tokens, tokens)
    if getattr(model.config, "layer_types", None) is not None:
        return {"full_attention": full, "sliding_attention": windowed}
    return windowed


def forward(model: nn.Module, input_ids: torch.Tensor):
    """The model on right-padded ``input_ids`` (rows, tokens), with ``causal_mask`` and no cache.

    Gives the logits (rows, tokens, vocab) of the model's own forward at every real token (a test
    per family checks it). RequestError for a model whose attention ``causal_mask`` cannot build.
    """
    return model(input_ids=input_ids, attention_mask=causal_mask(model, *input_ids.shape), use_cache=False)


def check_supported(model: nn.Module) -> None:
    """RequestError, before any work, when ROME/MEMIT's own forward cannot follow the model's attention."""
    _sliding_window(model)


def _check_width(model: nn.Module, requests: Sequence[EditRequest], seqs: Sequence[tuple[list[int], int]],
                 owner: Sequence[int], prefixes: Sequence[str]) -> None:
    """RequestError naming the request whose row is longer than the model reads, and what to do."""
    limit = max_positions(model)
    if limit is None or not seqs:
        return
    longest = max(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    width = len(seqs[longest][0])
    if width > limit:
        r = requests[owner[longest]]
        extra = max((len(p) for p in prefixes), default=0)
        hint = (f"; the context prefixes add up to {extra} characters: lower prefix_length or n_prefixes"
                if extra else "")
        raise RequestError(f"the edit of {r.prompt[:60]!r} builds a row of {width} tokens but the model reads at "
                           f"most {limit}: shorten the prompt or the target{hint}")


def build_rows(model: nn.Module, tok, requests: Sequence[EditRequest], prefixes: Sequence[str],
               kl_prompt: str | None) -> EditRows:
    """Tokenise ``prefix + prompt`` joined with the target (``sss_core.text``) for each (request,
    prefix), plus KL rows (``kl_prompt`` with the subject; none when ``kl_prompt`` is None).

    The subject is located where the request puts it (its template's slot, else the last
    whole-token match in the prompt). The tensors live on the model's device.

    Raises:
        RequestError: a request without a usable subject, a bad KL prompt, or a row longer than
            the model's context (the message names the request and what to shorten).
    """
    if kl_prompt is not None and "{}" not in kl_prompt:
        raise RequestError(f"the KL prompt must contain '{{}}' for the subject, got {kl_prompt!r}")
    seqs: list[tuple[list[int], int]] = []  # (ids, prompt length)
    lookup, owner, is_kl = [], [], []
    for i, r in enumerate(requests):
        r.validate(needs_subject=True)
        slot = template_slot(r.template, r.prompt, r.subject)
        for prefix in prefixes:
            text = prefix + r.prompt
            p, t = target_ids(tok, text, r.target_new)
            seqs.append((p + t, len(p)))
            head, _ = join_parts(text, r.target_new)
            lookup.append(subject_last_index(tok, head, r.subject, start=len(prefix),
                                             slot=None if slot is None else len(prefix) + slot))
            owner.append(i)
            is_kl.append(False)
    for i, r in enumerate(requests if kl_prompt is not None else ()):
        text = kl_prompt.replace("{}", r.subject.strip(), 1)
        p = text_ids(tok, text)
        seqs.append((p, len(p)))
        lookup.append(subject_last_index(tok, text, r.subject, slot=kl_prompt.index("{}")))
        owner.append(i)
        is_kl.append(True)
    _check_width(model, requests, seqs, owner, prefixes)
    device = next(model.parameters()).device
    batch = pair_batch([(row[:n_prompt], row[n_prompt:]) for row, n_prompt in seqs], pad_id(tok), device)
    as_t = lambda xs, dt=torch.long: torch.tensor(xs, dtype=dt, device=device)  # noqa: E731
    return EditRows(batch, as_t(lookup), as_t(owner),
                    as_t(is_kl, torch.bool), as_t([n - 1 for _, n in seqs]), len(requests))


def _mean_by(values: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    """Average ``values`` (m, ...) by ``owner`` (m,) in 0..n-1 -> (n, ...); 0 where no value."""
    out = torch.zeros((n, *values.shape[1:]), dtype=values.dtype, device=values.device).index_add(0, owner, values)
    count = torch.bincount(owner, minlength=n).to(values.dtype).clamp(min=1)
    return out / count.view(-1, *([1] * (values.dim() - 1)))


def at_subject(values: torch.Tensor, rows: EditRows) -> torch.Tensor:
    """(rows, tokens, d) -> (n_requests, d): the last subject token, averaged over each request's
    prompt rows (all prefixes; KL rows excluded)."""
    at = torch.arange(rows.n_rows, device=values.device)
    prompt = ~rows.is_kl
    return _mean_by(values[at, rows.lookup].float()[prompt], rows.owner[prompt], rows.n_requests)


@torch.no_grad()
def record(model: nn.Module, rows: EditRows, inputs_of: Sequence[str] = (),
           outputs_of: Sequence[str] = ()) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One forward pass of ``rows``; the inputs and outputs of the named modules at every position.

    Returns ({name: (rows, tokens, d_in)}, {name: (rows, tokens, d_out)}), float32.
    """
    with trace(model, sorted({*inputs_of, *outputs_of})) as rec:
        forward(model, rows.batch.input_ids)
    return ({name: rec[name].input.float() for name in inputs_of},
            {name: rec[name].output.float() for name in outputs_of})


def update_spread(inputs: torch.Tensor, rows: EditRows, vectors: torch.Tensor) -> torch.Tensor:
    """How much of each request's delta a weight update dW = sum_j delta_j a_j^T adds at every position.

    inputs: (rows, tokens, d_in) keys at every position; vectors: (n_requests, d_in), the a_j.
    Returns (rows, tokens, n_requests): k_t . a_j. For ROME's exact update it is 1 at the subject's
    key and small but not zero elsewhere; optimising through it accounts for that leakage, and for
    a batch also for the requests' effect on each other.
    """
    return torch.einsum("rtd,nd->rtn", inputs.double(), vectors.double()).float()


@dataclass(frozen=True)
class DeltaSettings:
    """Knobs of the delta optimisation (see the editors' configs for their meaning)."""

    lr: float
    steps: int
    kl_factor: float
    weight_decay: float
    clamp_norm_factor: float
    early_stop_nll: float


def _subject_gain(spread: torch.Tensor, rows: EditRows) -> torch.Tensor:
    """(n_requests,) the share of its own delta that lands on each request's subject token, averaged over its
    prompt rows (1 for the paper's patch and ROME's exact update, below 1 for MEMIT's softened least squares):
    the clamp bounds the change actually made there, gain * ||delta||. ``spread``: (rows, tokens, n_requests)."""
    at = torch.arange(rows.n_rows, device=spread.device)
    prompt_rows = ~rows.is_kl
    own = spread[at, rows.lookup, rows.owner][prompt_rows]  # (prompt rows,)
    return _mean_by(own, rows.owner[prompt_rows], rows.n_requests).abs().clamp(min=1e-3)


def _target_nll(logits: torch.Tensor, ids: torch.Tensor, predict: torch.Tensor, cur: dict, n: int) -> torch.Tensor:
    """(n,) mean target NLL (nats) per request over its prompt rows of this step; 0 for a request without rows.

    logits: (rows, tokens, vocab); ids: (rows, tokens); predict: (rows, tokens - 1), True where position t
    predicts a target token; ``cur``: the step's "owner" and "is_kl" per row. Cross-entropy only where a target
    token is predicted: large vocabularies make the full log-softmax costly."""
    label_row = predict.nonzero()[:, 0]
    tok_nll = nn.functional.cross_entropy(logits[:, :-1][predict].float(), ids[:, 1:][predict], reduction="none")
    row_nll = _mean_by(tok_nll, label_row, ids.shape[0])  # (rows,)
    prompt = ~cur["is_kl"]
    return _mean_by(row_nll[prompt], cur["owner"][prompt], n)


def _kl_to_unedited(logits: torch.Tensor, last: torch.Tensor, cur: dict, kl_ref: torch.Tensor | None,
                    n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n,) KL(unedited || now) of the next-token distribution on each request's KL row of this step, and the
    unedited log-probs (n, vocab): taken on the first call, which runs with delta = 0. ``last``: (rows,) each
    row's last position."""
    kl_at = cur["is_kl"].nonzero()[:, 0]
    kl_owner = cur["owner"][kl_at]
    lp = torch.log_softmax(logits[kl_at, last[kl_at]].float(), -1)  # (active, vocab)
    if kl_ref is None:
        kl_ref = torch.zeros((n, lp.shape[-1]), device=lp.device).index_copy(0, kl_owner, lp.detach())
    ref = kl_ref[kl_owner]
    return torch.zeros(n, device=lp.device).index_add(0, kl_owner, (ref.exp() * (ref - lp)).sum(-1)), kl_ref


def _clamped_step(opt: torch.optim.Optimizer, delta: torch.Tensor, loss: torch.Tensor, active: torch.Tensor,
                  limit: torch.Tensor) -> None:
    """One Adam step of ``delta`` (n, d_out) on ``loss``; each row's norm then clamped to ``limit`` (n,), and the
    rows of requests no longer ``active`` (n,) kept as they were."""
    keep = delta.detach().clone()
    (delta.grad,) = torch.autograd.grad(loss, [delta])
    opt.step()
    with torch.no_grad():
        norm = delta.norm(dim=-1)
        delta.mul_(torch.where(norm > limit, limit / norm.clamp(min=1e-12), torch.ones_like(norm))[:, None])
        delta.copy_(torch.where(active[:, None], delta, keep))  # frozen requests keep their delta


class _SubjectDelta:
    """The output hook of ``optimise_deltas``: adds each request's delta (n, d_out) to the module's output
    (rows, tokens, d_out), spread over the step's rows and positions by ``rows["spread"]`` (rows, tokens, n).
    The first call (step 0, every request present) sizes ``delta`` (zeros, requires grad) and keeps ``ref_norm``
    (n,), ||output|| at each request's subject token before the edit, averaged over its prompt rows."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.delta: torch.Tensor | None = None
        self.ref_norm: torch.Tensor | None = None
        self.rows: dict[str, torch.Tensor] = {}  # the step's spread, owner, lookup and is_kl per row

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        cur = self.rows
        if self.delta is None:
            at = torch.arange(out.shape[0], device=out.device)
            prompt = ~cur["is_kl"]
            norms = out[at, cur["lookup"]].float().norm(dim=-1)[prompt]
            self.ref_norm = _mean_by(norms, cur["owner"][prompt], self.n).clamp(min=1e-6)
            self.delta = torch.zeros((self.n, out.shape[-1]), device=out.device, requires_grad=True)
        return out + torch.einsum("rtn,nd->rtd", cur["spread"], self.delta).to(out.dtype)


def optimise_deltas(model: nn.Module, rows: EditRows, module: str, s: DeltaSettings,
                    spread: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Find, per request, the change of ``module``'s output at the last subject token that makes
    the model predict the new target.

    ``spread`` (rows, tokens, n_requests) says how much of each request's delta each position
    receives: by default its own delta, at its last subject token only (the paper); or
    ``update_spread``, to optimise through the weight update that will actually be written.

    Loss per request: mean target NLL over its prompt rows + kl_factor * KL(before || after) of the
    next-token distribution on its KL row (skipped when kl_factor is 0) + weight_decay *
    ||gain * delta||^2 / ||output||^2, where gain is the share of its delta that lands on the
    request's subject token. Requests are optimised together (losses summed, Adam per coordinate,
    and through ``spread`` each sees the others' deltas); a request whose NLL falls below
    early_stop_nll is frozen and its rows leave the batch, so a large batch gets cheaper as it
    converges. Once every request is frozen, one step with all rows checks them again with every
    delta in place (the others' later deltas may have moved a frozen one, e.g. two facts about one
    subject); the optimisation stops only when such a full step finds all of them below the bar.
    After each step the change at the subject token is clamped to clamp_norm_factor * ||output||.
    Returns deltas (n_requests, d_out) float32 and info: "v_steps" (forward passes), "v_steps_each"
    (per request, the passes it took part in before it froze; rechecks not counted), final
    "v_nll" and "delta_norms" per request.
    """
    n, device = rows.n_requests, rows.lookup.device
    if spread is None:
        spread = torch.zeros((*rows.batch.input_ids.shape, n), device=device)
        spread[torch.arange(rows.n_rows, device=device), rows.lookup, rows.owner] = 1.0
    lengths = rows.batch.attention_mask.sum(1)  # (rows,)
    gain = _subject_gain(spread, rows)  # (n,)
    use_rows = torch.ones_like(rows.is_kl) if s.kl_factor > 0 else ~rows.is_kl
    if s.kl_factor > 0 and int(rows.is_kl.sum()) != n:
        raise ValueError("kl_factor > 0 needs one KL row per request: build the rows with a kl_prompt")
    active = torch.ones(n, dtype=torch.bool, device=device)
    steps_each = torch.zeros(n, dtype=torch.long)
    recheck = False  # this step only checks frozen requests again
    final_nll = torch.zeros(n, device=device)
    kl_ref: torch.Tensor | None = None  # (n, vocab) next-token log-probs of the KL rows before the edit
    hook = _SubjectDelta(n)
    cur = hook.rows  # the rows of this step: what the hook needs
    opt = None
    step = 0
    with patch_output(model, module, hook), torch.enable_grad():
        for step in range(s.steps):
            full_pass = bool(active.all())  # every request's rows are in this step
            if not recheck:
                steps_each += active.cpu().long()
            recheck = False
            idx = (use_rows & active[rows.owner]).nonzero()[:, 0]  # rows of the requests still active
            width = int(lengths[idx].max())
            ids = rows.batch.input_ids[idx, :width]
            cur.update(spread=spread[idx, :width], owner=rows.owner[idx], lookup=rows.lookup[idx],
                       is_kl=rows.is_kl[idx])
            logits = forward(model, ids).logits  # (rows, tokens, vocab)
            nll = _target_nll(logits, ids, rows.batch.predict_mask[idx, :width - 1], cur, n)  # 0: frozen
            delta, ref_norm = hook.delta, hook.ref_norm
            loss_n = nll + s.weight_decay * (gain * delta.norm(dim=-1) / ref_norm).pow(2)
            if s.kl_factor > 0:
                kl, kl_ref = _kl_to_unedited(logits, rows.last[idx], cur, kl_ref, n)
                loss_n = loss_n + s.kl_factor * kl
            loss = loss_n[active].sum()
            check_finite(loss, step)
            final_nll = torch.where(active, nll.detach(), final_nll)
            active = active & (nll.detach() >= s.early_stop_nll)
            if not active.any():
                if full_pass:
                    break
                # requests frozen earlier were since moved by the others' deltas (through the update's
                # spread): check every request again, with every delta in place, before stopping
                active = torch.ones_like(active)
                recheck = True
                continue
            if opt is None:
                opt = torch.optim.Adam([delta], lr=s.lr)
            _clamped_step(opt, delta, loss, active, s.clamp_norm_factor * ref_norm / gain)
    delta = hook.delta.detach().float()
    log.debug("delta optimisation: %d steps, final NLL %s", step + 1, final_nll.tolist())
    return delta, {"v_steps": step + 1, "v_steps_each": steps_each.tolist(), "v_nll": final_nll.tolist(),
                   "delta_norms": delta.norm(dim=-1).tolist()}


@torch.no_grad()
def target_nll_after(model: nn.Module, rows: EditRows) -> list[float]:
    """Mean target NLL per request over its prompt rows, on the model as it is now (nats).

    Editors call it with their update written, so what they report is what the edited model
    does, not the optimiser's last value. Returns n_requests floats.
    """
    prompt = (~rows.is_kl).nonzero()[:, 0]
    ids = rows.batch.input_ids[prompt]
    width = int(rows.batch.attention_mask[prompt].sum(1).max())
    logits = forward(model, ids[:, :width]).logits  # (prompt rows, tokens, vocab)
    predict = rows.batch.predict_mask[prompt, :width - 1]
    tok_nll = nn.functional.cross_entropy(logits[:, :-1][predict].float(), ids[:, 1:width][predict],
                                          reduction="none")
    row_nll = _mean_by(tok_nll, predict.nonzero()[:, 0], len(prompt))  # (prompt rows,)
    return _mean_by(row_nll, rows.owner[prompt], rows.n_requests).tolist()


def conflicting_targets(requests: Sequence[EditRequest]) -> list[str]:
    """One warning per prompt that several requests of one batch send to different targets.

    Prompts and targets are compared as the model reads them (``sss_core.text.join_parts``), so
    "Rome" and " Rome" are the same target. Only one of the targets can hold after the edit.
    """
    by_prompt: dict[str, list[str]] = {}
    for r in requests:
        prompt, target = join_parts(r.prompt, r.target_new)
        if target not in by_prompt.setdefault(prompt, []):
            by_prompt[prompt].append(target)
    return [f"conflicting targets for {prompt!r} in one batch: {', '.join(repr(t.strip()) for t in targets)}; "
            "only one of them can hold after the edit" for prompt, targets in by_prompt.items() if len(targets) > 1]


def _regularised(C: torch.Tensor, ridge: float) -> torch.Tensor:
    """C + ridge * mean(diag C) * I in float64: keys the corpus rarely shows stay well-posed."""
    C = C.double()
    return C + ridge * C.diagonal().mean() * torch.eye(C.shape[0], dtype=C.dtype, device=C.device)


class CovarianceSolver:
    """Solves (C + ridge * mean(diag C) * I) x = b with one Cholesky factorisation, kept for reuse.

    C: (d_in, d_in) key second moment; everything in float64.
    """

    def __init__(self, C: torch.Tensor, ridge: float = 0.0):
        """Factorise ``C`` (d_in, d_in) plus the ridge once; torch.linalg.LinAlgError if not positive definite."""
        self.factor = torch.linalg.cholesky(_regularised(C, ridge))

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        """(d_in,) or (d_in, m) -> the same shape."""
        b = b.double()
        return torch.cholesky_solve(b.reshape(b.shape[0], -1), self.factor).reshape(b.shape)


def rank_one_vector(solver: CovarianceSolver, k: torch.Tensor, weight: float = 0.0) -> torch.Tensor:
    """The a of ROME's update dW = r a^T, for the wanted change r of W k.

    k: (d_in,) key. Returns a (d_in,) float64, with u = C^-1 k:
    weight = 0: a = u / (k^T u), the least C-weighted change with dW k = r exactly (ROME);
    weight > 0: a = (weight * C + k k^T)^-1 k = u / (weight + k^T u) (Sherman-Morrison), the
    least-squares form MEMIT uses, with one key.
    """
    u = solver.solve(k)
    return u / (max(weight, 0.0) + u @ k.double())


def rank_one_update(C: torch.Tensor, k: torch.Tensor, r: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """ROME's closed form: the dW of least C-weighted change with dW k = r exactly.

    C: (d_in, d_in) key second moment; k: (d_in,) key; r: (d_out,) wanted change of W k.
    Returns dW (d_out, d_in) float64: r u^T / (u^T k) with u = C^-1 k.
    """
    return torch.outer(r.double(), rank_one_vector(CovarianceSolver(C, ridge), k))


def least_squares_vectors(C: torch.Tensor, K: torch.Tensor, weight: float, ridge: float = 0.0) -> torch.Tensor:
    """The A of MEMIT's update dW = R^T A: A = K (weight * C + K^T K)^-1.

    C: (d_in, d_in); K: (n, d_in) keys. Returns A (n, d_in) float64; row i is how strongly a key
    excites request i's column of the update (about 1 for k_i itself when weight is small).
    """
    K = K.double()
    M = weight * _regularised(C, ridge) + K.T @ K  # (d_in, d_in), symmetric positive definite
    return torch.linalg.solve(M, K.T).T


def least_squares_update(C: torch.Tensor, K: torch.Tensor, R: torch.Tensor, weight: float,
                         ridge: float = 0.0) -> torch.Tensor:
    """MEMIT's closed form: argmin ||dW K^T - R^T||^2 + weight * tr(dW C dW^T).

    C: (d_in, d_in); K: (n, d_in) keys; R: (n, d_out) wanted changes of W k.
    Returns dW (d_out, d_in) float64 = R^T K (weight * C + K^T K)^-1.
    """
    return R.double().T @ least_squares_vectors(C, K, weight, ridge)


def add_to_weight(spec: ArchSpec, weight: torch.Tensor, delta_out_in: torch.Tensor) -> None:
    """``weight += dW`` in place, in the parameter's own layout (GPT-2's Conv1D is (in, out))."""
    view = spec.weight_out_in(weight)
    view.add_(delta_out_in.to(device=view.device, dtype=view.dtype))


def independent_edits(model: nn.Module, tok, requests: Sequence[EditRequest], prefixes: Sequence[str],
                      kl_prompt: str | None, side_by_side: Callable[[list[EditRequest]], list]) -> list:
    """The ``edit_each`` of a rank-one editor: each request checked alone as ``edit`` would check it
    (``build_rows``), the valid ones made together by ``side_by_side(valid requests)`` (one edit each,
    in order). Returns, in the order of ``requests``, each request's edit or the SSSError that refused it.
    Call it holding the model's lock.
    """
    out: list = [None] * len(requests)
    valid = []
    for i, r in enumerate(requests):
        try:
            build_rows(model, tok, [r], prefixes, kl_prompt)  # the checks of edit()
            valid.append(i)
        except SSSError as exc:
            out[i] = exc
    if valid:
        for i, edit in zip(valid, side_by_side([requests[i] for i in valid])):
            out[i] = edit
    return out


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
        """``n`` prefixes of ``length`` tokens per model, sampled with ``seed``."""
        self.n, self.length, self.seed = n, length, seed
        self._by_model: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def get(self, model: nn.Module, tok) -> list[str]:
        """The prefixes for ``model``: ``[""]`` and ``n`` sampled ones, the same on every call."""
        if model not in self._by_model:
            self._by_model[model] = context_prefixes(model, tok, self.n, self.length, self.seed)
            log.debug("context prefixes: %s", self._by_model[model])
        return self._by_model[model]

"""FT-L: fine-tune one block's MLP output projection on the edit, optionally with the SSS term.

L_all = (1 - C) * L + C * SSS (paper Eq. 10), where L is the target NLL given the prompt and SSS
is lambda_max on the same forward pass's last hidden states, kept differentiable (double
backward). The authors' release never applied SSS on this path; here C > 0 always does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
from torch import nn

from ..errors import EditFailed, RequestError, SSSError
from ..models import arch_spec
from ..sss import Reduction, check_layer, forward_pairs, sss_from_hidden
from ..text import PairBatch, encode_for
from ..types import EditRequest
from .base import WeightEdit, check_finite, model_lock, trainable
from .per_edit import RowWeights
from .settings import block_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FTLConfig:
    """Settings of FT-L (constrained fine-tuning), with the SSS term when ``sss_c`` > 0."""

    layer: int = field(default=0, metadata={"help": "which block's MLP output projection is trained "
                                                    "(-1 = the last block)"})
    steps: int = field(default=25, metadata={"help": "maximum optimisation steps"})
    lr: float = field(default=5e-3, metadata={
        "help": "Adam learning rate (5e-3 for the shipped model; the paper's GPT-2 XL setting is 5e-4)"})
    norm_constraint: float | None = field(default=5e-3, metadata={
        "help": "clamp each weight to +-eps of its original value; None disables "
                "(5e-3 for the shipped model; 5e-4 for GPT-2 XL in the paper)"})
    early_stop_loss: float = field(default=1e-2, metadata={"help": "stop once the edit loss is below this"})
    sss_c: float = field(default=0.0, metadata={"help": "C of L_all = (1-C)*L + C*SSS; 0 disables SSS"})
    sss_reduction: Reduction = field(default="mean", metadata={"help": "'mean' (paper) or 'sum' (authors' code)"})
    sss_layer: int = field(default=-1, metadata={
        "help": "hidden states the SSS term reads its gradient at: -1 the last (paper), 0 the input embeddings, "
                "i the hidden states after i blocks (block i-1's output; blocks count from 0)"})
    objective: Literal["target", "prompt_last"] = field(
        default="target", metadata={"help": "'target': NLL of every target token (teacher forced); "
                                            "'prompt_last': only the first target token, as the authors' FT"})
    seed: int = field(default=0, metadata={"help": "torch seed (FT-L itself is deterministic on CPU)"})

    def validate(self) -> "FTLConfig":
        """Return self; RequestError naming the first setting out of range."""
        if not 0.0 <= self.sss_c <= 1.0 or self.sss_c != self.sss_c:
            raise RequestError(f"C must be in [0, 1], got {self.sss_c}")
        if not (self.lr > 0 and self.lr < float("inf")):
            raise RequestError(f"the learning rate must be a positive number, got {self.lr}")
        if self.steps < 1:
            raise RequestError(f"steps must be at least 1, got {self.steps}")
        if self.norm_constraint is not None and not self.norm_constraint > 0:
            raise RequestError(f"norm_constraint must be positive or None, got {self.norm_constraint}")
        return self


class FTL:
    """Constrained fine-tuning of one MLP output projection (FT-L), with optional SSS."""

    def __init__(self, config: FTLConfig = FTLConfig(), name: str = "ft-l"):
        """``config`` is validated here (RequestError); ``name`` labels the results (a registry key)."""
        self.config = config.validate()
        self.name = name

    def _prepare(self, model: nn.Module, tok, requests: Sequence[EditRequest]) -> tuple[int, str, PairBatch]:
        """(trained block index, parameter name, the requests' rows with the objective's target mask).

        Raises RequestError for no request, a bad request, a layer the model lacks or a row longer
        than the model's context.
        """
        if not requests:
            raise RequestError("no edit requests given")
        layer = block_index(model, self.config.layer, "layer")
        check_layer(model, self.config.sss_layer)
        for r in requests:
            r.validate()
        pname = arch_spec(model).mlp_out_name(model, layer) + ".weight"
        batch = encode_for(model, tok, [r.prompt for r in requests], [r.target_new for r in requests])
        if self.config.objective == "prompt_last":  # keep only the first target token of each row
            first = batch.target_mask & (batch.target_mask.cumsum(1) == 1)
            batch = PairBatch(batch.input_ids, batch.attention_mask, first)
        return layer, pname, batch

    def _loss(self, nll: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-row (L_all, SSS or None): L_all = (1 - C) * L + C * SSS (paper Eq. 10); L = ``nll``.

        nll: (rows,); hidden: (rows, tokens, d_model) last hidden states; mask: (rows, tokens).
        SSS is each row's own lambda_max, differentiable (double backward) when C > 0.
        """
        cfg = self.config
        if cfg.sss_c <= 0:
            return nll, None
        sss = sss_from_hidden(nll, hidden, mask, cfg.sss_reduction, create_graph=True)
        return (1 - cfg.sss_c) * nll + cfg.sss_c * sss, sss

    def edit(self, model: nn.Module, tok, requests: Sequence[EditRequest]) -> WeightEdit:
        """Train on all ``requests`` together and return the edit (the model itself is left as it was).

        ``info["layer"]`` is the non-negative index of the trained block. Raises RequestError for
        an empty or bad request, a layer the model does not have, or a row longer than the
        model's context; EditFailed when the loss diverges.
        """
        cfg = self.config
        layer, pname, batch = self._prepare(model, tok, requests)
        torch.manual_seed(cfg.seed)
        start = time.perf_counter()
        history: list[dict[str, float]] = []
        with model_lock(model), trainable(model, [pname]) as params:
            weight = params[pname]
            base = weight.detach().clone()
            # Adam steps on an fp32 master copy (its gradient is the weight's, copied in below): in
            # fp16/bf16 Adam's eps underflows and updates vanish
            master = weight.detach().float().clone()
            eps = cfg.norm_constraint
            bounds = (base.float() - eps, base.float() + eps) if eps is not None else None
            opt = torch.optim.Adam([master], lr=cfg.lr)
            for step in range(cfg.steps):
                with torch.no_grad():
                    weight.copy_(master)
                with torch.enable_grad():
                    nll, hidden = forward_pairs(model, batch, embeds_require_grad=False, layer=cfg.sss_layer)
                    loss_edit = nll.mean()
                    loss, sss = self._loss(nll, hidden, batch.attention_mask)
                    loss, sss = loss.mean(), None if sss is None else sss.mean()
                check_finite(loss, step)
                history.append({"loss": loss_edit.item(), "sss": sss.item() if sss is not None else float("nan")})
                if loss_edit.item() < cfg.early_stop_loss:
                    break
                weight.grad = None
                loss.backward()
                master.grad = weight.grad.float()
                opt.step()
                if bounds is not None:
                    with torch.no_grad():
                        master.copy_(torch.clamp(master, *bounds))
            new = master.detach().to(weight.dtype)
        log.debug("%s: %d steps in %.3fs", self.name, len(history), time.perf_counter() - start)
        return WeightEdit(model, {pname: new}, {pname: base},
                          info={"steps": len(history), "history": history, "layer": layer})

    def edit_each(self, model: nn.Module, tok, requests: Sequence[EditRequest]) -> list[WeightEdit | SSSError]:
        """One independent edit per request, trained side by side; equal to ``edit(model, tok, [r])`` each.

        Each edit has its own copy of the trained weight (``per_edit.RowWeights``), its own Adam state,
        clamp and early stop; an edit that stopped leaves the batch. The summed loss gives each
        copy exactly its own edit's gradient, the SSS term's double backward included (rows never
        interact). Returns, in the requests' order, a ``WeightEdit`` or the error that edit raised
        (RequestError for a bad request, EditFailed for a diverging loss); ``info["batch"]`` is how
        many edits shared the batch. The model is never written.
        """
        cfg = self.config
        out: list[WeightEdit | SSSError | None] = [None] * len(requests)
        good: list[int] = []
        for i, r in enumerate(requests):
            try:
                self._prepare(model, tok, [r])
                good.append(i)
            except SSSError as exc:
                out[i] = exc
        if good:
            layer, pname, batch = self._prepare(model, tok, [requests[i] for i in good])
            torch.manual_seed(cfg.seed)
            with model_lock(model):
                trained = self._train_side_by_side(model, pname, batch)
            base = dict(model.named_parameters())[pname].detach().clone()
            for i, (new, history) in zip(good, trained):
                out[i] = (new if isinstance(new, SSSError) else
                          WeightEdit(model, {pname: new}, {pname: base},
                                     info={"steps": len(history), "history": history, "layer": layer,
                                           "batch": len(good)}))
        return out

    def _train_side_by_side(self, model: nn.Module, pname: str, batch: PairBatch
                            ) -> list[tuple[torch.Tensor | SSSError, list[dict[str, float]]]]:
        """Train one copy of ``pname`` per row of ``batch``; (new value or EditFailed, loss history) per row."""
        cfg = self.config
        weight = dict(model.named_parameters())[pname]
        base = weight.detach().float()
        masters = [base.clone().requires_grad_(True) for _ in range(batch.input_ids.shape[0])]
        bounds = (base - cfg.norm_constraint, base + cfg.norm_constraint) if cfg.norm_constraint else None
        # one fused kernel per step for all copies: Adam's elementwise passes over B full weights are
        # most of a side-by-side step's time on a CPU (same update as torch's default Adam)
        opt = torch.optim.Adam(masters, lr=cfg.lr, fused=True)
        histories: list[list[dict[str, float]]] = [[] for _ in masters]
        failed: dict[int, SSSError] = {}
        active = list(range(len(masters)))
        with RowWeights(model, {pname: masters}) as rows:
            for step in range(cfg.steps):
                if not active:
                    break
                rows.edit_of_row = active
                sub = PairBatch(*(t[active] for t in (batch.input_ids, batch.attention_mask, batch.target_mask)))
                with torch.enable_grad():
                    nll, hidden = forward_pairs(model, sub, embeds_require_grad=False, layer=cfg.sss_layer)
                    loss, sss = self._loss(nll, hidden, sub.attention_mask)
                training = []
                for j, e in enumerate(active):
                    histories[e].append({"loss": nll[j].item(),
                                         "sss": sss[j].item() if sss is not None else float("nan")})
                    if not torch.isfinite(loss[j]):
                        failed[e] = EditFailed(f"the loss became {loss[j].item()} at step {step}; the edit was "
                                               "abandoned and the model restored. Lower the learning rate or C")
                    elif nll[j].item() >= cfg.early_stop_loss:
                        training.append(j)
                if not training:
                    break
                picked = [masters[active[j]] for j in training]
                grads = torch.autograd.grad(loss[training].sum(), picked)
                for m in masters:
                    m.grad = None
                for m, g in zip(picked, grads):
                    m.grad = g.float()
                opt.step()
                if bounds is not None:
                    with torch.no_grad():
                        for m in picked:
                            m.clamp_(*bounds)
                active = [active[j] for j in training]
        return [(failed.get(i) or m.detach().to(weight.dtype), h) for i, (m, h) in enumerate(zip(masters, histories))]

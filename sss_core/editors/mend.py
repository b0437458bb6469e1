"""MEND: a hypernetwork that turns a fine-tuning gradient into an edit (Mitchell et al., 2022).

For a linear layer the gradient of the edit loss is a sum of rank-one terms, one per token:
dL/dW = sum_t delta_t x_t^T with x_t the layer input and delta_t the gradient at its output.
MEND maps each (x_t, delta_t) through a small learned network g to (x~_t, delta~_t) and writes
W' = W - lr_l * sum_t delta~_t x~_t^T, with a learned step size lr_l per layer. g is meta-trained
so that the edited model gives the new target on the edit and its paraphrases (L_edit) and
keeps its predictions elsewhere (L_loc, a KL divergence):

    L = c_edit * L_edit + c_loc * L_loc                       (MEND)
    L = C * SSS + (1 - C) * (c_edit * L_edit + c_loc * L_loc)   (MEND w/ SSS, paper Eq. 10)

SSS is lambda_max of the post-edit model on the edit, differentiable w.r.t. g (double backward).
During meta-training each row of a batch gets its own edit: the post-edit layer output is
computed as ``x @ W'^T = x @ W^T - lr * sum_t (x . x~_t) delta~_t``, exactly the forward pass
with the substituted weight, batched (a test checks it against ``torch.func.functional_call``).

Example:
    >>> editor = make_editor("mend+sss")               # loads assets/editors/mend-sss
    >>> with editor.edit(lm.model, lm.tok, [request]) as edited: ...
    >>> train_mend(lm, examples_from_cases(cases), "my-mend", MENDTrainConfig(sss_c=0.9))
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RequestError
from ..hooks import TraceDict
from ..models import arch_spec
from ..sss import Reduction, forward_pairs, sss_from_hidden
from ..text import PairBatch, encode_for, encode_pairs, forward_logits, kl_loc, max_positions
from ..types import EditCase, EditRequest
from .base import WeightEdit, model_lock
from .settings import block_indices
from .training import (ASSETS, CheckpointError, LoopConfig, TrainExample, Validator, check_fingerprint,
                       data_label, load_trained, model_fingerprint, publish, sample_batch, step_rng,
                       train_loop, training_examples)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MENDConfig:
    """Settings of a MEND editor: which trained hypernetwork, and how far its edits step."""

    checkpoint: str | None = field(default=None, metadata={
        "help": "folder of a trained MEND; None = the shipped one (mend, or mend-sss when sss_c > 0)"})
    sss_c: float = field(default=0.0, metadata={
        "help": "C the hypernetwork was meta-trained with; picks the shipped checkpoint"})
    scale: float = field(default=1.0, metadata={"help": "multiplies the learned edit step sizes"})

    def validate(self) -> "MENDConfig":
        """This config, checked; RequestError for C outside [0, 1] or a scale that is not positive."""
        if not 0.0 <= self.sss_c <= 1.0:
            raise RequestError(f"C must be in [0, 1], got {self.sss_c}")
        if not self.scale > 0:
            raise RequestError(f"scale must be positive, got {self.scale}")
        return self

    def folder(self) -> Path:
        """The checkpoint folder this config reads."""
        if self.checkpoint:
            return Path(self.checkpoint)
        return ASSETS / ("mend-sss" if self.sss_c > 0 else "mend")


@dataclass(frozen=True)
class MENDTrainConfig:
    """Settings of MEND's meta-training (``train_mend``); saved in the checkpoint's config.json."""

    layers: tuple[int, ...] = field(default=(-2, -1), metadata={"help": "blocks whose MLP output projection is edited"})
    rank: int = field(default=128, metadata={"help": "hidden width of each residual block of g"})
    n_blocks: int = field(default=1, metadata={"help": "residual blocks in g"})
    init_edit_lr: float = field(default=1e-3, metadata={"help": "initial per-layer edit step size"})
    steps: int = field(default=1000, metadata={"help": "meta-training steps"})
    batch_size: int = field(default=8, metadata={"help": "edits per step (each row its own edit)"})
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate of g"})
    lr_lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the log edit step sizes"})
    c_edit: float = field(default=0.1, metadata={"help": "weight of L_edit"})
    c_loc: float = field(default=1.0, metadata={"help": "weight of L_loc"})
    sss_c: float = field(default=0.0, metadata={"help": "C of L = C*SSS + (1-C)*L_MEND; 0 disables SSS"})
    sss_reduction: Reduction = field(default="mean", metadata={"help": "'mean' (paper) or 'sum'"})
    sss_layer: int = field(default=-1, metadata={
        "help": "hidden states the SSS term reads its gradient at: -1 the last (paper), 0 the input embeddings, "
                "i the hidden states after i blocks (block i-1's output; blocks count from 0)"})
    norm_batches: int = field(default=16, metadata={"help": "batches for g's input normalisation statistics"})
    save_every: int = field(default=200, metadata={"help": "resumable state every N steps"})
    validate: int = field(default=0, metadata={
        "help": "validation edits scored at the end (when the caller gives a validator; the CLI does for world data)"})
    seed: int = field(default=0, metadata={"help": "seeds initialisation and every step's sampling"})


class GradientTransform(nn.Module):
    """g for one layer: normalise (x, delta), residual low-rank MLP, split back."""

    def __init__(self, d_in: int, d_out: int, rank: int, n_blocks: int):
        super().__init__()
        dim = d_in + d_out
        self.d_in, self.d_out = d_in, d_out
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.down = nn.ModuleList(nn.Linear(dim, rank) for _ in range(n_blocks))
        self.up = nn.ModuleList(nn.Linear(rank, dim) for _ in range(n_blocks))
        for up in self.up:  # start as the identity: the first edits are normalised gradient steps
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)

    def forward(self, x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (n, d_in), delta: (n, d_out) -> (x~, delta~) of the same shapes."""
        z = (torch.cat([x, delta], -1).float() - self.mean) / self.std
        for down, up in zip(self.down, self.up):
            z = z + up(F.relu(down(z)))
        return z[:, :self.d_in], z[:, self.d_in:]


class MENDNet(nn.Module):
    """One GradientTransform per edited parameter plus the learned log step sizes."""

    def __init__(self, names: Sequence[str], dims: Sequence[tuple[int, int]], rank: int, n_blocks: int,
                 init_edit_lr: float):
        super().__init__()
        self.names = list(names)  # parameter names, e.g. transformer.h.3.mlp.c_proj.weight
        self.transforms = nn.ModuleList(GradientTransform(i, o, rank, n_blocks) for i, o in dims)
        self.log_lr = nn.Parameter(torch.full((len(names),), math.log(init_edit_lr)))

    def transform(self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor
                  ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(x (b, t, in), delta (b, t, out)) per parameter -> (x~, delta~), zero where mask is 0."""
        out = {}
        keep = mask.bool()  # (b, t)
        for name, g in zip(self.names, self.transforms):
            x, delta = factors[name]
            xt, dt = g(x[keep], delta[keep])
            x_new = x.new_zeros(x.shape, dtype=xt.dtype).masked_scatter(keep[..., None], xt)
            d_new = delta.new_zeros(delta.shape, dtype=dt.dtype).masked_scatter(keep[..., None], dt)
            out[name] = (x_new, d_new)
        return out


def _module_name(param_name: str) -> str:
    """The module owning a parameter: 'transformer.h.3.mlp.c_proj.weight' -> 'transformer.h.3.mlp.c_proj'."""
    return param_name.rsplit(".", 1)[0]


def edit_factors(model: nn.Module, names: Sequence[str], batch: PairBatch
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Layer inputs x (b, t, in) and output gradients delta (b, t, out) of the target NLL.

    Each row's delta is its own example's gradient (rows do not interact). Both are detached:
    MEND treats them as inputs, not as functions of the hypernetwork.
    """
    modules = [_module_name(n) for n in names]
    # detach=False: the outputs stay in the graph, to take the NLL's gradient with respect to them
    with TraceDict(model, modules, detach=False) as rec, torch.enable_grad():
        nll, _ = forward_pairs(model, batch)
        grads = torch.autograd.grad(nll.sum(), [rec[m].output for m in modules])
    return {n: (rec[m].input.detach(), g.detach()) for n, m, g in zip(names, modules, grads)}


@contextmanager
def patched(model: nn.Module, net: MENDNet, edits: dict[str, tuple[torch.Tensor, torch.Tensor]],
            rows: torch.Tensor, scale: float = 1.0) -> Iterator[None]:
    """Forward passes inside behave as if row r's weights were W - lr * sum_t delta~ x~^T of edit rows[r].

    edits: name -> (x~ (n_edits, t, in), delta~ (n_edits, t, out)); rows: (batch,) edit index per row.
    """
    lrs = net.log_lr.exp() * scale

    def make(i: int, name: str):
        xt, dt = edits[name]

        def edit(output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # x: (batch, s, in)
            a = torch.einsum("bsi,bti->bst", x.float(), xt[rows])
            return output - (lrs[i] * torch.einsum("bst,bto->bso", a, dt[rows])).to(output.dtype)
        return edit

    with TraceDict(model, [_module_name(n) for n in net.names], retain_input=False, retain_output=False,
                   edit_output={_module_name(n): make(i, n) for i, n in enumerate(net.names)}):
        yield


def weight_deltas(model: nn.Module, net: MENDNet, edits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                  scale: float = 1.0) -> dict[str, torch.Tensor]:
    """The parameter changes of the summed edits, shaped like each parameter."""
    spec = arch_spec(model)
    params = dict(model.named_parameters())
    out = {}
    for i, name in enumerate(net.names):
        xt, dt = edits[name]
        dw = torch.einsum("bto,bti->oi", dt, xt)  # (out, in)
        dw = spec.weight_out_in(dw) * (net.log_lr[i].exp() * scale)
        out[name] = -dw.to(params[name].dtype)
    return out


def mend_loss(model: nn.Module, tok, net: MENDNet, batch: Sequence[TrainExample], cfg: MENDTrainConfig,
              rng) -> dict[str, torch.Tensor]:
    """The meta-training loss of one batch of edits (MEND, or MEND w/ SSS when cfg.sss_c > 0)."""
    device = net.log_lr.device
    reqs = [ex.request for ex in batch]
    limit = max_positions(model)
    edit_batch = encode_pairs(tok, [r.prompt for r in reqs], [r.target_new for r in reqs], device, limit)
    factors = edit_factors(model, net.names, edit_batch)
    edits = net.transform(factors, edit_batch.attention_mask)
    # L_edit rows: every rewrite prompt plus one sampled paraphrase per edit
    eq_rows = list(range(len(batch)))
    eq_prompts = [ex.request.prompt for ex in batch]
    for i, ex in enumerate(batch):
        if len(ex.equiv) > 1:
            eq_rows.append(i)
            eq_prompts.append(rng.choice(ex.equiv[1:]))
    eq = encode_pairs(tok, eq_prompts, [reqs[i].target_new for i in eq_rows], device, limit)
    loc_pairs = [(i, *rng.choice(ex.loc)) for i, ex in enumerate(batch)]
    loc = encode_pairs(tok, [p for _, p, _ in loc_pairs], [a for _, _, a in loc_pairs], device, limit)
    with torch.no_grad():
        pre_logits = forward_logits(model, loc)
    with torch.enable_grad():
        with patched(model, net, edits, torch.tensor(eq_rows, device=device)):
            nll, hidden = forward_pairs(model, eq, layer=cfg.sss_layer)
            sss = None
            if cfg.sss_c > 0:  # lambda_max on the edit rows of the post-edit model, kept differentiable
                lam = sss_from_hidden(nll, hidden, eq.attention_mask, cfg.sss_reduction, create_graph=True)
                sss = lam[:len(batch)].mean()
        with patched(model, net, edits, torch.tensor([i for i, _, _ in loc_pairs], device=device)):
            post_logits = forward_logits(model, loc)
        l_edit = nll.mean()
        l_loc = kl_loc(pre_logits, post_logits, loc.attention_mask)
        plain = cfg.c_edit * l_edit + cfg.c_loc * l_loc
        loss = plain if sss is None else cfg.sss_c * sss + (1 - cfg.sss_c) * plain
    out = {"loss": loss, "edit": l_edit, "loc": l_loc}  # components keep their graphs (tests use them)
    if sss is not None:
        out["sss"] = sss
    return out


def build_net(model: nn.Module, cfg: MENDTrainConfig) -> MENDNet:
    """A fresh (identity-initialised) MENDNet for ``model``'s chosen layers.

    Raises RequestError for layers the model does not have (or one named twice; -1 is the last
    block) and for a rank or number of blocks below 1.
    """
    spec = arch_spec(model)
    params = dict(model.named_parameters())
    layers = block_indices(model, cfg.layers, "layers")
    for name in ("rank", "n_blocks"):
        if not (isinstance(getattr(cfg, name), int) and getattr(cfg, name) >= 1):
            raise RequestError(f"{name} must be a whole number of at least 1, got {getattr(cfg, name)!r}")
    names = [spec.mlp_out_name(model, layer) + ".weight" for layer in layers]
    dims = [tuple(spec.weight_out_in(params[n]).shape[::-1]) for n in names]  # (in, out)
    device = next(model.parameters()).device
    return MENDNet(names, dims, cfg.rank, cfg.n_blocks, cfg.init_edit_lr).to(device)


@torch.no_grad()
def fit_normalisation(model: nn.Module, tok, net: MENDNet, examples: Sequence[TrainExample],
                      cfg: MENDTrainConfig) -> None:
    """Set each transform's input mean and std from the gradients of ``cfg.norm_batches`` batches."""
    device = net.log_lr.device
    sums: dict[str, list] = {}
    for b in range(cfg.norm_batches):
        reqs = [ex.request for ex in sample_batch(examples, cfg.batch_size, step_rng(cfg.seed, -1 - b))]
        batch = encode_pairs(tok, [r.prompt for r in reqs], [r.target_new for r in reqs], device,
                             max_positions(model))
        keep = batch.attention_mask.bool()
        for name, (x, delta) in edit_factors(model, net.names, batch).items():
            z = torch.cat([x, delta], -1)[keep].double()
            acc = sums.setdefault(name, [0, 0.0, 0.0])
            acc[0] += z.shape[0]
            acc[1] = acc[1] + z.sum(0)
            acc[2] = acc[2] + z.pow(2).sum(0)
    for name, g in zip(net.names, net.transforms):
        n, s, s2 = sums[name]
        mean = s / n
        std = (s2 / n - mean.pow(2)).clamp(min=0).sqrt()
        g.mean.copy_(mean.float())
        g.std.copy_(std.clamp(min=std.mean().item() * 1e-2 + 1e-12).float())


def train_mend(lm, data: Sequence[TrainExample] | Sequence[EditCase], out: Path | str,
               cfg: MENDTrainConfig = MENDTrainConfig(), resume: bool = False, progress: bool = True,
               source: str | None = None, validate: Validator | None = None) -> dict:
    """Meta-train MEND (w/ SSS when cfg.sss_c > 0) for ``lm`` and save the checkpoint in ``out``.

    data: TrainExamples or EditCases (e.g. the world's train split). ``source`` names the data in
    the checkpoint; ``validate`` scores the trained editor on ``cfg.validate`` edits (a
    ``training.Trainer``). Returns the summary also written to out/config.json (losses, wall
    time, validation scores). RequestError for bad settings; CheckpointError for ``resume``
    without a saved state.
    """
    block_indices(lm.model, cfg.layers, "layers")  # the settings are checked against the model before any work
    examples = training_examples(data, cfg.sss_c, cfg.seed)
    out, model, tok = Path(out), lm.model, lm.tok
    net = build_net(model, cfg)
    if not resume:
        fit_normalisation(model, tok, net, examples, cfg)
    groups = [{"params": list(net.transforms.parameters()), "lr": cfg.lr},
              {"params": [net.log_lr], "lr": cfg.lr_lr}]
    # randomness: torch seeded by training_examples, each step's sampling by step_rng(cfg.seed, step)
    loop = LoopConfig(steps=cfg.steps, lr=cfg.lr, save_every=cfg.save_every)

    def step(i: int) -> dict[str, torch.Tensor]:
        rng = step_rng(cfg.seed, i)
        return mend_loss(model, tok, net, sample_batch(examples, cfg.batch_size, rng), cfg, rng)

    with model_lock(model):
        summary = train_loop(net, step, groups, loop, out, resume, desc=f"MEND (C={cfg.sss_c})",
                             progress=progress)
    config = {"kind": "mend", "names": net.names,
              "dims": [[g.d_in, g.d_out] for g in net.transforms], "train": asdict(cfg),
              "data": data_label(source, examples),
              "n_train_examples": len(examples), "fingerprint": model_fingerprint(model), **summary}
    return publish(out, net.state_dict, config, lambda: MEND(MENDConfig(checkpoint=str(out), sss_c=cfg.sss_c)),
                   validate, cfg.validate)


class MEND:
    """Edit with a meta-trained gradient transform (MEND, or MEND w/ SSS); exact revert."""

    def __init__(self, config: MENDConfig = MENDConfig(), name: str = "mend"):
        self.config = config.validate()
        self.name = name
        self._nets: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> MENDNet

    def load(self, model: nn.Module) -> MENDNet:
        """The hypernetwork for ``model`` (loaded once); CheckpointError if there is none for it."""
        if model in self._nets:
            return self._nets[model]
        folder = self.config.folder()
        tensors, config = load_trained(folder, "mend")
        check_fingerprint(config["fingerprint"], model, folder)
        params = dict(model.named_parameters())
        missing = [n for n in config["names"] if n not in params]
        if missing:
            raise CheckpointError(f"{folder} edits {missing[0]}, which this model does not have")
        train = config["train"]
        if abs(train["sss_c"] - self.config.sss_c) > 1e-9:
            log.warning("%s was meta-trained with C=%s, not %s", folder, train["sss_c"], self.config.sss_c)
        net = MENDNet(config["names"], [tuple(d) for d in config["dims"]], train["rank"], train["n_blocks"],
                      train["init_edit_lr"])
        net.load_state_dict(tensors)
        net.to(next(model.parameters()).device).eval().requires_grad_(False)
        self._nets[model] = net
        return net

    def edit(self, model: nn.Module, tok, requests: Sequence[EditRequest]) -> WeightEdit:
        """One forward/backward on the requests, one pass of g: the new weights (model unchanged)."""
        if not requests:
            raise RequestError("no edit requests given")
        for r in requests:
            r.validate()
        net = self.load(model)
        start = time.perf_counter()
        batch = encode_for(model, tok, [r.prompt for r in requests], [r.target_new for r in requests])
        with model_lock(model):
            factors = edit_factors(model, net.names, batch)
            with torch.no_grad():
                edits = net.transform(factors, batch.attention_mask)
                deltas = weight_deltas(model, net, edits, self.config.scale)
                params = dict(model.named_parameters())
                base = {n: params[n].detach().clone() for n in net.names}
                new = {n: base[n] + deltas[n] for n in net.names}
        log.debug("%s: edit computed in %.3fs", self.name, time.perf_counter() - start)
        return WeightEdit(model, new, base, info={"layers": [_module_name(n) for n in net.names]})

"""ROME: write one fact into one MLP output projection with a rank-one update (Meng et al., 2022).

For each request: k* = the projection's input at the last subject token (averaged over context
prefixes), delta = the change of its output there that makes the model say the new target, then
dW = delta u^T / (u^T k*) with u = C^-1 k*, C = E[k k^T] over text. Several requests are written
one after another, each computed on the weights the previous ones left; the result is one edit.

Example:
    >>> editor = ROME(ROMEConfig(layer=0))
    >>> with editor.edit(lm.model, lm.tok, [EditRequest("The capital of France is", "Rome", "France")]):
    ...     ...
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from ..errors import RequestError, SSSError
from ..models import arch_spec
from ..types import EditRequest
from . import _rank_one as R1
from .base import WeightEdit, model_lock
from .per_edit import RowWeights
from .settings import block_index
from .stats import key_second_moment, moment_paths

log = logging.getLogger(__name__)


def _f(default, help_text: str):
    """A dataclass field with a default and its help text (shown by the CLI and the app)."""
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class ROMEConfig:
    """Settings of ROME; the defaults suit the shipped model (paper values in each help text)."""

    layer: int = _f(0, "block whose MLP output projection is edited (-1 = the last). Default: best of the 4-layer default "
                       "model (measured: block 0; blocks 1-2 reach 0.6-0.7 reliability); the paper uses 17 "
                       "for GPT-2 XL, 5 for GPT-J")
    v_lr: float = _f(2.0, "Adam learning rate of the value optimisation (paper: 0.5)")
    v_steps: int = _f(40, "maximum steps of the value optimisation; most edits stop early (paper: 20)")
    early_stop_nll: float = _f(0.05, "stop optimising once the target NLL of every prompt variant is below this")
    kl_factor: float = _f(0.0625, "weight of the KL term that keeps '{subject} is a' predictions (paper: 0.0625)")
    v_weight_decay: float = _f(0.0, "weight decay on ||delta||^2 / ||MLP output||^2 (the paper uses 0.5 on "
                                     "||delta|| / ||output||^2, far weaker for large outputs; here 0.05 already "
                                     "costs reliability, measured)")
    clamp_norm_factor: float = _f(10.0, "clamp ||delta|| to this times the MLP output's norm (paper: 4)")
    kl_prompt: str = _f("{} is a", "template of the KL prompts; '{}' is replaced by the subject")
    n_prefixes: int = _f(2, "context prefixes sampled from the model, besides the bare prompt "
                            "(paper: 20, of 5 and 10 tokens); on the default model 2 lift generality "
                            "from 0.49 to 0.64")
    prefix_length: int = _f(5, "tokens sampled per context prefix")
    mom2_n_samples: int = _f(10_000, "text samples for C = E[k k^T] (paper: 100,000 Wikipedia samples)")
    mom2_text: str | None = _f(None, "text file for C, one sample per line; None = the world corpus "
                                     "(default model only); 'world' = the world corpus for any model")
    mom2_update_weight: float = _f(0.0, "0 = ROME's exact rank-one solution (W k* = v*); > 0 = the softer "
                                        "least-squares form weight*C + k k^T that MEMIT uses, with one key")
    v_through_update: bool = _f(True, "optimise delta through the rank-one update itself, which also moves the "
                                      "MLP output at the prompt's other tokens a little; False = the paper's "
                                      "patch at the last subject token only")
    mom2_ridge: float = _f(1e-3, "added to C as ridge * mean(diag C) * I so rarely seen key directions "
                                 "cannot take a huge update")
    stats_dir: str | None = _f(None, "cache folder of C; None = $SSS_CACHE_DIR or ~/.cache/sss_core/stats")
    seed: int = _f(0, "seed of the context-prefix sampling")

    def validate(self) -> "ROMEConfig":
        """Return self; RequestError naming the first setting out of range."""
        R1.validate_settings(self)
        return self

    def delta_settings(self) -> R1.DeltaSettings:
        """The knobs of the value (delta) optimisation, for ``_rank_one.optimise_deltas``."""
        return R1.DeltaSettings(self.v_lr, self.v_steps, self.kl_factor, self.v_weight_decay,
                                self.clamp_norm_factor, self.early_stop_nll)


class ROME:
    """Rank-one model editing of one MLP output projection, one request after another."""

    def __init__(self, config: ROMEConfig = ROMEConfig(), name: str = "rome"):
        """``config`` is validated here (RequestError); ``name`` labels the results (a registry key)."""
        self.config = config.validate()
        self.name = name
        self._prefixes = R1.PrefixCache(config.n_prefixes, config.prefix_length, config.seed)
        self._solvers: dict[tuple[str, str], R1.CovarianceSolver] = {}

    def _solver(self, model: nn.Module, tok, layer: int, device: torch.device) -> R1.CovarianceSolver:
        """C of block ``layer`` (non-negative), factorised once per statistics file and kept by this editor."""
        cfg = self.config
        kwargs = dict(texts=cfg.mom2_text, n_samples=cfg.mom2_n_samples, cache_dir=cfg.stats_dir)
        key = (str(moment_paths(model, [layer], **kwargs)[layer]), str(device))
        if key not in self._solvers:
            C = key_second_moment(model, tok, layer, **kwargs).to(device)
            self._solvers = {key: R1.CovarianceSolver(C, cfg.mom2_ridge)}  # keep only the latest
        return self._solvers[key]

    def edit(self, model: nn.Module, tok, requests: Sequence[EditRequest]) -> WeightEdit:
        """Write ``requests`` in order and return one edit (the model itself is left as it was).

        ``info``: "layer" (the non-negative index edited), "steps", "v_nll" (each request's target
        NLL measured on the edited model, all requests written, mean over its prompt variants),
        "v_nll_optimised" (the optimiser's last value), "delta_norms", "seconds".
        Raises RequestError, before any work, for a layer the model does not have, a request
        without a usable subject, a model whose attention ROME's forward cannot follow, or a row
        (context prefix + prompt + target) longer than the model's context.
        """
        cfg = self.config
        if not requests:
            raise RequestError("no edit requests given")
        layer = block_index(model, cfg.layer, "layer")
        for r in requests:
            r.validate(needs_subject=True)
        R1.check_supported(model)
        spec = arch_spec(model)
        module = spec.mlp_out_name(model, layer)
        pname = module + ".weight"
        device = spec.mlp_out_module(model, layer).weight.device
        kl_prompt = cfg.kl_prompt if cfg.kl_factor > 0 else None
        start = time.perf_counter()
        with model_lock(model):
            prefixes = self._prefixes.get(model, tok)
            all_rows = R1.build_rows(model, tok, requests, prefixes, kl_prompt)  # checks every row first
            solver = self._solver(model, tok, layer, device)
            infos = []
            with R1.scratch_weights(model, [pname]) as params:
                weight = params[pname]
                base = weight.detach().clone()
                for r in requests:
                    rows = R1.build_rows(model, tok, [r], prefixes, kl_prompt)
                    inputs = R1.record(model, rows, inputs_of=[module])[0][module]  # (rows, tokens, d_in)
                    key = R1.at_subject(inputs, rows)[0]  # (d_in,) k*, averaged over the prefixes
                    a = R1.rank_one_vector(solver, key, cfg.mom2_update_weight)  # (d_in,): dW = delta a^T
                    spread = R1.update_spread(inputs, rows, a[None].float()) if cfg.v_through_update else None
                    deltas, info = R1.optimise_deltas(model, rows, module, cfg.delta_settings(), spread)
                    R1.add_to_weight(spec, weight.data, torch.outer(deltas[0].double(), a))
                    infos.append(info)
                nll_after = R1.target_nll_after(model, all_rows)  # every request written
                new = weight.detach().clone()
        seconds = time.perf_counter() - start
        log.debug("%s: %d request(s) in %.3fs", self.name, len(requests), seconds)
        return WeightEdit(model, {pname: new}, {pname: base},
                          info={"layer": layer, "steps": sum(i["v_steps"] for i in infos), "v_nll": nll_after,
                                "v_nll_optimised": [x for i in infos for x in i["v_nll"]],
                                "delta_norms": [x for i in infos for x in i["delta_norms"]], "seconds": seconds})

    def edit_each(self, model: nn.Module, tok, requests: Sequence[EditRequest]) -> list[WeightEdit | SSSError]:
        """One independent edit per request, as ``edit(model, tok, [r])`` each, their deltas optimised together.

        Every edit starts from the unedited weights: its key k*, its vector a (dW = delta a^T) and its
        delta are its own (``optimise_deltas`` with each request's rows seeing only its own delta), so
        the batch changes how fast they are made, not what they are (within float tolerance: the
        rows are padded together). Returns, in order, a ``WeightEdit`` (``info["batch"]``: how many
        edits shared the batch) or the RequestError of a request that cannot be edited.
        """
        cfg = self.config
        layer = block_index(model, cfg.layer, "layer")
        R1.check_supported(model)
        module = arch_spec(model).mlp_out_name(model, layer)
        kl_prompt = cfg.kl_prompt if cfg.kl_factor > 0 else None
        with model_lock(model):
            prefixes = self._prefixes.get(model, tok)
            return R1.independent_edits(model, tok, requests, prefixes, kl_prompt,
                                        lambda valid: self._side_by_side(model, tok, valid, prefixes, layer, module))

    def _side_by_side(self, model: nn.Module, tok, requests: Sequence[EditRequest], prefixes: Sequence[str],
                      layer: int, module: str) -> list[WeightEdit]:
        """The independent edits of ``requests`` (all valid), made in one batch; hold the model's lock."""
        cfg = self.config
        spec = arch_spec(model)
        pname = module + ".weight"
        start = time.perf_counter()
        rows = R1.build_rows(model, tok, requests, prefixes, cfg.kl_prompt if cfg.kl_factor > 0 else None)
        base = dict(model.named_parameters())[pname].detach().clone()
        solver = self._solver(model, tok, layer, base.device)
        inputs = R1.record(model, rows, inputs_of=[module])[0][module]  # (rows, tokens, d_in), unedited
        keys = R1.at_subject(inputs, rows)  # (n, d_in): each request's k*
        A = torch.stack([R1.rank_one_vector(solver, k, cfg.mom2_update_weight) for k in keys])  # (n, d_in)
        spread = None
        if cfg.v_through_update:  # each row receives only its own request's update
            own = nn.functional.one_hot(rows.owner, len(requests)).to(inputs.dtype)  # (rows, n)
            spread = R1.update_spread(inputs, rows, A.float()) * own[:, None, :]
        deltas, info = R1.optimise_deltas(model, rows, module, cfg.delta_settings(), spread)
        news = []
        for delta, a in zip(deltas, A):
            new = base.clone()
            R1.add_to_weight(spec, new, torch.outer(delta.double(), a))
            news.append(new)
        prompt = ~rows.is_kl
        with RowWeights(model, {pname: news}) as per_edit:
            per_edit.edit_of_row = rows.owner[prompt]
            nll_after = R1.target_nll_after(model, rows)  # each request on its own edit
        seconds = (time.perf_counter() - start) / len(requests)
        return [WeightEdit(model, {pname: new}, {pname: base},
                           info={"layer": layer, "steps": info["v_steps_each"][i], "v_nll": [nll_after[i]],
                                 "v_nll_optimised": [info["v_nll"][i]], "delta_norms": [info["delta_norms"][i]],
                                 "seconds": seconds, "batch": len(requests)})
                for i, new in enumerate(news)]

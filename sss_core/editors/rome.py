"""ROME: write one fact into one MLP output projection with a rank-one update (Meng et al., 2022).

For each request: k* = the projection's input at the last subject token (averaged over context
prefixes), delta = the change of its output there that makes the model say the new target, then
dW = delta u^T / (u^T k*) with u = C^-1 k*, C = E[k k^T] over text. Several requests are written
one after another, each computed on the weights the previous ones left; the result is one edit.

Example:
    >>> editor = ROME(ROMEConfig(layer=1))
    >>> with editor.edit(lm.model, lm.tok, [EditRequest("The capital of France is", "Rome", "France")]):
    ...     ...
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

from torch import nn

from ..errors import RequestError
from ..models import arch_spec
from ..types import EditRequest
from . import _rank_one as R1
from .base import WeightEdit, model_lock
from .stats import key_second_moment

log = logging.getLogger(__name__)


def _f(default, help_text: str):
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class ROMEConfig:
    layer: int = _f(1, "block whose MLP output projection is edited. Default: best of the 4-layer default "
                       "model (measured); the paper uses 17 for GPT-2 XL, 5 for GPT-J")
    v_lr: float = _f(0.5, "Adam learning rate of the value optimisation (paper: 0.5)")
    v_steps: int = _f(20, "maximum steps of the value optimisation (paper: 20)")
    early_stop_nll: float = _f(0.05, "stop optimising once the target NLL of every prompt variant is below this")
    kl_factor: float = _f(0.0625, "weight of the KL term that keeps '{subject} is a' predictions (paper: 0.0625)")
    v_weight_decay: float = _f(0.5, "weight decay on ||delta||^2 / ||MLP output||^2 (paper: 0.5)")
    clamp_norm_factor: float = _f(4.0, "clamp ||delta|| to this times the MLP output's norm (paper: 4)")
    kl_prompt: str = _f("{} is a", "template of the KL prompts; '{}' is replaced by the subject")
    n_prefixes: int = _f(4, "context prefixes sampled from the model, besides the bare prompt "
                            "(paper: 20, of 5 and 10 tokens)")
    prefix_length: int = _f(5, "tokens sampled per context prefix")
    mom2_n_samples: int = _f(10_000, "text samples for C = E[k k^T] (paper: 100,000 Wikipedia samples)")
    mom2_text: str | None = _f(None, "text file for C, one sample per line; None = the world corpus "
                                     "(default model only); 'world' = the world corpus for any model")
    mom2_update_weight: float = _f(0.0, "0 = ROME's exact rank-one solution (W k* = v*); > 0 = the softer "
                                        "least-squares form weight*C + k k^T that MEMIT uses, with one key")
    mom2_ridge: float = _f(1e-3, "added to C as ridge * mean(diag C) * I so rarely seen key directions "
                                 "cannot take a huge update")
    stats_dir: str | None = _f(None, "cache folder of C; None = $SSS_CACHE_DIR or ~/.cache/sss_core/stats")
    seed: int = _f(0, "seed of the context-prefix sampling")

    def validate(self) -> "ROMEConfig":
        R1.validate_settings(self)
        return self

    def delta_settings(self) -> R1.DeltaSettings:
        return R1.DeltaSettings(self.v_lr, self.v_steps, self.kl_factor, self.v_weight_decay,
                                self.clamp_norm_factor, self.early_stop_nll)


class ROME:
    """Rank-one model editing of one MLP output projection, one request after another."""

    def __init__(self, config: ROMEConfig = ROMEConfig(), name: str = "rome"):
        self.config = config.validate()
        self.name = name
        self._prefixes = R1.PrefixCache(config.n_prefixes, config.prefix_length, config.seed)

    def edit(self, model: nn.Module, tok, requests: Sequence[EditRequest]) -> WeightEdit:
        """Write ``requests`` in order and return one edit (the model itself is left as it was)."""
        cfg = self.config
        if not requests:
            raise RequestError("no edit requests given")
        for r in requests:
            r.validate(needs_subject=True)
        spec = arch_spec(model)
        module = spec.mlp_out_name(model, cfg.layer)
        pname = module + ".weight"
        device = spec.mlp_out_module(model, cfg.layer).weight.device
        start = time.perf_counter()
        with model_lock(model):
            C = key_second_moment(model, tok, cfg.layer, texts=cfg.mom2_text, n_samples=cfg.mom2_n_samples,
                                  cache_dir=cfg.stats_dir).to(device)
            prefixes = self._prefixes.get(model, tok)
            infos = []
            with R1.scratch_weights(model, [pname]) as params:
                weight = params[pname]
                base = weight.detach().clone()
                for r in requests:
                    rows = R1.build_rows(tok, [r], prefixes, cfg.kl_prompt, device)
                    keys, _ = R1.keys_and_values(model, rows, module)  # (1, d_in)
                    deltas, info = R1.optimise_deltas(model, rows, module, cfg.delta_settings())  # (1, d_out)
                    if cfg.mom2_update_weight > 0:
                        dW = R1.least_squares_update(C, keys, deltas, cfg.mom2_update_weight, cfg.mom2_ridge)
                    else:
                        dW = R1.rank_one_update(C, keys[0], deltas[0], cfg.mom2_ridge)
                    R1.add_to_weight(spec, weight.data, dW)
                    infos.append(info)
                new = weight.detach().clone()
        seconds = time.perf_counter() - start
        log.debug("%s: %d request(s) in %.3fs", self.name, len(requests), seconds)
        return WeightEdit(model, {pname: new}, {pname: base},
                          info={"layer": cfg.layer, "steps": sum(i["v_steps"] for i in infos),
                                "v_nll": [x for i in infos for x in i["v_nll"]], "seconds": seconds})

"""MEMIT: write many facts at once, spread over several MLP layers (Meng et al., 2023).

The deltas are optimised at the last edited layer L, together for all requests: z* = h_L + delta,
where h_L is the residual stream after block L at the last subject token (adding delta to block
L's MLP output adds it to the residual). Then for each edited layer l in order, with the weights
the earlier layers left: the keys K at l, the part of delta still missing at L divided by the
number of layers left, and dW = R^T K (lambda C + K^T K)^-1.

Example:
    >>> editor = MEMIT(MEMITConfig(layers=(0, 1)))
    >>> edit = editor.edit(lm.model, lm.tok, requests)      # 100 requests, one edit
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
from .settings import as_index_tuple, block_indices
from .stats import key_second_moments

log = logging.getLogger(__name__)


def _f(default, help_text: str):
    """A dataclass field with a default and its help text (shown by the CLI and the app)."""
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class MEMITConfig:
    """Settings of MEMIT; the defaults suit the shipped model (paper values in each help text)."""

    layers: tuple[int, ...] = _f((0,), "blocks whose MLP output projections share the update (-1 = the last). Default: best "
                                       "for the 4-layer default model, which recalls facts in block 0 (measured); "
                                       "the paper uses 13-17 for GPT-2 XL, 3-8 for GPT-J")
    v_lr: float = _f(2.0, "Adam learning rate of the delta optimisation (paper: 0.5)")
    v_steps: int = _f(40, "maximum steps of the delta optimisation; converged requests leave the batch "
                           "(paper: 20 for GPT-2 XL, 25 for GPT-J)")
    early_stop_nll: float = _f(0.05, "stop once the target NLL of every request is below this")
    kl_factor: float = _f(0.0, "weight of the KL term on '{subject} is a'; 0 skips those rows, a third of "
                              "the cost of a large batch (paper: 0.0625)")
    v_weight_decay: float = _f(0.2, "weight decay on the squared change at the subject relative to the MLP "
                                     "output's norm (paper: 0.5 on ||delta|| / ||z||^2); 0.2 trades "
                                     "reliability and locality best on the default model (measured)")
    clamp_norm_factor: float = _f(10.0, "clamp the change at the subject to this times the last layer's MLP "
                                       "output norm (the paper clamps at 0.75 of the residual norm)")
    kl_prompt: str = _f("{} is a", "template of the KL prompts; '{}' is replaced by the subject")
    n_prefixes: int = _f(0, "context prefixes sampled from the model, besides the bare prompt; each one "
                            "costs a full batch (paper: 20)")
    prefix_length: int = _f(5, "tokens sampled per context prefix")
    mom2_n_samples: int = _f(10_000, "text samples for C = E[k k^T] (paper: 100,000 Wikipedia samples)")
    mom2_text: str | None = _f(None, "text file for C, one sample per line; None = the world corpus "
                                     "(default model only); 'world' = the world corpus for any model")
    mom2_update_weight: float = _f(5000.0, "lambda of lambda*C + K^T K: how strongly the update keeps other "
                                           "keys' values (paper: 20,000 for GPT-2 XL, 15,000 for GPT-J)")
    v_through_update: bool = _f(True, "optimise delta through the least-squares update (as if all of it were "
                                      "written at the last layer), which also moves the MLP output at other "
                                      "tokens; False = the paper's patch at the last subject token only")
    mom2_ridge: float = _f(1e-3, "added to C as ridge * mean(diag C) * I so rarely seen key directions "
                                 "cannot take a huge update")
    stats_dir: str | None = _f(None, "cache folder of C; None = $SSS_CACHE_DIR or ~/.cache/sss_core/stats")
    seed: int = _f(0, "seed of the context-prefix sampling")

    def __post_init__(self):
        """``layers`` given as one block index (``layers=5``) is the list of that one block."""
        if isinstance(self.layers, (int, list)) and not isinstance(self.layers, bool):
            object.__setattr__(self, "layers", as_index_tuple(self.layers, "layers"))

    def validate(self) -> "MEMITConfig":
        """Return self; RequestError naming the first setting out of range (the layers are checked
        against the model when it edits)."""
        R1.validate_settings(self)
        layers = as_index_tuple(self.layers, "layers")
        if not layers:
            raise RequestError("MEMIT needs at least one layer, e.g. layers=[0]")
        if len(set(layers)) != len(layers):
            raise RequestError(f"MEMIT layers must be distinct, got {list(layers)}")
        return self

    def delta_settings(self) -> R1.DeltaSettings:
        """The knobs of the value (delta) optimisation, for ``_rank_one.optimise_deltas``."""
        return R1.DeltaSettings(self.v_lr, self.v_steps, self.kl_factor, self.v_weight_decay,
                                self.clamp_norm_factor, self.early_stop_nll)


class MEMIT:
    """Mass editing: all requests in one batch, the update spread over several layers."""

    def __init__(self, config: MEMITConfig = MEMITConfig(), name: str = "memit"):
        """``config`` is validated here (RequestError); ``name`` labels the results (a registry key)."""
        self.config = config.validate()
        self.name = name
        self._prefixes = R1.PrefixCache(config.n_prefixes, config.prefix_length, config.seed)

    def edit(self, model: nn.Module, tok, requests: Sequence[EditRequest]) -> WeightEdit:
        """Write all ``requests`` together and return one edit (the model itself is left as it was).

        ``info``: "layers" (the non-negative indices edited), "steps", "v_nll" (each request's
        target NLL measured on the edited model after the whole batch, mean over its prompt
        variants), "v_nll_optimised" (the optimiser's last value), "delta_norms", "warnings"
        (e.g. conflicting targets for one prompt), "seconds".
        Raises RequestError, before any work, for layers the model does not have, a request
        without a usable subject, a model whose attention MEMIT's forward cannot follow, or a row
        longer than the model's context.
        """
        cfg = self.config
        if not requests:
            raise RequestError("no edit requests given")
        layers = sorted(block_indices(model, cfg.layers, "layers"))
        for r in requests:
            r.validate(needs_subject=True)
        R1.check_supported(model)
        warnings = R1.conflicting_targets(requests)
        for w in warnings:
            log.warning("%s: %s", self.name, w)
        spec = arch_spec(model)
        modules = {layer: spec.mlp_out_name(model, layer) for layer in layers}
        pnames = {layer: modules[layer] + ".weight" for layer in layers}
        last = layers[-1]
        z_module = f"{spec.blocks}.{last}"  # the residual stream after block L
        device = spec.mlp_out_module(model, last).weight.device
        start = time.perf_counter()
        with model_lock(model):
            rows = R1.build_rows(model, tok, requests, self._prefixes.get(model, tok),
                                 cfg.kl_prompt if cfg.kl_factor > 0 else None)  # checks every row first
            moments = key_second_moments(model, tok, layers, texts=cfg.mom2_text,
                                         n_samples=cfg.mom2_n_samples, cache_dir=cfg.stats_dir)
            with R1.scratch_weights(model, list(pnames.values())) as params:
                base = {name: p.detach().clone() for name, p in params.items()}
                ins, outs = R1.record(model, rows, list(modules.values()), [z_module])
                z_before = R1.at_subject(outs[z_module], rows)  # (n, d_model)
                def vectors(layer: int) -> torch.Tensor:  # A of dW = R^T A at ``layer``, from the keys in ``ins``
                    keys = R1.at_subject(ins[modules[layer]], rows)  # (n, d_in)
                    return R1.least_squares_vectors(moments[layer].to(device), keys, cfg.mom2_update_weight,
                                                    cfg.mom2_ridge)  # (n, d_in)

                spread, A_last = None, None
                if cfg.v_through_update:  # as if the whole update were written at the last layer
                    A_last = vectors(last)
                    spread = R1.update_spread(ins[modules[last]], rows, A_last.float())  # (rows, tokens, n)
                deltas, info = R1.optimise_deltas(model, rows, modules[last], cfg.delta_settings(), spread)
                for i, layer in enumerate(layers):
                    if i > 0:  # the layers before changed: read the keys and z again
                        ins, outs = R1.record(model, rows, [modules[layer]], [z_module])
                    A = A_last if (len(layers) == 1 and A_last is not None) else vectors(layer)
                    missing = deltas - (R1.at_subject(outs[z_module], rows) - z_before)  # (n, d_model) still owed
                    dW = (missing / (len(layers) - i)).double().T @ A  # (d_model, d_in)
                    R1.add_to_weight(spec, params[pnames[layer]].data, dW)
                nll_after = R1.target_nll_after(model, rows)  # the whole batch written
                new = {name: p.detach().clone() for name, p in params.items()}
        seconds = time.perf_counter() - start
        log.debug("%s: %d request(s) over layers %s in %.3fs", self.name, len(requests), layers, seconds)
        return WeightEdit(model, new, base, info={"layers": layers, "steps": info["v_steps"], "v_nll": nll_after,
                                                  "v_nll_optimised": info["v_nll"],
                                                  "delta_norms": info["delta_norms"], "warnings": warnings,
                                                  "seconds": seconds})

    def edit_each(self, model: nn.Module, tok, requests: Sequence[EditRequest]) -> list[WeightEdit | SSSError]:
        """One independent edit per request, as ``edit(model, tok, [r])`` each, made side by side.

        Every edit starts from the unedited weights: its deltas are optimised together, each request's
        rows seeing only its own delta, and each layer's keys are read with that request's own earlier
        layers written (``RowWeights``), so the batch changes how fast the edits are made, not what they
        are (within float tolerance: rows are padded together, and a single key's least-squares
        vector is taken from one factorisation of C by Sherman-Morrison, ``rank_one_vector``, where
        ``edit`` solves the system directly). Returns, in order, a ``WeightEdit`` (``info["batch"]``:
        how many edits shared the batch) or the RequestError of a request that cannot be edited.
        """
        cfg = self.config
        layers = sorted(block_indices(model, cfg.layers, "layers"))
        R1.check_supported(model)
        kl_prompt = cfg.kl_prompt if cfg.kl_factor > 0 else None
        with model_lock(model):
            prefixes = self._prefixes.get(model, tok)
            return R1.independent_edits(model, tok, requests, prefixes, kl_prompt,
                                        lambda valid: self._side_by_side(model, tok, valid, prefixes, layers))

    def _side_by_side(self, model: nn.Module, tok, requests: Sequence[EditRequest], prefixes: Sequence[str],
                      layers: list[int]) -> list[WeightEdit]:
        """The independent edits of ``requests`` (all valid), made in one batch; hold the model's lock."""
        cfg, spec, n = self.config, arch_spec(model), len(requests)
        modules = {layer: spec.mlp_out_name(model, layer) for layer in layers}
        pnames = {layer: modules[layer] + ".weight" for layer in layers}
        last = layers[-1]
        z_module = f"{spec.blocks}.{last}"
        start = time.perf_counter()
        rows = R1.build_rows(model, tok, requests, prefixes, cfg.kl_prompt if cfg.kl_factor > 0 else None)
        moments = key_second_moments(model, tok, layers, texts=cfg.mom2_text, n_samples=cfg.mom2_n_samples,
                                     cache_dir=cfg.stats_dir)
        params = dict(model.named_parameters())
        base = {pnames[layer]: params[pnames[layer]].detach().clone() for layer in layers}
        ins, outs = R1.record(model, rows, list(modules.values()), [z_module])  # unedited
        z_before = R1.at_subject(outs[z_module], rows)  # (n, d_model)

        solvers: dict[int, R1.CovarianceSolver] = {}  # one factorisation of C per layer

        def vectors(layer: int, ins: dict) -> torch.Tensor:  # (n, d_in): row i from request i's key alone
            if layer not in solvers:
                solvers[layer] = R1.CovarianceSolver(moments[layer].to(base[pnames[layer]].device), cfg.mom2_ridge)
            solver = solvers[layer]
            keys = R1.at_subject(ins[modules[layer]], rows)
            return torch.stack([R1.rank_one_vector(solver, k, cfg.mom2_update_weight) for k in keys])

        own = nn.functional.one_hot(rows.owner, n).float()  # (rows, n): each row belongs to one request
        spread, A_last = None, None
        if cfg.v_through_update:  # each row receives only its own request's update, as if written at L
            A_last = vectors(last, ins)
            spread = R1.update_spread(ins[modules[last]], rows, A_last.float()) * own[:, None, :]
        deltas, info = R1.optimise_deltas(model, rows, modules[last], cfg.delta_settings(), spread)
        news = {name: [w.clone() for _ in range(n)] for name, w in base.items()}  # per request, per layer
        for i, layer in enumerate(layers):
            if i > 0:  # each request's own earlier layers written: read its keys and z again
                with RowWeights(model, {pnames[l]: news[pnames[l]] for l in layers[:i]}) as per_edit:
                    per_edit.edit_of_row = rows.owner
                    ins, outs = R1.record(model, rows, [modules[layer]], [z_module])
            A = A_last if (len(layers) == 1 and A_last is not None) else vectors(layer, ins)
            missing = deltas - (R1.at_subject(outs[z_module], rows) - z_before)  # (n, d_model) still owed
            for j in range(n):
                R1.add_to_weight(spec, news[pnames[layer]][j],
                                 torch.outer((missing[j] / (len(layers) - i)).double(), A[j]))
        with RowWeights(model, news) as per_edit:
            per_edit.edit_of_row = rows.owner[~rows.is_kl]
            nll_after = R1.target_nll_after(model, rows)  # each request on its own edit
        seconds = (time.perf_counter() - start) / n
        return [WeightEdit(model, {name: news[name][j] for name in news}, base,
                           info={"layers": layers, "steps": info["v_steps_each"][j], "v_nll": [nll_after[j]],
                                 "v_nll_optimised": [info["v_nll"][j]], "delta_norms": [info["delta_norms"][j]],
                                 "warnings": [], "seconds": seconds, "batch": n})
                for j in range(n)]

"""Training of the trained editors (MEND, SERAC): examples, fingerprints, checkpoints, the loop.

Training data is a list of ``TrainExample`` (the edit, prompts that must give the new target,
prompts that must not change), built by ``examples_from_cases`` from EditCases (the world's
train split, or any file ``sss_core.evaluation.datasets`` reads; the caller loads them).
``train_loop`` runs a seeded, resumable Adam loop with a tqdm bar; each step's randomness comes
from (seed, step), so a resumed run continues exactly as an uninterrupted one. Checkpoints are
safetensors plus JSON, written to a fresh folder and then published by an atomic rename of
``latest.json``; nothing is ever unpickled.

A trainer (``train_mend``, ``train_serac``) has the signature of ``Trainer``; its editor's
registry entry (``sss_core.editors.EDITORS``) names it with its train config, so the CLI and the
tests train any trained editor the same way. Scoring the trained editor at the end is the
caller's: it passes a ``Validator`` (the CLI passes ``sss_core.evaluation.validation``'s).

Example:
    >>> examples = examples_from_cases(world_cases(split="train"))
    >>> train_loop(net, lambda step: {"loss": ...}, list(net.parameters()), LoopConfig(), out)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import RequestError, SSSError
from ..jsonio import to_json
from ..models import arch_spec
from ..resources import editor_checkpoints_path
from ..types import LOCALITY_GROUPS, EditCase, EditRequest
from .base import Editor

log = logging.getLogger(__name__)

ASSETS = editor_checkpoints_path()  # sss_core/assets/editors, found as package data

Validator = Callable[[Editor, int], dict[str, float]]
"""validate(editor, n) -> mean scores of the trained ``editor`` over ``n`` held-out edits."""


class Trainer(Protocol):
    """What a trained editor's registry entry names as its trainer (``train_mend``, ``train_serac``)."""

    def __call__(self, lm, data: Sequence["TrainExample"] | Sequence[EditCase], out: Path | str, cfg: Any,
                 resume: bool = False, progress: bool = True, source: str | None = None,
                 validate: Validator | None = None) -> dict:
        """Train for ``lm`` (a LoadedModel) on ``data``, save the checkpoint in ``out``, return its summary.

        ``source`` names the data in the summary ('world', a file path); ``validate`` scores the
        trained editor on ``cfg.validate`` edits when both are given.
        """
        ...


class CheckpointError(SSSError):
    """A trained editor's checkpoint is missing or was trained for another model."""


@dataclass(frozen=True)
class TrainExample:
    """One training edit: the request, prompts answered by its new target, prompts to keep."""

    request: EditRequest
    equiv: tuple[str, ...]  # prompts (rewrite first) whose answer must become target_new
    loc: tuple[tuple[str, str], ...]  # (prompt, answer) pairs whose predictions must not change


# ---------------------------------------------------------------- data

def examples_from_cases(cases: Sequence[EditCase]) -> list[TrainExample]:
    """One TrainExample per case that has locality probes (a case without any teaches no locality).

    equiv: the request's prompt then its paraphrase probes (duplicates dropped); loc: its probes
    of ``LOCALITY_GROUPS`` with their answers.
    """
    out = []
    for case in cases:
        req = case.request
        equiv = [req.prompt] + [p.prompt for p in case.probes if p.group == "paraphrase"]
        loc = [(p.prompt, p.answer) for p in case.probes if p.group in LOCALITY_GROUPS]
        if loc:
            out.append(TrainExample(req, tuple(dict.fromkeys(equiv)), tuple(loc)))
    return out


def training_examples(data: Sequence[TrainExample] | Sequence[EditCase], sss_c: float, seed: int
                      ) -> list[TrainExample]:
    """The checks and set-up every trainer starts with: C in range, examples, torch seed.

    data: TrainExamples, or EditCases (converted by ``examples_from_cases``). RequestError for C
    outside [0, 1], for no examples, or for a path or name (load the cases first, e.g. with
    ``sss_core.evaluation.datasets.load_cases``).
    """
    if not 0.0 <= sss_c <= 1.0:
        raise RequestError(f"C must be in [0, 1], got {sss_c}")
    if isinstance(data, (str, os.PathLike)):
        raise RequestError(f"training data must be TrainExamples or EditCases, not {str(data)!r}: load the "
                           "cases first (sss_core.evaluation.datasets.load_cases)")
    items = list(data)
    examples = examples_from_cases(items) if items and isinstance(items[0], EditCase) else items
    if not examples:
        raise RequestError("no training examples")
    torch.manual_seed(seed)
    return examples


def data_label(source: str | None, examples: Sequence[TrainExample]) -> str:
    """What a checkpoint records as its training data: ``source``, else the number of examples."""
    return source if source is not None else f"{len(examples)} examples"


def step_rng(seed: int, step: int) -> random.Random:
    """The random source of one training step: the same for a resumed run."""
    return random.Random(seed * 1_000_003 + step)


def sample_batch(examples: Sequence[TrainExample], batch_size: int, rng: random.Random
                 ) -> list[TrainExample]:
    """``batch_size`` distinct examples drawn by ``rng`` (all of them when there are fewer)."""
    return rng.sample(list(examples), min(batch_size, len(examples)))


# ---------------------------------------------------------------- model fingerprint

def model_fingerprint(model: nn.Module, elements_per_tensor: int = 4096) -> dict:
    """What identifies a base model: its shapes, an embedding checksum and a hash of its weights.

    Returns {"model_type", "n_layers", "d_model", "vocab", "embed_checksum" (mean |embedding|),
    "weights" (16 hex digits: sha256 of the config and a strided sample of at most
    ``elements_per_tensor`` values per tensor)}. The MLP output projections are left out of
    "weights" on purpose: ROME, MEMIT and FT-L change them, and an edited model should keep using
    the key statistics (``stats.py``, keyed by "weights") and the trained editors of the unedited
    one. "weights" is exact, so it changes with the dtype; a trained editor's checkpoint is
    matched on the other fields (``check_fingerprint``), which do not.
    """
    emb = model.get_input_embeddings().weight
    cfg = model.config
    spec = arch_spec(model)
    skip = {spec.mlp_out_name(model, layer) for layer in range(spec.n_layers(model))}
    h = hashlib.sha256(cfg.to_json_string(use_diff=False).encode())
    for name, p in model.named_parameters():
        if name.rsplit(".", 1)[0] in skip:
            continue
        flat = p.detach().reshape(-1)
        stride = max(1, flat.numel() // elements_per_tensor)
        h.update(f"{name}{tuple(p.shape)}".encode())
        h.update(flat[::stride].float().cpu().numpy().tobytes())
    return {"model_type": cfg.model_type, "n_layers": cfg.num_hidden_layers,
            "d_model": emb.shape[1], "vocab": emb.shape[0],
            "embed_checksum": float(emb.detach().float().abs().mean()), "weights": h.hexdigest()[:16]}


def check_fingerprint(saved: dict, model: nn.Module, where: Path) -> None:
    """CheckpointError unless ``saved`` (a checkpoint's fingerprint) matches ``model``.

    Compared: model type, layer count, widths, vocabulary and the embedding checksum (relative
    tolerance 1e-3, so a float16 or bfloat16 copy of the model matches); not "weights", which
    checkpoints written before it existed lack.
    """
    now = model_fingerprint(model)
    same = all(saved.get(k) == now[k] for k in ("model_type", "n_layers", "d_model", "vocab"))
    if same:
        same = math.isclose(saved["embed_checksum"], now["embed_checksum"], rel_tol=1e-3)
    if not same:
        raise CheckpointError(f"the checkpoint in {where} was trained for another model ({saved}); "
                              f"this one is {now}. Train one for it: python -m sss_core train "
                              f"{where.name.split('-')[0]} --out DIR, and pass checkpoint=DIR")


# ---------------------------------------------------------------- checkpoints

def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_trained(out: Path, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """Write ``model.safetensors`` and ``config.json`` (the editor's inference checkpoint)."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic_write(out / "model.safetensors", lambda p: save_file(tensors, str(p)))
    _atomic_write(out / "config.json", lambda p: p.write_text(to_json(config, indent=True)))  # NaN -> null


def load_trained(folder: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by ``save_trained``; CheckpointError if absent or of another kind."""
    folder = Path(folder)
    if not (folder / "model.safetensors").exists() or not (folder / "config.json").exists():
        raise CheckpointError(f"no trained {kind.upper()} checkpoint in {folder} (model.safetensors + "
                              f"config.json). Train one: python -m sss_core train {kind} --out {folder}")
    config = json.loads((folder / "config.json").read_text())
    if config.get("kind") != kind:
        raise CheckpointError(f"{folder} holds a {config.get('kind')!r} checkpoint, not {kind!r}")
    return load_file(str(folder / "model.safetensors")), config


def _save_train_state(folder: Path, step: int, module: nn.Module, opt: torch.optim.Optimizer,
                      extra: dict) -> None:
    """Save a resumable state under folder/step-N, then point latest.json at it (atomic)."""
    target = folder / f"step-{step:07d}"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    state = opt.state_dict()
    opt_tensors, opt_scalars = {}, {}
    for idx, per_param in state["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                opt_tensors[f"{idx}.{name}"] = value.detach().contiguous().cpu()
            else:
                opt_scalars[f"{idx}.{name}"] = value
    save_file({k: v.detach().cpu().clone() for k, v in module.state_dict().items()},  # clone: tied weights
              str(target / "module.safetensors"))
    save_file(opt_tensors or {"_empty": torch.zeros(0)}, str(target / "optimizer.safetensors"))
    (target / "state.json").write_text(json.dumps(
        {"step": step, "param_groups": state["param_groups"], "opt_scalars": opt_scalars,
         "extra": extra}, indent=1))
    _atomic_write(folder / "latest.json", lambda p: p.write_text(json.dumps({"dir": target.name})))
    for old in folder.glob("step-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)


def _load_train_state(folder: Path, module: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, dict]:
    """Restore ``module`` and ``opt`` from the state latest.json points at; (step, extra)."""
    latest = json.loads((folder / "latest.json").read_text())
    target = folder / latest["dir"]
    state = json.loads((target / "state.json").read_text())
    module.load_state_dict(load_file(str(target / "module.safetensors")))
    per_param: dict[int, dict] = {}
    for key, value in load_file(str(target / "optimizer.safetensors")).items():
        if key != "_empty":
            idx, name = key.split(".", 1)
            per_param.setdefault(int(idx), {})[name] = value
    for key, value in state["opt_scalars"].items():
        idx, name = key.split(".", 1)
        per_param.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    return state["step"], state["extra"]


@dataclass(frozen=True)
class LoopConfig:
    """The optimisation settings ``train_loop`` shares between trainers."""

    steps: int = field(default=1000, metadata={"help": "optimisation steps"})
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate"})
    grad_clip: float = field(default=1.0, metadata={"help": "clip the global gradient norm"})
    save_every: int = field(default=200, metadata={"help": "write a resumable state every N steps"})


def train_loop(module: nn.Module, step_fn: Callable[[int], dict[str, torch.Tensor]],
               params: Sequence[nn.Parameter] | Sequence[dict], cfg: LoopConfig, out: Path | None,
               resume: bool = False, desc: str = "training", progress: bool = True) -> dict:
    """Minimise ``step_fn(step)["loss"]`` over ``params`` with Adam for ``cfg.steps`` steps.

    ``params`` may be Adam parameter groups. With ``out``, a resumable state is kept in
    out/train_state; ``resume=True`` continues from it. Returns the running means of the losses
    over the last 50 steps and the wall time.
    """
    from tqdm.auto import tqdm
    opt = torch.optim.Adam(params, lr=cfg.lr)
    state_dir = out / "train_state" if out is not None else None
    start, extra = 0, {}
    if resume:
        if state_dir is None or not (state_dir / "latest.json").exists():
            raise CheckpointError(f"nothing to resume in {state_dir}: run without --resume first")
        start, extra = _load_train_state(state_dir, module, opt)
        log.info("resuming %s at step %d", desc, start)
    seconds = extra.get("seconds", 0.0)
    t0 = time.perf_counter()
    recent: list[dict[str, float]] = []
    bar = tqdm(total=cfg.steps, initial=start, desc=desc, disable=not progress)
    trainable = [p for g in opt.param_groups for p in g["params"]]
    for step in range(start, cfg.steps):
        losses = step_fn(step)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise SSSError(f"the training loss became {loss.item()} at step {step}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        opt.step()
        recent = (recent + [{k: float(v.detach()) for k, v in losses.items()}])[-50:]
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in recent[-1].items()})
        done = step + 1
        if state_dir is not None and (done % cfg.save_every == 0 or done == cfg.steps):
            _save_train_state(state_dir, done, module, opt,
                              {"seconds": seconds + time.perf_counter() - t0})
    bar.close()
    means = {k: sum(r[k] for r in recent) / len(recent) for k in (recent[0] if recent else {})}
    return {"final_losses": means, "wall_seconds": round(seconds + time.perf_counter() - t0, 1)}


def publish(out: Path, tensors: Callable[[], dict[str, torch.Tensor]], config: dict,
            editor: Callable[[], Editor], validate: Validator | None, n_validate: int) -> dict:
    """Save the trained checkpoint; with ``validate`` and ``n_validate`` > 0, score it and save again.

    tensors() gives the checkpoint's tensors, editor() an editor reading ``out``. The scores go
    to config["validation"] (in out/config.json too). Returns ``config``.
    """
    save_trained(out, tensors(), config)
    if validate is not None and n_validate > 0:
        config["validation"] = validate(editor(), n_validate)
        save_trained(out, tensors(), config)
    return config

"""Shared machinery of the trained editors (MEND, SERAC): data, training loop, checkpoints.

Training data is a list of ``TrainExample`` (the edit, prompts that must give the new target,
prompts that must not change) read from the built-in world's train split or from an EasyEdit
ZsRE / CounterFact JSON. ``train_loop`` runs a seeded, resumable Adam loop with a tqdm bar; each
step's randomness comes from (seed, step), so a resumed run continues exactly as an
uninterrupted one. Checkpoints are safetensors plus JSON, written to a fresh folder and then
published by an atomic rename of ``latest.json``; nothing is ever unpickled.

Example:
    >>> examples = load_examples("world", split="train")
    >>> train_loop(net, lambda step: {"loss": ...}, list(net.parameters()), LoopConfig(), out)
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import DataError, RequestError, SSSError
from ..resources import editor_checkpoints_path
from ..types import LOCALITY_GROUPS, EditRequest

log = logging.getLogger(__name__)

ASSETS = editor_checkpoints_path()  # sss_core/assets/editors, found as package data


class CheckpointError(SSSError):
    """A trained editor's checkpoint is missing or was trained for another model."""


@dataclass(frozen=True)
class TrainExample:
    """One training edit: the request, prompts answered by its new target, prompts to keep."""

    request: EditRequest
    equiv: tuple[str, ...]  # prompts (rewrite first) whose answer must become target_new
    loc: tuple[tuple[str, str], ...]  # (prompt, answer) pairs whose predictions must not change


# ---------------------------------------------------------------- data sources

def _from_cases(cases) -> list[TrainExample]:
    out = []
    for case in cases:
        req = case.request
        equiv = [req.prompt] + [p.prompt for p in case.probes if p.group == "paraphrase"]
        loc = [(p.prompt, p.answer) for p in case.probes if p.group in LOCALITY_GROUPS]
        if loc:
            out.append(TrainExample(req, tuple(dict.fromkeys(equiv)), tuple(loc)))
    return out


def world_examples(split: str = "train", world_seed: int = 0) -> list[TrainExample]:
    """Training examples from the built-in world's edit records (``world_cases``)."""
    from ..world.generate import build_world
    from ..world.records import world_cases
    return _from_cases(world_cases(build_world(world_seed), split))


def easyedit_examples(path: str | Path) -> list[TrainExample]:
    """Training examples from an EasyEdit ZsRE or CounterFact (flat) training JSON."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no training file at {path}: give 'world' or the path of an EasyEdit JSON")
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(records, list):
        raise DataError(f"{path} must hold a JSON list of edit records")
    out = []
    for i, r in enumerate(records):
        try:
            if "src" in r:  # ZsRE (MEND split)
                req = EditRequest(r["src"], r["alt"], subject=r.get("subject"),
                                  ground_truth=(r.get("answers") or [None])[0])
                equiv, loc = (r["src"], r["rephrase"]), ((r["loc"], r["loc_ans"]),)
            else:  # CounterFact, EasyEdit flat
                req = EditRequest(r["prompt"], r["target_new"], subject=r.get("subject"),
                                  ground_truth=r.get("ground_truth"))
                equiv = (r["prompt"], r["rephrase_prompt"])
                loc = ((r["locality_prompt"], r["locality_ground_truth"]),)
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}: record {i} lacks the field {exc}; expected EasyEdit ZsRE "
                            "(src, rephrase, alt, loc, loc_ans) or CounterFact (prompt, target_new, "
                            "rephrase_prompt, locality_prompt, locality_ground_truth)") from exc
        out.append(TrainExample(req, tuple(dict.fromkeys(equiv)), loc))
    return out


def load_examples(data: str | Path = "world", split: str = "train") -> list[TrainExample]:
    """``data`` is 'world' (the built-in world, ``split``) or the path of an EasyEdit JSON."""
    return world_examples(split) if str(data) == "world" else easyedit_examples(data)


def training_examples(data: str | Path | Sequence[TrainExample], sss_c: float, seed: int) -> list[TrainExample]:
    """The checks and set-up every training entry point starts with: C in range, examples, torch seed.

    data: 'world' (the built-in world's train split), an EasyEdit JSON path, or TrainExamples.
    """
    if not 0.0 <= sss_c <= 1.0:
        raise RequestError(f"C must be in [0, 1], got {sss_c}")
    examples = list(data) if not isinstance(data, (str, Path)) else load_examples(data, "train")
    if not examples:
        raise RequestError("no training examples")
    torch.manual_seed(seed)
    return examples


def step_rng(seed: int, step: int) -> random.Random:
    """The random source of one training step: the same for a resumed run."""
    return random.Random(seed * 1_000_003 + step)


def sample_batch(examples: Sequence[TrainExample], batch_size: int, rng: random.Random
                 ) -> list[TrainExample]:
    return rng.sample(list(examples), min(batch_size, len(examples)))


# ---------------------------------------------------------------- model fingerprints

def fingerprint(model: nn.Module) -> dict:
    """What identifies the base model a checkpoint was trained for (shapes and a checksum)."""
    emb = model.get_input_embeddings().weight
    cfg = model.config
    return {"model_type": cfg.model_type, "n_layers": cfg.num_hidden_layers,
            "d_model": emb.shape[1], "vocab": emb.shape[0],
            "embed_checksum": float(emb.detach().float().abs().mean())}


def check_fingerprint(saved: dict, model: nn.Module, where: Path) -> None:
    now = fingerprint(model)
    same = all(saved.get(k) == now[k] for k in ("model_type", "n_layers", "d_model", "vocab"))
    if same:
        same = math.isclose(saved["embed_checksum"], now["embed_checksum"], rel_tol=1e-3)
    if not same:
        raise CheckpointError(f"the checkpoint in {where} was trained for another model ({saved}); "
                              f"this one is {now}. Train one for it: python -m sss_core train "
                              f"{where.name.split('-')[0]} --out DIR, and pass checkpoint=DIR")


# ---------------------------------------------------------------- checkpoints

def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
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
    _atomic_write(out / "config.json", lambda p: p.write_text(json.dumps(config, indent=2)))


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
    steps: int = field(default=1000, metadata={"help": "optimisation steps"})
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate"})
    grad_clip: float = field(default=1.0, metadata={"help": "clip the global gradient norm"})
    save_every: int = field(default=200, metadata={"help": "write a resumable state every N steps"})
    seed: int = field(default=0, metadata={"help": "seeds initialisation and every step's sampling"})


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


# ---------------------------------------------------------------- evaluation and CLI

def evaluate_editor(lm, editor, cases, limit: int = 200) -> dict[str, float]:
    """Mean reliability / generality / locality over ``cases`` and the mean seconds per edit."""
    from ..evaluation.metrics import run_edit
    sums: dict[str, list[float]] = {}
    for case in list(cases)[:limit]:
        res = run_edit(lm.model, lm.tok, editor, case, with_lambda=False)
        for k in ("reliability", "generality", "locality"):
            if not math.isnan(res.metrics.get(k, math.nan)):
                sums.setdefault(k, []).append(res.metrics[k])
        sums.setdefault("seconds_per_edit", []).append(res.seconds)
    return {k: round(sum(v) / len(v), 4) for k, v in sums.items()}

"""Command line: ``python -m sss_core {edit,lambda,world,train-default} ...``.

Errors a user can cause exit with code 2 and one line on stderr. Each subcommand is one
``add_*`` function that registers its parser and a handler.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Callable

from .errors import SSSError


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"C must be a number in [0, 1], got {text!r}") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"C must be in [0, 1], got {text}")
    return value


def _nonempty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="local model folder or hub name (default: the shipped model)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                   help="weights' dtype (default: as saved); half precision halves GPU memory")
    p.add_argument("--device-map", default=None, metavar="MAP",
                   help="e.g. 'auto': spread a model too large for one GPU over all of them (accelerate); "
                        "--device is then ignored")


def _load(args):
    from .models import DEFAULT_MODEL, load_model
    return load_model(args.model or DEFAULT_MODEL, device=args.device, dtype=args.dtype, device_map=args.device_map)


def _emit(obj: dict, as_json: bool, text: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json else text)


# --- edit ---------------------------------------------------------------------------------------

def add_edit(sub) -> None:
    from .editors import EDITORS
    p = sub.add_parser("edit", help="edit one fact, evaluate it, revert")
    p.add_argument("--editor", required=True, help=f"one of: {', '.join(EDITORS)}")
    p.add_argument("--C", dest="C", type=_unit_interval, default=None,
                   help="SSS weight C in [0, 1] (editors with +sss; default 0.9)")
    p.add_argument("--prompt", required=True, type=_nonempty)
    p.add_argument("--subject", default=None)
    p.add_argument("--target", required=True, type=_nonempty, help="the new answer")
    p.add_argument("--paraphrase", action="append", default=[], help="a paraphrase prompt (repeatable)")
    p.add_argument("--neighbour", action="append", default=[], metavar="PROMPT",
                   help="an unrelated prompt whose prediction must not change (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="editor setting, e.g. --set steps=40 --set lr=1e-3")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_model_arg(p)
    p.set_defaults(handler=run_edit_command)


def _parse_settings(pairs: list[str]) -> dict:
    """``--set KEY=VALUE`` pairs -> {key: value}; values are JSON where they parse (a list becomes the
    tuple the configs hold, e.g. ``--set layers=[0,1]``), else strings."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            _fail(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out[key] = tuple(parsed) if isinstance(parsed, list) else parsed
    return out


def run_edit_command(args) -> None:
    from .editors import EDITORS, make_editor
    from .evaluation.metrics import request_warnings, run_edit, top_k
    from .evaluation.presets import case_for_request
    from .types import EditRequest

    if args.editor not in EDITORS:
        _fail(f"unknown editor {args.editor!r}; choose one of: {', '.join(EDITORS)}")
    settings = _parse_settings(args.set)
    if args.C is not None:
        settings["sss_c"] = args.C
    editor = make_editor(args.editor, **settings)
    request = EditRequest(args.prompt, args.target, subject=args.subject).validate()
    lm = _load(args)
    case = case_for_request(request, args.paraphrase, args.neighbour, lm)
    warnings = request_warnings(lm.model, lm.tok, request)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    pre = top_k(lm.model, lm.tok, request.prompt, args.top_k)
    result = run_edit(lm.model, lm.tok, editor, case)
    # run_edit reverted the edit; apply it once more only to read the post-edit top-k
    edit = editor.edit(lm.model, lm.tok, [request])
    with edit:
        post = top_k(edit.model, lm.tok, request.prompt, args.top_k)
    out = {"editor": args.editor, "model": lm.name, "request": result.to_dict()["request"],
           "lambda_max_before": result.lambda_max_before, "lambda_max_after": result.lambda_max_after,
           "pre": [{"token": t, "prob": p} for t, p in pre], "post": [{"token": t, "prob": p} for t, p in post],
           "metrics": result.metrics, "seconds": result.seconds,
           "probes": [{"group": r.probe.group, "prompt": r.probe.prompt, "answer": r.probe.answer,
                       "score": r.score, "pre": r.pre_tokens, "post": r.post_tokens} for r in result.probes],
           "extra": result.extra, "warnings": warnings}
    text = "\n".join([
        f"{args.editor} on {lm.name}: {request.prompt!r} -> {request.target_new!r} in {result.seconds:.3f}s",
        f"lambda_max  before {result.lambda_max_before:.4g}  after {result.lambda_max_after:.4g}",
        "pre  top-k: " + ", ".join(f"{t!r} {p:.3f}" for t, p in pre),
        "post top-k: " + ", ".join(f"{t!r} {p:.3f}" for t, p in post),
        *(f"{k:12s} {v:.3f}" for k, v in result.metrics.items() if not math.isnan(v))])
    _emit(out, args.json, text)


# --- lambda -------------------------------------------------------------------------------------

def add_lambda(sub) -> None:
    p = sub.add_parser("lambda", help="print lambda_max (the SSS metric) of prompt + target")
    p.add_argument("--prompt", required=True, type=_nonempty)
    p.add_argument("--target", required=True, type=_nonempty)
    p.add_argument("--reduction", choices=("mean", "sum"), default="mean",
                   help="mean over tokens (the paper) or sum (the authors' code)")
    p.add_argument("--json", action="store_true")
    _add_model_arg(p)
    p.set_defaults(handler=run_lambda_command)


def run_lambda_command(args) -> None:
    from .sss import lambda_max
    lm = _load(args)
    start = time.perf_counter()
    value = lambda_max(lm.model, lm.tok, [args.prompt], [args.target], reduction=args.reduction).item()
    out = {"prompt": args.prompt, "target": args.target, "lambda_max": value, "reduction": args.reduction,
           "model": lm.name, "seconds": time.perf_counter() - start}
    _emit(out, args.json, f"lambda_max = {value:.6g}")


# --- world --------------------------------------------------------------------------------------

def add_world(sub) -> None:
    p = sub.add_parser("world", help="write the built-in fact world as JSON records")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=lambda a: _world(a))


def _world(args) -> None:
    from .world.records import write_world
    counts = write_world(args.out, args.seed)
    print(json.dumps({"out": str(args.out), **counts}))


# --- train-default ------------------------------------------------------------------------------

def add_train_default(sub) -> None:
    p = sub.add_parser("train-default", help="train the default model on the fact world (about 20 min on 2 cores)")
    p.add_argument("--out", type=Path, default=Path("assets/default-model"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None)
    p.set_defaults(handler=_train_default)


def _train_default(args) -> None:
    from dataclasses import replace
    from .world.train_default import TrainConfig, train_default_model
    cfg = TrainConfig(seed=args.seed)
    if args.epochs:
        cfg = replace(cfg, epochs=args.epochs)
    card = train_default_model(args.out, cfg)
    print(json.dumps(card["metrics"], indent=2))


# --- bench --------------------------------------------------------------------------------------

def add_bench(sub) -> None:
    from .evaluation.bench import add_bench_parser
    add_bench_parser(sub)


def add_train(sub) -> None:
    from .editors._meta import add_train_parser
    add_train_parser(sub)


SUBCOMMANDS: list[Callable] = [add_edit, add_lambda, add_world, add_train_default, add_train, add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sss_core", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        args.handler(args)
    except SSSError as exc:
        _fail(str(exc))
    return 0

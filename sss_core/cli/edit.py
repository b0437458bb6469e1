"""``edit``: edit one fact, evaluate it with the paper's metrics, revert; print the result."""

from __future__ import annotations

import math
import sys

from ..types import EditRequest
from .common import add_model_args, emit, fail, load_model_from_args, nonempty, parse_settings, positive_int, unit_interval
from .names import editor_name, known_editors


def register(sub) -> None:
    """Add ``edit`` to the CLI's subparsers (torch-free: nothing heavy is imported to parse)."""
    p = sub.add_parser("edit", help="edit one fact, evaluate it, revert")
    p.add_argument("--editor", required=True, type=editor_name, help=f"one of: {', '.join(known_editors())}")
    p.add_argument("--C", dest="C", type=unit_interval, default=None,
                   help="SSS weight C in [0, 1] (editors with +sss; default 0.9)")
    p.add_argument("--prompt", required=True, type=nonempty)
    p.add_argument("--subject", default=None)
    p.add_argument("--target", required=True, type=nonempty, help="the new answer")
    p.add_argument("--paraphrase", action="append", default=[], help="a paraphrase prompt (repeatable)")
    p.add_argument("--neighbour", action="append", default=[], metavar="PROMPT",
                   help="an unrelated prompt whose prediction must not change (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="editor setting, e.g. --set steps=40 --set lr=1e-3")
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_args(p)
    p.set_defaults(handler=run)


def run(args) -> None:
    """Run ``edit`` from parsed arguments: edit, score, revert; print JSON (``--json``) or text."""
    settings = parse_settings(args.set)
    request = EditRequest(args.prompt, args.target, subject=args.subject).validate()
    # torch, the registry and the model only once every argument that can be checked without them is valid
    from ..editors import EDITORS, make_editor
    if args.C is not None:
        c_field = EDITORS[args.editor].c_field
        if c_field is None:
            with_c = ", ".join(name for name, spec in EDITORS.items() if spec.c_field)
            fail(f"--C is the weight of the SSS term, which {args.editor} does not have; editors with it: {with_c}")
        settings[c_field] = args.C
    from ..evaluation.metrics import request_warnings, run_edit, top_k
    from ..evaluation.presets import case_for_request

    editor = make_editor(args.editor, **settings)
    lm = load_model_from_args(args)
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
    def spell(token: str) -> str:  # a tokenizer's piece ("\u0120Rom") as text (" Rom"), as the top-k shows it
        return lm.tok.convert_tokens_to_string([token])

    out = {"editor": args.editor, "model": lm.name, "request": result.to_dict()["request"],
           "lambda_max_before": result.lambda_max_before, "lambda_max_after": result.lambda_max_after,
           "pre": [{"token": t, "prob": p} for t, p in pre], "post": [{"token": t, "prob": p} for t, p in post],
           "metrics": result.metrics, "seconds": result.seconds,
           "probes": [{"group": r.probe.group, "prompt": r.probe.prompt, "answer": r.probe.answer,
                       "score": r.score, "pre": [spell(t) for t in r.pre_tokens],
                       "post": [spell(t) for t in r.post_tokens]} for r in result.probes],
           "extra": result.extra, "warnings": warnings}
    text = "\n".join([
        f"{args.editor} on {lm.name}: {request.prompt!r} -> {request.target_new!r} in {result.seconds:.3f}s",
        f"lambda_max  before {result.lambda_max_before:.4g}  after {result.lambda_max_after:.4g}",
        "pre  top-k: " + ", ".join(f"{t!r} {p:.3f}" for t, p in pre),
        "post top-k: " + ", ".join(f"{t!r} {p:.3f}" for t, p in post),
        *(f"{k:12s} {v:.3f}" for k, v in result.metrics.items() if not math.isnan(v))])
    emit(out, args.json, text)

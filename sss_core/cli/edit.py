"""``edit``: edit one fact, evaluate it with the paper's metrics, measure the sparsity around it, revert; print it.

The request options (``add_request_args``) and the analysis (``analyse_from_args``) are shared
with ``inspect``, which writes the same analysis as a standalone HTML page.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from ..types import EditRequest
from .common import add_model_args, emit, fail, load_model_from_args, nonempty, parse_settings, positive_int, unit_interval
from .names import editor_name, known_editors

log = logging.getLogger(__name__)

N_BACKGROUND = 30  # = sss_core.analysis.N_BACKGROUND (not imported: the parser needs no torch)


def count(text: str) -> int:
    """argparse type: a whole number >= 0 (how many background sentences)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if not 0 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 100000, got {text}")
    return value


def add_request_args(p: argparse.ArgumentParser) -> None:
    """The options of one edit, shared by ``edit`` and ``inspect``: editor, C, request, probes, settings,
    the sparsity's kNN and background, and the model arguments."""
    p.add_argument("--from", dest="from_file", type=Path, default=None, metavar="RUN.json",
                   help="replay a run exactly as recorded: a file written by 'edit --json' or the app's JSON "
                        "export (its model, editor, settings, probes, seed and analysis options); the request "
                        "options are then left out")
    p.add_argument("--editor", type=editor_name, help=f"one of: {', '.join(known_editors())} (required without --from)")
    p.add_argument("--C", dest="C", type=unit_interval, default=None,
                   help="C in [0, 1]: FT-L+SSS's weight of the SSS term (default 0.9); for MEND/SERAC the C their "
                        "checkpoint was trained at (another C is refused, naming the checkpoints there are)")
    p.add_argument("--prompt", type=nonempty, help="the sentence to edit (required without --from)")
    p.add_argument("--subject", default=None)
    p.add_argument("--target", type=nonempty, help="the new answer (required without --from)")
    p.add_argument("--paraphrase", action="append", default=[], help="a paraphrase prompt (repeatable)")
    p.add_argument("--neighbour", action="append", default=[], metavar="PROMPT",
                   help="an unrelated prompt whose prediction must not change (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="editor setting, e.g. --set steps=40 --set lr=1e-3")
    p.add_argument("--k", type=positive_int, default=5,
                   help="neighbours of each sentence's kNN distance (full embedding space; default 5)")
    p.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine", help="distance of the kNN distance")
    p.add_argument("--pooling", choices=("last", "mean"), default="last",
                   help="sentence embedding: the last token's state (default) or the mean over tokens")
    p.add_argument("--world-locality", action="store_true",
                   help="also read every fact of the built-in world before and after the edit: world locality (the "
                        "share of the other facts whose top answer did not change) and the damaged facts by "
                        "relation and subject; a few seconds more on the shipped model (2-4 s on the project's 2-core machine)")
    p.add_argument("--background", type=count, default=N_BACKGROUND, metavar="N",
                   help=f"embed N world facts around the edit as background sentences (default {N_BACKGROUND})")
    add_model_args(p)


def register(sub) -> None:
    """Add ``edit`` to the CLI's subparsers (torch-free: nothing heavy is imported to parse)."""
    p = sub.add_parser("edit", help="edit one fact, evaluate it, measure sparsity per sentence, revert")
    add_request_args(p)
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


REQUEST_OPTIONS = ("editor", "C", "prompt", "subject", "target", "paraphrase", "neighbour", "set", "world_locality")


def _replayed(args):
    """(record, model arguments) of ``--from``: the record in the file; its model unless --model names one.

    Exits 2 when request options are given too (a replay is the record as it was) or the file is unreadable.
    """
    given = [f"--{o}" for o in REQUEST_OPTIONS if getattr(args, o) not in (None, [], False)]
    if given:
        fail(f"--from replays the run as recorded; leave out {', '.join(given)} (or drop --from to run a new edit)")
    try:
        text = args.from_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--from {args.from_file}: cannot read it ({exc})")
    from ..record import SHIPPED_MODEL_NAME, load_record

    record = load_record(text)
    if args.model is None and record.model.name != SHIPPED_MODEL_NAME:
        args.model = record.model.name
    if args.dtype is None and record.model.dtype not in (None, "float32"):
        args.dtype = record.model.dtype
    return record


def _new_record(args, lm):
    """The record of a new edit from the request options (exits 2 naming what is missing or wrong)."""
    from ..evaluation.presets import case_for_request, world_fact_for
    from ..record import AnalysisOptions, make_record

    request = EditRequest(args.prompt, args.target, subject=args.subject).validate()
    case = case_for_request(request, args.paraphrase, args.neighbour, lm)
    typed = bool(args.paraphrase or args.neighbour) or world_fact_for(request.prompt) is None
    options = AnalysisOptions(args.background, args.k, args.metric, args.pooling, args.top_k_tokens,
                              world_locality=args.world_locality)
    return make_record(args.editor, _settings(args), case, lm=lm, analysis=options,
                       probes_from="typed" if typed else "world", typed_probes=len(args.paraphrase) + len(args.neighbour))


def _settings(args) -> dict:
    """The editor settings of ``--set`` and ``--C`` (C in the registry's C field of the editor)."""
    from ..editors import EDITORS

    settings = parse_settings(args.set)
    if args.C is not None:
        settings[EDITORS[args.editor].c_field] = args.C
    return settings


def _check_request_args(args) -> None:
    """Exit 2 (one line) for what can be checked without torch: missing options, a bad --set or request,
    and --C for an editor without C."""
    missing = [f"--{o}" for o in ("editor", "prompt", "target") if getattr(args, o) is None]
    if missing:
        fail(f"give {', '.join(missing)} (or --from RUN.json to replay a recorded run)")
    parse_settings(args.set)
    EditRequest(args.prompt, args.target, subject=args.subject).validate()
    from ..editors import EDITORS, make_editor

    if args.C is not None and EDITORS[args.editor].c_field is None:
        with_c = ", ".join(name for name, spec in EDITORS.items() if spec.c_field)
        fail(f"--C is the weight of the SSS term, which {args.editor} does not have; editors with it: {with_c}")
    make_editor(args.editor, **_settings(args))  # a bad setting (or a C no checkpoint has) is refused before the model loads


def analyse_from_args(args, top_k: int = 0):
    """Build the run record (from the request options, or ``--from`` a recorded run), load the model and
    run it through ``analysis.run_record``; returns (lm, EditRun).

    Everything that can be checked without the model is checked first (exit 2 with one line).
    """
    args.top_k_tokens = top_k
    record = _replayed(args) if args.from_file is not None else None
    if record is None:
        _check_request_args(args)
    from ..analysis import run_record

    lm = load_model_from_args(args)
    if record is None:
        record = _new_record(args, lm)
    run = run_record(lm, record, progress=log.info)
    for w in run.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return lm, run


def run(args) -> None:
    """Run ``edit`` from parsed arguments: edit, score, measure, revert; print JSON (``--json``) or text."""
    lm, run_ = analyse_from_args(args, top_k=args.top_k)
    from ..analysis import WORLD_FACTS_LISTED, current_answer_notice
    result, request = run_.result, run_.case.request

    def spell(token: str) -> str:  # a tokenizer's piece ("\u0120Rom") as text (" Rom"), as the top-k shows it
        return lm.tok.convert_tokens_to_string([token])

    def probe(r) -> dict:
        s = run_.sparsity_of(r.probe.prompt)
        extra = {**s.probe_fields(), "top_answer": s.answer, "p_top_answer_before": s.p_answer_before,
                 "p_top_answer_after": s.p_answer_after} if s is not None else {}
        return {"group": r.probe.group, "prompt": r.probe.prompt, "answer": r.probe.answer, "score": r.score,
                "pre": [spell(t) for t in r.pre_tokens], "post": [spell(t) for t in r.post_tokens], **extra}

    lam = run_.edit_lambda
    out = {"editor": run_.editor, "model": lm.name, "c": run_.record.c, "c_means": run_.record.c_meaning(), "request": result.to_dict()["request"],
           # the edit's own lambda_max, against the new target (as in every result); edit_lambda has both targets
           "lambda_max_before": result.lambda_max_before, "lambda_max_after": result.lambda_max_after,
           "edit_lambda": lam.as_dict() if lam is not None else None,
           # lambda_max against the new target split over the prompt's and target's tokens (shares sum to 1)
           "lambda_max_tokens": run_.token_lambda_dict(),
           "pre": [{"token": t, "prob": p} for t, p in run_.top_k_before],
           "post": [{"token": t, "prob": p} for t, p in run_.top_k_after],
           "metrics": result.metrics, "seconds": result.seconds,
           "probes": [probe(r) for r in result.probes],
           "knn": {"k": run_.knn.k, "metric": run_.knn.metric, "pooling": run_.knn.pooling},
           "sparsity": [s.as_dict() for s in run_.sparsity],
           "trajectory": list(run_.trajectory), "delta_norms": run_.delta_norms,
           "extra": result.extra, "warnings": list(run_.warnings),
           "current_answer_notice": current_answer_notice(run_),  # an edit to what the model already says
           "world_locality": run_.world.as_dict(max_facts=WORLD_FACTS_LISTED) if run_.world else None,
           # everything that made the run; `sss-lab edit --from FILE` (FILE: this output) replays it
           "record": run_.record.to_dict(),
           "command": {"replay": run_.record.command("FILE"), "equivalent": run_.record.command(),
                       "equivalent_note": run_.record.command_note()}}
    mine = run_.sparsity_of(request.prompt)
    lines = [
        f"{run_.editor} on {lm.name}: {request.prompt!r} -> {request.target_new!r} in {result.seconds:.3f}s",
        f"lambda_max against the new target  before {result.lambda_max_before:.4g}  after {result.lambda_max_after:.4g}"]
    if lam is not None and lam.old_target is not None:
        lines.append(f"lambda_max against the old target ({lam.old_target!r})  before {lam.old_before:.4g}  "
                     f"after {lam.old_after:.4g}")
    if mine is not None:
        lines.append(f"kNN distance of the edit prompt ({run_.knn.metric}, k={run_.knn.k})  "
                     f"before {mine.knn_distance_before:.4g}  after {mine.knn_distance_after:.4g}")
    if run_.top_k_before:  # a replayed app export measured none (its record says top_k 0)
        lines += ["pre  top-k: " + ", ".join(f"{t!r} {p:.3f}" for t, p in run_.top_k_before),
                  "post top-k: " + ", ".join(f"{t!r} {p:.3f}" for t, p in run_.top_k_after)]
    lines += [f"{k:12s} {v:.3f}" for k, v in result.metrics.items() if not math.isnan(v)]
    if run_.record.c_meaning():
        lines.insert(1, run_.record.c_meaning())
    if run_.world is not None:
        w = run_.world
        lines.append(f"world locality     {w.world_locality:.3f} ({w.n_damaged} of {len(w.others)} other world facts "
                     "changed their top answer)")
    lines.append("same run again: " + run_.record.command())
    emit(out, args.json, "\n".join(lines))

"""``train EDITOR``: train a trained editor (MEND, SERAC, any registry entry with a trainer), resumable.

The data is loaded here ('world': the built-in world's train split; a path: every record of a
file ``sss_core.evaluation.datasets`` reads, in file order) and handed to the entry's trainer
with a validator of the world's validation split; the summary is printed as JSON.
"""

from __future__ import annotations

from pathlib import Path

from ..jsonio import to_json
from .common import add_model_args, load_model_from_args, parse_settings, positive_int, unit_interval
from .names import trained_editor_name, trained_editors


def register(sub) -> None:
    """Add ``train`` to the CLI's subparsers (one choice per registry entry with a trainer; torch-free)."""
    p = sub.add_parser("train", help="train a trained editor (MEND, SERAC) for a model")
    p.add_argument("editor", type=trained_editor_name, help=f"one of: {', '.join(trained_editors())}")
    p.add_argument("--sss-c", type=unit_interval, default=None,
                   help="C of the SSS term (0.9 in the paper; 0 = off; default: the entry's, 0.9 for +sss)")
    p.add_argument("--data", default="world",
                   help="'world' or the path of a data file (EasyEdit ZsRE/CounterFact, ROME, KnowEdit)")
    p.add_argument("--out", required=True, type=Path, help="folder for the checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=positive_int, default=None, help="override the number of training steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="training setting, e.g. --set lr=3e-4 --set swap_targets=0.5 (see the train configs)")
    p.add_argument("--validate", type=int, default=100, help="world validation edits scored at the end (0: none)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state")
    add_model_args(p)
    p.set_defaults(handler=run)


def training_cases(data: str):
    """The EditCases to train on: 'world' -> the world's train split; a path -> every record of the file.

    DataError for a missing or malformed file.
    """
    from ..evaluation.datasets import load_dataset, world_split_cases

    return world_split_cases("train") if data == "world" else load_dataset(data)


def run(args) -> None:
    """Run ``train EDITOR`` from parsed arguments; print the training summary as JSON."""
    import torch

    from ..editors import EDITORS, train_config
    from ..errors import RequestError
    from ..evaluation.datasets import world_split_cases
    from ..evaluation.validation import validator

    spec = EDITORS[args.editor]
    overrides = {**parse_settings(args.set), "seed": args.seed, "validate": args.validate}
    if args.sss_c is not None:
        if spec.c_field is None:
            raise RequestError(f"{args.editor} has no SSS term: leave out --sss-c")
        overrides[spec.c_field] = args.sss_c
    if args.steps:
        overrides["steps"] = args.steps
    config = train_config(args.editor, **overrides)  # unknown settings fail before anything is loaded
    cases = training_cases(args.data)
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model_from_args(args)
    validate = validator(lm.model, lm.tok, world_split_cases("validation")) if args.data == "world" else None
    summary = spec.trainer(lm, cases, args.out, config, resume=args.resume, source=args.data, validate=validate)
    print(to_json(summary, indent=True))  # the CLI's output, not a log

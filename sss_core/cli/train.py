"""``train mend|serac``: meta-train MEND or train SERAC for a model, resumable."""

from __future__ import annotations

import json
from pathlib import Path

from .common import add_model_args, load_model_from_args, parse_settings


def register(sub) -> None:
    """Add ``train`` to the CLI's subparsers."""
    p = sub.add_parser("train", help="meta-train MEND or train SERAC for a model")
    p.add_argument("editor", choices=("mend", "serac"))
    p.add_argument("--sss-c", type=float, default=0.0, help="C of the SSS term (0.9 in the paper; 0 = off)")
    p.add_argument("--data", default="world", help="'world' or the path of an EasyEdit ZsRE/CounterFact JSON")
    p.add_argument("--out", required=True, type=Path, help="folder for the checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="training setting, e.g. --set lr=3e-4 --set swap_targets=0.5 (see the train configs)")
    p.add_argument("--validate", type=int, default=100, help="world validation edits scored at the end (0: none)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state")
    add_model_args(p)
    p.set_defaults(handler=run)


def run(args) -> None:
    """Run ``train mend|serac`` from parsed arguments; print the training summary as JSON."""
    import torch

    from ..editors.mend import MENDTrainConfig, train_mend
    from ..editors.serac import SERACTrainConfig, train_serac
    from ..errors import RequestError
    from dataclasses import fields

    config_cls, train = (MENDTrainConfig, train_mend) if args.editor == "mend" else (SERACTrainConfig, train_serac)
    overrides = {**parse_settings(args.set), "sss_c": args.sss_c, "seed": args.seed, "validate": args.validate}
    if args.steps:
        overrides["steps"] = args.steps
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise RequestError(f"{args.editor} training has no setting {unknown[0]!r}; "
                           f"settings: {', '.join(sorted(known))}")
    config = config_cls(**overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model_from_args(args)
    summary = train(lm, args.data, args.out, config, resume=args.resume)
    print(json.dumps(summary, indent=2, default=str))  # the CLI's output, not a log

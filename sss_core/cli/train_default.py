"""``train-default``: train the shipped default model on the fact world."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("train-default", help="train the default model on the fact world (about 20 min on 2 cores)")
    p.add_argument("--out", type=Path, default=Path("sss_core/assets/default-model"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None)
    p.set_defaults(handler=run)


def run(args) -> None:
    from dataclasses import replace
    from ..world.train_default import TrainConfig, train_default_model
    cfg = TrainConfig(seed=args.seed)
    if args.epochs:
        cfg = replace(cfg, epochs=args.epochs)
    card = train_default_model(args.out, cfg)
    print(json.dumps(card["metrics"], indent=2))

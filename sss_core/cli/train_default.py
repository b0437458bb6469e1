"""``train-default``: train the shipped default model on the fact world."""

from __future__ import annotations

from pathlib import Path

from ..jsonio import to_json
from .common import positive_int


def register(sub) -> None:
    """Add ``train-default`` to the CLI's subparsers."""
    p = sub.add_parser("train-default", help="train the default model on the fact world (about 35 minutes on one core of a busy 2-core machine)")
    p.add_argument("--out", type=Path, default=Path("sss_core/assets/default-model"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=positive_int, default=None)
    p.set_defaults(handler=run)


def run(args) -> None:
    """Train the default model from parsed arguments; print its metrics as JSON."""
    from dataclasses import replace

    from ..world.train_default import TrainConfig, train_default_model
    cfg = TrainConfig(seed=args.seed)
    if args.epochs:
        cfg = replace(cfg, epochs=args.epochs)
    card = train_default_model(args.out, cfg)
    print(to_json(card["metrics"], indent=True))

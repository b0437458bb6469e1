"""``world``: write the built-in fact world as EasyEdit-style JSON records."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("world", help="write the built-in fact world as JSON records")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run)


def run(args) -> None:
    from ..world.records import write_world
    counts = write_world(args.out, args.seed)
    print(json.dumps({"out": str(args.out), **counts}))

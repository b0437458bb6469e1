"""``world``: write the built-in fact world as EasyEdit-style JSON records."""

from __future__ import annotations

from pathlib import Path

from ..jsonio import to_json


def register(sub) -> None:
    """Add ``world`` to the CLI's subparsers."""
    p = sub.add_parser("world", help="write the built-in fact world as JSON records")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run)


def run(args) -> None:
    """Write the world's records under ``--out``; print the counts as JSON."""
    from ..world.records import write_world
    counts = write_world(args.out, args.seed)
    print(to_json({"out": str(args.out), **counts}))

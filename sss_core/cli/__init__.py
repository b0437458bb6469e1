"""Command line: ``python -m sss_core {edit,lambda,world,train-default,train,bench} ...``.

All argparse and printing lives in this package, one module per subcommand, each with
``register(subparsers)`` and ``run(args)``; nothing below the CLI imports it. Errors a user can
cause exit with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import logging

from ..errors import SSSError
from . import bench, edit, lambda_max, train, train_default, world
from .common import fail

SUBCOMMANDS = (edit, lambda_max, world, train_default, train, bench)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m sss_core`` with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="python -m sss_core", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: sys.argv) and run the subcommand; exits 2 on an error the user can fix."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        args.handler(args)
    except SSSError as exc:
        fail(str(exc))
    return 0

"""Command line: ``sss-lab`` or ``python -m sss_core {edit,inspect,lambda,world,train-default,train,bench,damage-distance} ...``.

All argparse and printing lives in this package, one module per subcommand, each with
``register(subparsers)`` and ``run(args)``; nothing below the CLI imports it. Errors a user can
cause exit with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import SSSError
from . import bench, damage_distance, edit, inspect, lambda_max, train, train_default, world
from .common import fail

SUBCOMMANDS = (edit, inspect, lambda_max, world, train_default, train, bench, damage_distance)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block), exit code 2, as every user error here."""

    def error(self, message: str):
        """Print ``PROG: error: MESSAGE (PROG --help lists the arguments)`` on stderr and exit with code 2."""
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the arguments)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the command line with every subcommand registered (subparsers are OneLineParsers too)."""
    prog = "sss-lab" if Path(sys.argv[0]).name == "sss-lab" else "python -m sss_core"
    parser = OneLineParser(prog=prog, description="See what a knowledge edit does to a language model: edit facts, "
                                                  "compute lambda_max, train editors, run benches.")
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

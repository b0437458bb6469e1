"""Argument types and helpers shared by every subcommand: model arguments, ``--set``, output.

Nothing in ``sss_core`` below the CLI imports this module; library functions take typed values.
"""

from __future__ import annotations

import argparse
import json
import math
import sys


def fail(msg: str) -> None:
    """Print ``error: msg`` on stderr and exit with code 2 (an error the user can fix)."""
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def unit_interval(text: str) -> float:
    """argparse type: a number in [0, 1] (the SSS weight C)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"C must be a number in [0, 1], got {text!r}") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"C must be in [0, 1], got {text}")
    return value


def nonempty(text: str) -> str:
    """argparse type: a string with at least one non-blank character."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def csv_list(kind: type):
    """argparse type: a comma-separated list of ``kind`` values, returned as a tuple."""
    def parse(text: str):
        try:
            return tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {text!r}")
    return parse


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Add ``--model``, ``--device``, ``--dtype`` and ``--device-map`` to a subcommand's parser."""
    p.add_argument("--model", default=None, help="local model folder or hub name (default: the shipped model)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                   help="weights' dtype (default: as saved); half precision halves GPU memory")
    p.add_argument("--device-map", default=None, metavar="MAP",
                   help="e.g. 'auto': spread a model too large for one GPU over all of them (accelerate); "
                        "--device is then ignored")


def load_model_from_args(args):
    """The ``LoadedModel`` named by the model arguments (the shipped model when ``--model`` is absent)."""
    from ..models import DEFAULT_MODEL, load_model  # here: torch is imported only once the arguments are valid
    return load_model(args.model or DEFAULT_MODEL, device=args.device, dtype=args.dtype, device_map=args.device_map)


def parse_settings(pairs: list[str]) -> dict:
    """``--set KEY=VALUE`` pairs -> {key: value}; values are JSON where they parse (a list becomes the
    tuple the configs hold, e.g. ``--set layers=[0,1]``), else strings. Exits 2 on a pair without '='."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            fail(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out[key] = tuple(parsed) if isinstance(parsed, list) else parsed
    return out


def emit(obj: dict, as_json: bool, text: str) -> None:
    """Print ``obj`` as indented JSON when ``as_json``, else ``text``."""
    print(json.dumps(obj, indent=2, default=str) if as_json else text)

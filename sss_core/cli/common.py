"""Argument types and helpers shared by every subcommand: model arguments, ``--set``, output.

Nothing in ``sss_core`` below the CLI imports this module; library functions take typed values.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from ..jsonio import to_json

MAX_INT = 2**63 - 1  # settings and counts beyond this are not numbers anyone means (and not JSON-safe)


def fail(msg: str) -> None:
    """Print ``error: msg`` on stderr, as one line, and exit with code 2 (an error the user can fix)."""
    print("error: " + " ".join(line.strip() for line in str(msg).splitlines() if line.strip()), file=sys.stderr)
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


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (counts: cases, seeds, threads, workers, top-k, batch size)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if not 1 <= value <= MAX_INT:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def unit_interval_list(text: str) -> tuple[float, ...]:
    """argparse type: a comma-separated list of numbers in [0, 1] (C values), at least one."""
    values = tuple(unit_interval(v) for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError("give at least one C value")
    return values


def nonempty(text: str) -> str:
    """argparse type: a string with at least one non-blank character."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def csv_list(kind):
    """argparse type: a comma-separated list of ``kind`` values (at least one), returned as a tuple.

    ``kind`` is a type or another argparse type function (e.g. ``positive_int``).
    """
    name = getattr(kind, "__name__", "values")

    def parse(text: str):
        try:
            values = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {name}, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {name}, got {text!r}")
        return values
    return parse


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Add ``--model``, ``--device``, ``--dtype`` and ``--device-map`` to a subcommand's parser."""
    p.add_argument("--model", default=None, type=nonempty, help="local model folder or hub name (default: the shipped model)")
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
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            fail(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            parsed = json.loads(value, parse_constant=_no_constant)
        except json.JSONDecodeError:
            parsed = value
        except ValueError as exc:
            fail(f"--set {key}: {exc}")
        _check_numbers(key, parsed)
        out[key.strip()] = tuple(parsed) if isinstance(parsed, list) else parsed
    return out


def _no_constant(name: str):
    """json.loads hook: refuse NaN, Infinity and -Infinity (no setting means them; strict JSON has none)."""
    raise ValueError(f"{name} is not a usable value")


def _check_numbers(key: str, value) -> None:
    """Exit 2 when ``value`` (or an item of it) is a number out of range: an int beyond 64 bits or an
    infinite float (``1e999`` parses as inf)."""
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, bool):
            continue
        if (isinstance(v, int) and abs(v) > MAX_INT) or (isinstance(v, float) and not math.isfinite(v)):
            fail(f"--set {key}: {v!r} is out of range")


def emit(obj: dict, as_json: bool, text: str) -> None:
    """Print ``obj`` as indented JSON when ``as_json`` (NaN and Infinity as null), else ``text``."""
    print(to_json(obj, indent=True) if as_json else text)

"""``lambda``: print lambda_max (the SSS metric, paper Eq. 9) of a prompt and target."""

from __future__ import annotations

import time

from .common import add_model_args, emit, fail, load_model_from_args, nonempty


def register(sub) -> None:
    """Add ``lambda`` to the CLI's subparsers."""
    p = sub.add_parser("lambda", help="print lambda_max (the SSS metric) of prompt + target")
    p.add_argument("--prompt", required=True, type=nonempty)
    p.add_argument("--target", required=True, type=nonempty)
    p.add_argument("--reduction", choices=("mean", "sum"), default="mean",
                   help="mean over tokens (the paper) or sum (the authors' code)")
    p.add_argument("--layer", default="-1",
                   help="hidden states the gradient is read at: -1 the last (the paper), 0 the input embeddings, "
                        "i the hidden states after i blocks (block i-1's output, blocks counted from 0), or 'all' for every one of them")
    p.add_argument("--json", action="store_true")
    add_model_args(p)
    p.set_defaults(handler=run)


def run(args) -> None:
    """Load the model, compute lambda_max of ``--prompt`` + ``--target``; print it (JSON with ``--json``)."""
    lm = load_model_from_args(args)  # first: a model that cannot be loaded is refused before torch is imported
    from ..sss import lambda_max, lambda_max_by_layer

    start = time.perf_counter()
    out = {"prompt": args.prompt, "target": args.target, "reduction": args.reduction, "model": lm.name}
    if args.layer == "all":
        values = lambda_max_by_layer(lm.model, lm.tok, [args.prompt], [args.target], args.reduction)[0].tolist()
        out.update(layer="all", lambda_max_by_layer=values, seconds=time.perf_counter() - start)
        last = len(values) - 1
        names = {0: "input embeddings", last: "last hidden states, after the final norm: the paper's, the default"}
        emit(out, args.json, "\n".join(f"layer {i}: lambda_max = {v:.6g}  ({names.get(i, f'after {i} blocks: the output of block {i - 1}')})"
                                       for i, v in enumerate(values)))
        return
    try:
        layer = int(args.layer)
    except ValueError:
        fail(f"--layer must be a whole number or 'all', got {args.layer!r}")
    value = lambda_max(lm.model, lm.tok, [args.prompt], [args.target], reduction=args.reduction, layer=layer).item()
    out.update(layer=layer, lambda_max=value, seconds=time.perf_counter() - start)
    emit(out, args.json, f"lambda_max = {value:.6g}")

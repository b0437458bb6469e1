"""Time the 2-D projections of the Projection view (PCA, UMAP after its warm-up, t-SNE) and print figures.

    python benchmarks/bench_projection.py               # 40 points per side, 5 repeats
    python benchmarks/bench_projection.py --n 200 --repeat 10

The timing that tests/test_projection.py asserted (a UMAP fit of a small set under 5 s once numba has
compiled) lives here: a busy shared machine must not fail the test suite. Prints JSON: the warm-up
seconds and, per method, the median and p95 seconds of a fit; with ``--max-umap-seconds`` it exits
1 when UMAP's median is above it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_core import p95  # noqa: E402 (the benchmarks' folder is on sys.path when run as a script)


def main() -> int:
    """Parse the flags, time each method, print the figures; non-zero exit when over the UMAP target."""
    from sss_core.projection import MIN_POINTS, project, warm_up_umap
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=max(40, MIN_POINTS + 5), help="points per side (before, after)")
    p.add_argument("--dim", type=int, default=64, help="embedding width")
    p.add_argument("--repeat", type=int, default=5, help="fits per method")
    p.add_argument("--max-umap-seconds", type=float, default=None, help="fail when UMAP's median is above this")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    before = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    after = before.copy()
    after[0] += 3.0
    out = {"n": args.n, "dim": args.dim, "umap_warm_up_s": round(warm_up_umap(), 3)}
    for method in ("pca", "umap", "tsne"):
        times = [project(before, after, method=method).seconds for _ in range(args.repeat)]
        out[method] = {"median_s": round(statistics.median(times), 4), "p95_s": round(p95(times), 4)}
    print(json.dumps(out, indent=2))
    if args.max_umap_seconds is not None and out["umap"]["median_s"] > args.max_umap_seconds:
        print(f"UMAP median {out['umap']['median_s']} s is above {args.max_umap_seconds} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

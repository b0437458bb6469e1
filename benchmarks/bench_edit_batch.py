"""Throughput of single edits made side by side (``--edit-batch``) against one at a time, on the shipped model.

For each editor and batch size B, times the bench's unit of work (``runners.single_edits``: edit,
score every probe and lambda_max before/after, revert) over the same N world cases, repeated and
interleaved (B=1, B=5, B=25, B=1, ...) so that a change of load hits every size alike. Prints results
per second (median of the repeats), the ratio to B=1, and how many cases' metrics equal B=1's.

    OMP_NUM_THREADS=1 python benchmarks/bench_edit_batch.py
    OMP_NUM_THREADS=1 python benchmarks/bench_edit_batch.py --editors ft-l,rome --sizes 1,8 --n 40 --repeat 5
    python benchmarks/bench_edit_batch.py --device cuda      # a GPU, when there is one
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _run(lm, editor, cases, batch: int) -> tuple[float, list]:
    from sss_core.evaluation.metrics import forget_unedited_readings
    from sss_core.evaluation.runners import single_edits
    forget_unedited_readings()  # each run reads the unedited model itself, as the first editor of a bench does
    start = time.perf_counter()
    outcomes = list(single_edits(lm.model, lm.tok, editor, cases, seed=0, edit_batch=batch))
    if lm.model.device.type == "cuda":
        import torch
        torch.cuda.synchronize()
    return time.perf_counter() - start, outcomes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--editors", default="ft-l,ft-l+sss,rome,memit,mend")
    p.add_argument("--sizes", default="1,5,25", help="batch sizes; the first is the reference")
    p.add_argument("--n", type=int, default=50, help="world cases per run")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    import torch

    from sss_core.editors import make_editor
    from sss_core.evaluation.datasets import load_cases
    from sss_core.models import load_model

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    lm = load_model(device=args.device)
    cases = load_cases("world", args.n, 0, "auto", 10**8, False)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"device {lm.model.device}, torch threads {torch.get_num_threads()}, {args.n} world cases, "
          f"{args.repeat} interleaved repeats, load average before {os.getloadavg()[0]:.2f}")
    print(f"{'editor':<10} {'B':>3} {'results/s':>10} {'ratio':>6} {'equal to B=' + str(sizes[0]):>12}")
    for name in args.editors.split(","):
        editor = make_editor(name)
        _run(lm, editor, cases[:4], sizes[-1])  # warm: checkpoints, C factorisation, prefixes
        seconds = {b: [] for b in sizes}
        outcomes = {}
        for _ in range(args.repeat):
            for b in sizes:
                t, outcomes[b] = _run(lm, editor, cases, b)
                seconds[b].append(t)
        ref = statistics.median(seconds[sizes[0]])
        for b in sizes:
            med = statistics.median(seconds[b])
            same = sum(x.result is not None and y.result is not None and x.result.metrics == y.result.metrics
                       for x, y in zip(outcomes[sizes[0]], outcomes[b]))
            print(f"{name:<10} {b:>3} {args.n / med:>10.2f} {ref / med:>6.2f} {same:>5}/{args.n}")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

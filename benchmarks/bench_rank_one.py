"""Time ROME (one edit at a time) and MEMIT (a batch of 100) on the default model, with the key
statistics already cached, and report how reliable the edits are.

    python benchmarks/bench_rank_one.py                     # 30 ROME edits, one MEMIT-100 batch
    python benchmarks/bench_rank_one.py --n-rome 100 --memit-repeat 3 --threads 2

Reliability is the mean teacher-forced token accuracy of each edit's own target, measured with
that edit applied (ROME) or with the whole batch applied (MEMIT).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_core import p95  # noqa: E402 (the benchmarks' folder is on sys.path when run as a script)


def _accuracy(model, tok, requests) -> float:
    from sss_core.evaluation.metrics import teacher_forced
    preds = teacher_forced(model, tok, [r.prompt for r in requests], [r.target_new for r in requests])
    return statistics.mean(sum(a == b for a, b in zip(p.target_ids, p.argmax_ids)) / len(p.target_ids)
                           for p in preds)


def _summary(times: list[float]) -> dict:
    return {"n": len(times), "median_s": round(statistics.median(times), 4), "p95_s": round(p95(times), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-rome", type=int, default=30, help="ROME edits to time (distinct world test cases)")
    p.add_argument("--memit-size", type=int, default=100)
    p.add_argument("--memit-repeat", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target machine has 2 cores)")
    p.add_argument("--stats-dir", default=None, help="key-statistics cache (default: the library's)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = p.parse_args()

    import torch
    from sss_core.editors import make_editor
    from sss_core.evaluation.presets import presets
    from sss_core.models import load_model

    torch.set_num_threads(args.threads)
    lm = load_model(device="cpu")
    requests = [c.request for c in presets("test", max(args.n_rome, args.memit_size))]
    rome = make_editor("rome", stats_dir=args.stats_dir)
    memit = make_editor("memit", stats_dir=args.stats_dir)

    start = time.perf_counter()  # first calls: key statistics (unless cached) and context prefixes
    rome.edit(lm.model, lm.tok, [requests[0]])
    memit.edit(lm.model, lm.tok, requests[:2])
    warmup = time.perf_counter() - start

    load_start = os.getloadavg()[0]
    times, accs = [], []
    for r in requests[:args.n_rome]:
        t = time.perf_counter()
        edit = rome.edit(lm.model, lm.tok, [r])
        times.append(time.perf_counter() - t)
        with edit:
            accs.append(_accuracy(lm.model, lm.tok, [r]))
    results = {"device": str(lm.device), "threads": torch.get_num_threads(), "warmup_s": round(warmup, 2),
               "load_avg_1m_at_start": round(load_start, 2),
               "rome": {**_summary(times), "layer": rome.config.layer,
                        "reliability": round(statistics.mean(accs), 4)}}
    print(json.dumps(results["rome"]), flush=True)

    batch = requests[:args.memit_size]
    times = []
    for _ in range(args.memit_repeat):
        t = time.perf_counter()
        edit = memit.edit(lm.model, lm.tok, batch)
        times.append(time.perf_counter() - t)
    with edit:
        acc = _accuracy(lm.model, lm.tok, batch)
    results["memit"] = {**_summary(times), "batch": len(batch), "layers": list(memit.config.layers),
                        "reliability": round(acc, 4), "v_steps": edit.info["steps"]}
    results["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)  # other work on the machine skews timings
    print(json.dumps({k: v for k, v in results.items() if k not in ("rome", "memit")}), flush=True)
    print(json.dumps(results["memit"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

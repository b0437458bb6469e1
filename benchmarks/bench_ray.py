"""Results per second of the bench: local processes (--workers 1, 2) against Ray actors (--ray --actors 1, 2).

Each setting runs the same bench (FT-L single edits of the world on the shipped model, one seed,
one torch thread per process) as a fresh ``python -m sss_core bench`` process into a new folder.
Printed per setting: the whole command's wall time (Python start, model loads, Ray's local cluster,
the report), the time to the first stored result (start-up), results per second over the whole
command, results per second between the first and the last stored result (the steady rate,
start-up left out), and the mean seconds of one edit as measured inside the process that made it
(it grows when the processes get less CPU: it tells contention from executor overhead). The default 50 cases are two jobs of 25 (the bench's unit of work), one per
process or actor. Ray runs start their own local cluster (``--ray`` without an address).

Ray starts its workers, the actors included, at niceness 15 (``RAY_worker_niceness``), so that
its own services stay responsive: on a machine shared with other work the actors then yield the
CPU to every other process, local bench workers included. ``--ray-niceness`` sets it for the Ray
settings (default: Ray's own, 15); 0 puts actors and local processes on the same terms.

    python benchmarks/bench_ray.py [--n 50] [--editors ft-l] [--settings workers1,workers2,ray1,ray2]
                                   [--ray-niceness 0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "workers1": ("--workers 1 (one process)", ["--workers", "1"]),
    "workers2": ("--workers 2 (two processes)", ["--workers", "2"]),
    "ray1": ("--ray --actors 1 (local cluster)", ["--ray", "--actors", "1"]),
    "ray2": ("--ray --actors 2 (local cluster)", ["--ray", "--actors", "2"]),
}


def stored(out: Path) -> int:
    """Results stored so far in ``out`` (the main file and any worker part files)."""
    return sum(f.read_bytes().count(b"\n") for f in out.glob("results*.jsonl"))


def run(name: str, extra: list[str], n: int, editors: str, env: dict[str, str]) -> dict:
    """Run one bench setting with environment ``env``; returns its timings (seconds) and rates (results per second).

    Raises RuntimeError with the end of the bench's stderr if it fails.
    """
    out = Path(tempfile.mkdtemp(prefix=f"bench-ray-{name}-")) / "run"
    argv = [sys.executable, "-m", "sss_core", "bench", "--editors", editors, "--data", "world", "--n", str(n),
            "--seeds", "1", "--threads", "1", "--out", str(out), "--no-progress", *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    first = last = None
    while proc.poll() is None:
        count = min(stored(out), n) if out.exists() else 0  # min: parts are merged into the main file at the end
        if count and first is None:
            first = time.perf_counter() - start
        if count == n and last is None:
            last = time.perf_counter() - start
        time.sleep(0.02)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed: {proc.stderr.read().decode()[-2000:]}")
    last = last if last is not None else wall
    first = first if first is not None else last
    edit = statistics.mean(json.loads(line)["seconds"] for line in (out / "results.jsonl").read_text().splitlines())
    return {"wall": wall, "first": first, "overall": n / wall,
            "steady": (n - 1) / (last - first) if last > first else float("nan"), "edit": edit}


def main() -> None:
    """Run every chosen setting once, one after another; print a table of the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="world cases (one seed)")
    parser.add_argument("--editors", default="ft-l")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {', '.join(SETTINGS)}")
    parser.add_argument("--ray-niceness", type=int, default=None, help="niceness of Ray's workers (default: Ray's, 15)")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.ray_niceness is not None:
        env["RAY_worker_niceness"] = str(args.ray_niceness)
    nice = env.get("RAY_worker_niceness", "15 (Ray's default)")
    print(f"{args.n} single edits ({args.editors}, world, shipped model), one torch thread per process; "
          f"Ray workers' niceness {nice}")
    print(f"{'setting':34s} {'wall s':>7s} {'first result s':>15s} {'results/s':>10s} {'steady results/s':>17s} "
          f"{'edit s':>7s}")
    for name in args.settings.split(","):
        label, extra = SETTINGS[name]
        r = run(name, extra, args.n, args.editors, env)
        print(f"{label:34s} {r['wall']:7.1f} {r['first']:15.1f} {r['overall']:10.2f} {r['steady']:17.2f} "
              f"{r['edit']:7.3f}", flush=True)


if __name__ == "__main__":
    main()

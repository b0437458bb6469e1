"""How fast the command line answers before any model work: --help, a bad argument, an unreachable hub.

Prints the median and maximum wall time of each over several runs (seconds). Targets (issue 15):
a bad argument is refused within 1 s; a hub that cannot be reached is one line within a few seconds.

    python benchmarks/bench_cli_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "--help": ["--help"],
    "unknown editor": ["edit", "--editor", "bogus", "--prompt", "The capital of France is", "--target", "Rome"],
    "unreachable hub": ["lambda", "--model", "sss-lab-bench/no-such-model", "--prompt", "a", "--target", "b"],
}


def main() -> None:
    """Time each case ``--runs`` times as a fresh ``python -m sss_core`` process; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"}  # refuses at once, as with no network
    for name, argv in CASES.items():
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "sss_core", *argv], capture_output=True, env=env, check=False)
            times.append(time.perf_counter() - start)
        print(f"{name:16s} median {statistics.median(times):.2f} s  max {max(times):.2f} s  ({args.runs} runs)")


if __name__ == "__main__":
    main()

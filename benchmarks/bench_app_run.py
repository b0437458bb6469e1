"""Time the app's Run edit -> results in a real browser and compare with the target (5 s on 2 CPU cores).

    python benchmarks/bench_app_run.py                  # runs the timed browser test once
    python benchmarks/bench_app_run.py --target 5 --strict

The browser test (tests/e2e/test_browser.py::test_ftl_sss_edit_from_a_preset_shows_lambda_and_projection)
measures the seconds from pressing Run edit to lambda_max and projection on screen, for the first
edit of the server process and the same edit again, with the server's CPU seconds and the load
average over that interval, and records them in test-artifacts/e2e-timings.json; it no longer asserts a
time (a busy shared machine must not fail the suite). This script runs it and prints the figures
against the target; with ``--strict`` it exits 1 when the faster of the two runs is over the target.
Needs Debian's chromium and playwright, like the browser tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/e2e/test_browser.py::test_ftl_sss_edit_from_a_preset_shows_lambda_and_projection"
TIMINGS = ROOT / "test-artifacts" / "e2e-timings.json"


def main() -> int:
    """Run the timed browser test, print its recorded figures; non-zero when it fails (or, strict, is slow)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", type=float, default=5.0, help="seconds from Run to results (the app's target)")
    p.add_argument("--strict", action="store_true", help="exit 1 when the faster run is over the target")
    args = p.parse_args()
    if TIMINGS.exists():
        TIMINGS.unlink()  # only this run's figures
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST], cwd=ROOT)
    if rc != 0 or not TIMINGS.exists():
        print(f"the timed browser test failed (exit {rc}); no figures", file=sys.stderr)
        return rc or 1
    run = json.loads(TIMINGS.read_text())["run_to_results"]
    best = min(run["first"]["seconds"], run["second"]["seconds"])
    print(json.dumps({"target_s": args.target, "best_s": best, "within_target": best <= args.target, **run}, indent=2))
    return 1 if args.strict and best > args.target else 0


if __name__ == "__main__":
    sys.exit(main())

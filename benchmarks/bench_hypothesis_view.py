"""Time the Hypothesis view over N world edits (default: 50 FT-L edits; the target is 60 s on 2 CPU cores).

    python benchmarks/bench_hypothesis_view.py                 # 50 FT-L edits, as the target says
    python benchmarks/bench_hypothesis_view.py --n 30 --editors ft-l,ft-l+sss

Runs the view itself (streamlit's AppTest: the page's script, the Run button, the edits with their
progress bar, the bootstrap statistics and the figures) in this process, after a first run that loads
the model and (unless --no-warm-up) the Hypothesis warm-up sss-lab-app runs in the background, and prints the seconds from pressing Run to the results on screen, the
part the edits took (bench runner + measures), the rest (statistics, figures), and the rho values the
view shows. A script printing figures, not a timed test: a busy shared machine must not fail a suite.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    """Run the view once over the edits asked for and print its timing; 1 when it shows an error."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50, help="world edits (the view's N)")
    p.add_argument("--editors", default="ft-l", help="comma-separated editors")
    p.add_argument("--target", type=float, default=60.0, help="seconds from Run to results (the view's target)")
    p.add_argument("--no-warm-up", action="store_true",
                   help="skip the launcher's Hypothesis warm-up (the k-NN reference, scipy.stats) before Run: "
                        "what a first Run costs on a server started without warm-ups, or pressed within seconds")
    args = p.parse_args()
    os.environ.setdefault("SSS_LAB_UMAP_WARMUP", "0")  # no background compile competing for the cores
    sys.path.insert(0, str(ROOT))
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=1800)
    start = time.perf_counter()
    at.run()  # loads the model and runs the warm-up edit, as a user's first page load does
    at.switch_page("app/views/hypothesis.py").run()
    if not args.no_warm_up:  # what sss-lab-app's background warm-up has done a few seconds after the model loaded
        from app.resources import get_model, warm_hypothesis
        from app.serving import DEFAULT_MODEL_NAME
        warm_hypothesis(get_model(DEFAULT_MODEL_NAME))
    load = time.perf_counter() - start
    at.multiselect(key="hyp_editors").set_value(args.editors.split(",")).run()
    at.number_input(key="hyp_n").set_value(args.n).run()
    start = time.perf_counter()
    at.button(key="hyp_run").click().run()
    seconds = time.perf_counter() - start
    problems = [e.value for e in at.exception] + [e.value for e in at.error]
    job = at.session_state["_hyp_job"]
    import torch

    print(f"model load + first page{'' if args.no_warm_up else ' + Hypothesis warm-up'}: {load:.1f} s (not counted)")
    print(f"{len(job.records)} edits ({args.n} world cases x {args.editors}), {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    print(f"Run -> results on screen: {seconds:.1f} s (target {args.target:g} s: "
          f"{'within' if seconds <= args.target else 'OVER'})")
    print(f"  edits (runner + per-edit measures): {job.seconds:.1f} s, {job.seconds / max(1, len(job.records)):.2f} s "
          f"per edit; statistics, figures and page: {seconds - job.seconds:.1f} s")
    for m in at.markdown:
        if "ρ = " in m.value:
            print(m.value.replace("**", ""))
    for problem in problems:
        print("ERROR:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Re-apply the one-line breakages of the project's central claims and check that a test fails for each.

Each breakage is a single text replacement in one file, applied to a fresh copy of the committed
tree (``git archive HEAD``), never to the working tree. For each, the named tests run in that copy;
the breakage is "caught" when they fail. First the same tests run on the unbroken copy, which must
pass (otherwise a failure would prove nothing). Prints one row per breakage and exits non-zero if any
breakage was not caught. Slow (a few minutes on 2 cores) and needs Debian's chromium for the
browser test, so it is not part of CI; docs/testing.md records its output.

    python tools/hand_mutations.py            # all
    python tools/hand_mutations.py --only 1 5 # some, by number
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Breakage:
    """One line of the project broken on purpose: ``old`` (found exactly once in ``path``) becomes ``new``."""

    meaning: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


BREAKAGES = (
    Breakage("FT-L's SSS term detached: SSS never applied", "sss_core/editors/ftl.py",
             "create_graph=True).mean()", "create_graph=True).detach().mean()",
             ("tests/test_sss_in_ftl.py::test_sss_term_gradient_reaches_the_edited_weight",)),
    Breakage("locality compares the post-edit argmax with the probe's answer, not the pre-edit argmax",
             "sss_core/evaluation/metrics.py",
             "return sum(a == b for a, b in zip(pre.argmax_ids, post.argmax_ids)) / len(post.target_ids)",
             "return sum(a == b for a, b in zip(post.target_ids, post.argmax_ids)) / len(post.target_ids)",
             ("tests/evaluation/test_metric_definitions.py",)),
    Breakage("the app's C sweep ignores C", "sss_core/analysis.py",
             "{**overrides, field_name: float(c)}", "{**overrides}",
             ("tests/test_sweeps.py::test_app_sweep_points_are_the_edits_at_each_c",)),
    Breakage("the bench's C sweep ignores C", "sss_core/evaluation/bench.py",
             "_editor(name, seed, cfg.settings, C)", "_editor(name, seed, cfg.settings)",
             ("tests/evaluation/test_bench_sweep.py::test_bench_sweep_builds_each_editor_with_its_c",)),
    Breakage("the report's per-seed mean becomes max", "sss_core/evaluation/report.py",
             'per_seed = ok.groupby([*by, "seed"], sort=False)[list(metrics)].mean()',
             'per_seed = ok.groupby([*by, "seed"], sort=False)[list(metrics)].max()',
             ("tests/evaluation/test_report_tables.py",)),
    Breakage("SERAC training resume restarts at step 0", "sss_core/editors/serac.py",
             "summary = train_loop(net, step, groups, loop, out, resume,",
             "summary = train_loop(net, step, groups, loop, out, False,",
             ("tests/editors/test_training_resume.py::test_resume_runs_only_the_steps_left[serac]",)),
    Breakage("FT-L returns the base weights in half precision", "sss_core/editors/ftl.py",
             "new = master.detach().to(weight.dtype)",
             "new = base if weight.dtype != torch.float32 else master.detach().to(weight.dtype)",
             ("tests/test_sss_in_ftl.py::test_half_precision_ftl_edit_changes_the_prediction",)),
    Breakage("the Results view never reads the chosen folder", "app/views/results.py",
             "if folder:", "if folder and False:",
             ("tests/e2e/test_results_view.py::test_results_view_shows_the_folders_rows_and_report",)),
)


def fresh_copy(into: Path) -> Path:
    """The committed tree (HEAD) unpacked into ``into``; returns it."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[bool, str]:
    """(passed, pytest's last summary line and the first failure's reason) for ``tests`` run in ``tree``
    (which is first on the import path)."""
    out = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", *tests],
                         cwd=tree, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    failed = next((ln[:300] for ln in lines if ln.startswith("FAILED ")), "")
    return out.returncode == 0, (lines[-1] if lines else out.stderr.strip()[-200:]) + (f"; {failed}" if failed else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", type=int, nargs="+", help="breakage numbers (1-based) to run")
    args = parser.parse_args(argv)
    chosen = [(i, b) for i, b in enumerate(BREAKAGES, start=1) if not args.only or i in args.only]
    missed = 0
    with tempfile.TemporaryDirectory(prefix="sss-hand-mutations-") as tmp:
        clean = fresh_copy(Path(tmp) / "clean")
        every = tuple(t for _, b in chosen for t in b.tests)
        ok, summary = run_tests(clean, every)
        print(f"unbroken tree, every named test: {'pass' if ok else 'FAIL'} ({summary})")
        if not ok:
            return 2
        for i, b in chosen:
            tree = fresh_copy(Path(tmp) / f"breakage{i}")
            source = tree / b.path
            text = source.read_text(encoding="utf-8")
            if text.count(b.old) != 1:
                print(f"{i}. {b.meaning}: the line to break is not found exactly once in {b.path}")
                missed += 1
                continue
            source.write_text(text.replace(b.old, b.new), encoding="utf-8")
            ok, summary = run_tests(tree, b.tests)
            missed += ok
            print(f"{i}. {b.meaning} ({b.path}): {'NOT CAUGHT' if ok else 'caught'} by {' '.join(b.tests)} ({summary})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

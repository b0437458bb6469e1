"""Where the SSS term changes FT-L's edits: FT-L against FT-L+SSS under several FT-L settings, paired.

Each row of ``ROWS`` is one bench invocation,

    python -m sss_core bench --editors ft-l,ft-l+sss --data world --n 200 --seeds 1 \\
        --set KEY=VALUE ... --out runs/sss-settings/ROW --workers 1 --threads 1 --no-progress

so both editors run with the row's settings on the same 200 world test edits, and FT-L+SSS keeps
its registry C (0.9, the ``ft-l+sss`` entry's default; no row sets ``sss_c``). The table is read
from each bench folder with the bench report's own code: the paired differences (FT-L+SSS minus
FT-L, 95% bootstrap CI over cases) and the share of cases with any prediction changed come from
``sss_core.evaluation.report.sss_effect_table``, as in the report's section "What SSS changes,
paired". Beside them: each editor's median lambda_max after the edit (against the new target, as
the bench stores it; the bench does not store it against the old target), how often FT-L+SSS's is
the lower of the pair, the median number of optimisation steps each ran, and the invocation's wall
time from the folder's run log.

What it writes: the bench folders under ``--runs`` (results.jsonl stays there, not committed); each
folder's report.md, summary.csv and config.json copied to ``--docs``/ROW; the table as
``--docs``/table.md and table.csv. docs/editors.md quotes table.md.

Usage:
    python tools/sss_settings.py                                # every row, 200 edits each, one at a time
    python tools/sss_settings.py --rows defaults,prompt-last    # some rows only (the table lists every finished row)
    python tools/sss_settings.py --n 5 --runs /tmp/s/runs --docs /tmp/s/docs   # a quick try
    python tools/sss_settings.py --table-only                   # rebuild the table from finished runs
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the package is the checkout's

from sss_core.evaluation.report import md_table, sss_effect_table
from sss_core.evaluation.store import RESULTS_FILE, BenchStore, read_records
from sss_core.jsonio import to_json

log = logging.getLogger("sss_settings")

EDITORS = ("ft-l", "ft-l+sss")  # the pair; ft-l+sss is ft-l with sss_c = 0.9 (sss_core/editors/__init__.py)
COPIED = ("report.md", "summary.csv", "config.json")  # what docs/results/*/ hold of a bench folder (README there)
MODEL_PATH = "sss_core/assets/default-model"


@dataclass(frozen=True)
class Row:
    """One setting of FT-L, run for both editors: ``settings`` are the bench's ``--set`` values."""

    slug: str  # the bench folder's name
    label: str  # what the table says the row is
    settings: dict[str, Any] = field(default_factory=dict)


# FT-L's defaults (sss_core/editors/ftl.py FTLConfig): block 0, 25 Adam steps at lr 5e-3, weights
# clamped to +-5e-3 of the original (the "box"), early stop once the edit loss is below 1e-2,
# objective "target" (NLL of every target token), SSS reduction "mean".
ROWS = (
    Row("defaults", "defaults"),
    Row("prompt-last", "the authors' objective: only the first target token", {"objective": "prompt_last"}),
    Row("lr-below-box", "lr 1e-3, below the box's 5e-3", {"lr": 1e-3}),
    Row("loose-box", "a looser box: +-5e-2", {"norm_constraint": 5e-2}),
    Row("no-early-stop", "60 steps, no early stop", {"steps": 60, "early_stop_loss": 0.0}),
    # the authors' released code sums the squared gradient over tokens instead of averaging it: at the
    # same C this weighs the SSS term about m times (m = tokens of prompt + target) more
    Row("sum-reduction", "the authors' SSS reduction: sum over tokens", {"sss_reduction": "sum"}),
    # the combination the rows above suggest: the two settings under which SSS changed the most cases'
    # predictions (sum reduction 33%, the looser box 14%; the others 5.5-9.5%, defaults 7%)
    Row("loose-sum", "looser box and sum reduction", {"norm_constraint": 5e-2, "sss_reduction": "sum"}),
)


def bench_argv(row: Row, n: int, seeds: int, out: Path, resume: bool) -> list[str]:
    """The bench's command line for ``row`` (run with this interpreter, one worker, one thread)."""
    argv = [sys.executable, "-m", "sss_core", "bench", "--editors", ",".join(EDITORS), "--data", "world",
            "--n", str(n), "--seeds", str(seeds)]
    for key, value in row.settings.items():
        argv += ["--set", f"{key}={value if isinstance(value, str) else to_json(value)}"]
    return argv + ["--out", str(out), "--workers", "1", "--threads", "1", "--no-progress",
                   *(["--resume"] if resume else [])]


def run_row(row: Row, n: int, seeds: int, runs: Path) -> Path:
    """Run ``row``'s bench into ``runs``/slug (continuing a run already there) and return the folder.

    Raises subprocess.CalledProcessError when the bench fails (its own message is on stderr).
    """
    out = runs / row.slug
    if out.resolve().is_relative_to(ROOT):  # the run log and report then show the path as typed in the checkout
        out = out.resolve().relative_to(ROOT)
    resume = (ROOT / out / RESULTS_FILE).exists() or any((ROOT / out).glob("results.part*.jsonl"))
    argv = bench_argv(row, n, seeds, out, resume)
    log.info("%s: %s", row.slug, " ".join(argv[1:]))
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return ROOT / out


def _md_column(md: str, header: str) -> list[str]:
    """The cells under ``header`` of a Markdown table written by ``report.md_table``; KeyError if absent."""
    lines = [line.strip().strip("|").split("|") for line in md.strip().splitlines()]
    names = [h.strip() for h in lines[0]]
    if header not in names:
        raise KeyError(f"no column {header!r} in the table: {names}")
    return [cells[names.index(header)].strip() for cells in lines[2:]]


def measure(row: Row, out: Path) -> dict[str, Any]:
    """One row of the table from the bench folder ``out``: paired effects with CIs, lambda_max, steps, wall time.

    Raises ValueError when the folder has no paired FT-L / FT-L+SSS single edits.
    """
    store = BenchStore(out)
    frame = store.frame()
    md, csv = sss_effect_table(frame)  # the report's own paired differences and bootstrap CIs
    effect = {(c["metric"]): c for c in csv if c["baseline"] == EDITORS[0] and c["editor"] == EDITORS[1]}
    if not effect:
        raise ValueError(f"{out} has no paired {EDITORS[1]} - {EDITORS[0]} results")
    pair = f"{EDITORS[1]} - {EDITORS[0]}"
    body = dict(zip(_md_column(md, "Pair"), _md_column(md, "% cases with any prediction changed")))
    ok = frame[(frame["mode"] == "single") & frame["error"].isna()]
    by = {e: ok[ok["editor"] == e].set_index(["seed", "case_id"]) for e in EDITORS}
    both = by[EDITORS[0]].index.intersection(by[EDITORS[1]].index)
    lam = {e: by[e].loc[both, "lambda_max_after"] for e in EDITORS}
    steps: dict[str, list[int]] = {e: [] for e in EDITORS}
    records, _ = read_records(out / RESULTS_FILE)
    for r in records:
        if r.get("mode") == "single" and r.get("editor") in steps and r.get("extra"):
            steps[r["editor"]].append(r["extra"]["steps"])
    runs = store.log.runs()
    return {
        "row": row.slug, "label": row.label, "settings": row.settings,
        "pairs": len(both), "failed": int(frame["error"].notna().sum()),
        **{f"d_{m}": effect[m]["mean_diff"] for m in ("reliability", "generality", "locality")},
        **{f"d_{m}_lo": effect[m]["lo"] for m in ("reliability", "generality", "locality")},
        **{f"d_{m}_hi": effect[m]["hi"] for m in ("reliability", "generality", "locality")},
        "changed_pct": float(body[pair]),
        **{f"{m}_ftl": by[EDITORS[0]].loc[both, m].mean() for m in ("reliability", "generality", "locality")},
        "lambda_before": by[EDITORS[0]].loc[both, "lambda_max_before"].median(),
        "lambda_after_ftl": lam[EDITORS[0]].median(), "lambda_after_sss": lam[EDITORS[1]].median(),
        "sss_lambda_lower_pct": 100 * float((lam[EDITORS[1]] < lam[EDITORS[0]]).mean()),
        "steps_ftl": float(pd.Series(steps[EDITORS[0]]).median()),
        "steps_sss": float(pd.Series(steps[EDITORS[1]]).median()),
        "wall_s": sum(r.get("wall_seconds") or 0.0 for r in runs),
        "git_commit": runs[-1].get("git_commit", "?")[:7] if runs else "?",
    }


def _ci(m: dict[str, Any], metric: str) -> str:
    """A paired difference in points with its CI: "+0.04 [-0.17, +0.23]"."""
    return (f"{100 * m[f'd_{metric}']:+.2f} [{100 * m[f'd_{metric}_lo']:+.2f}, "
            f"{100 * m[f'd_{metric}_hi']:+.2f}]")


def _settings_text(settings: dict[str, Any]) -> str:
    """A row's ``--set`` values as ``key=value`` text ("defaults" when there are none)."""
    return ", ".join(f"`{k}={v if isinstance(v, str) else to_json(v)}`" for k, v in settings.items()) or "defaults"


def table(measured: list[dict[str, Any]]) -> str:
    """The Markdown table of the measured rows (paired differences in percentage points)."""
    header = ["row", "settings (both editors)", "Δ reliability", "Δ generality", "Δ locality",
              "% cases any prediction changed", "FT-L rel / gen / loc",
              "median λmax after, FT-L", "median λmax after, +SSS", "% cases λmax(+SSS) < λmax(FT-L)",
              "median steps, FT-L / +SSS", "paired cases", "wall (s)"]
    body = [[m["label"], _settings_text(m["settings"]), _ci(m, "reliability"), _ci(m, "generality"),
             _ci(m, "locality"), f"{m['changed_pct']:.1f}",
             " / ".join(f"{100 * m[f'{k}_ftl']:.1f}" for k in ("reliability", "generality", "locality")),
             f"{m['lambda_after_ftl']:.3g}", f"{m['lambda_after_sss']:.3g}", f"{m['sss_lambda_lower_pct']:.1f}",
             f"{m['steps_ftl']:g} / {m['steps_sss']:g}", m["pairs"], f"{m['wall_s']:.0f}"] for m in measured]
    return md_table(header, body)


def model_commit() -> str:
    """The short hash of the last commit that changed the default model (``?`` outside a git checkout)."""
    res = subprocess.run(["git", "log", "-1", "--format=%h (%s)", "--", MODEL_PATH], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    text = res.stdout.strip()
    return (text[:80] + "...)" if len(text) > 80 else text) or "?"


def copy_folder(out: Path, docs: Path) -> None:
    """Copy a bench folder's committed files (``COPIED``) to ``docs``."""
    docs.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copy2(out / name, docs / name)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen rows one after another, then write the table of every finished row; returns 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=",".join(r.slug for r in ROWS), help="comma-separated row names to run")
    p.add_argument("--n", type=int, default=200, help="world test edits per row (each run by both editors)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "sss-settings", help="bench folders")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "results" / "sss-settings",
                   help="where the reports and the table go")
    p.add_argument("--table-only", action="store_true", help="run nothing; rebuild the table")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    chosen = [r for r in ROWS if r.slug in args.rows.split(",")]
    unknown = set(args.rows.split(",")) - {r.slug for r in ROWS}
    if unknown:
        p.error(f"unknown row {min(unknown)!r}; rows: {', '.join(r.slug for r in ROWS)}")
    if not args.table_only:
        for row in chosen:
            run_row(row, args.n, args.seeds, args.runs)
    measured = []
    for row in ROWS:
        out = args.runs / row.slug
        if not (out / "report.md").exists():
            continue
        measured.append(measure(row, out))
        copy_folder(out, args.docs / row.slug)
    if not measured:
        log.warning("no finished row in %s", args.runs)
        return 0
    md = table(measured)
    commits = sorted({m["git_commit"] for m in measured})
    head = (f"Measured at commit {', '.join(commits)}; default model from commit {model_commit()}. "
            "FT-L+SSS: C = 0.9 in every row. Median lambda_max of the edit (prompt + new target) before editing, "
            "the same for both editors: " + ", ".join(sorted({f"{m['lambda_before']:.3g}" for m in measured}))
            + ". Differences are FT-L+SSS minus FT-L in percentage points, 95% bootstrap CI over cases.\n\n")
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "table.md").write_text(head + md + "\n", encoding="utf-8")
    pd.DataFrame([{k: (to_json(v) if isinstance(v, dict) else v) for k, v in m.items()} for m in measured]
                 ).to_csv(args.docs / "table.csv", index=False)
    print(head + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

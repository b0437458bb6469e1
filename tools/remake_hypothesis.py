"""Re-make the hypothesis table of committed report folders with the statistics as they are now.

A committed report (docs/results/NAME) keeps its per-case results in ``cases.csv.gz`` but not the per-edit
measures of the hypothesis (k-NN distance of the edit prompt, NLL of the new target), which the bench
stored in its results.jsonl. They depend only on the unedited model and the prompt and target, so this
script measures them again on the shipped model exactly as the bench does (``EditMeasures``, each prompt
alone, the same reference prompts and k as the folder's run log), recomputes the correlations
(``hypothesis.correlations``: one bootstrap for each CI and p, Benjamini-Hochberg over the table), writes
``hypothesis.csv`` and the report's hypothesis section again, and prints the verdicts that changed and the
largest difference between the old and the new rho (0 when the measures were reproduced exactly).

    python tools/remake_hypothesis.py docs/results/world docs/results/world-rank-one docs/results/counterfact
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from pathlib import Path

import pandas as pd

from sss_core.evaluation.bench import BenchConfig, _cases_by_seed
from sss_core.evaluation.hypothesis import EditMeasures, correlations, reference_prompts
from sss_core.evaluation.report import hypothesis_section
from sss_core.models import load_model
from sss_core.types import EditRequest

# the section's heading, text and table; the lambda_max table after it is the per-case results' and stays
SECTION = re.compile(r"^## The paper's hypothesis, measured\n.*?(?=\n\nlambda_max of the edit|\n## |\Z)",
                     re.DOTALL | re.MULTILINE)


def _config(folder: Path) -> BenchConfig:
    """The BenchConfig of the folder's last run (fields this version does not know left out)."""
    runs = json.loads((folder / "config.json").read_text())["runs"]
    saved = runs[-1]["config"]
    known = {f.name for f in dataclasses.fields(BenchConfig)}
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known}
    return BenchConfig(**{**kw, "n": max(r["config"]["n"] or 0 for r in runs) or None})


def remake(folder: Path, lm) -> list[str]:
    """Re-make ``folder``'s hypothesis table; returns one line per changed verdict (and a summary line)."""
    cfg = _config(folder)
    cases = pd.read_csv(folder / "cases.csv.gz")
    rows = cases[(cases["mode"] == "single") & cases["error"].isna()].copy()
    if rows.empty:
        return [f"{folder}: no single edits, no hypothesis table"]
    reference = reference_prompts(cfg.data, _cases_by_seed(dataclasses.replace(cfg, seeds=1))[0]
                                  if not cfg.data.startswith("world") else [])
    measures = EditMeasures(lm.model, lm.tok, reference, cfg.knn)
    values = measures([EditRequest(p, t) for p, t in zip(rows["prompt"], rows["target_new"])])
    rows["knn_distance"] = [v["knn_distance"] for v in values]
    rows["target_nll"] = [v["target_nll"] for v in values]
    corrs = correlations(rows)
    old = pd.read_csv(folder / "hypothesis.csv")
    old_by = {(r.editor, r.x, r.y, r.control if isinstance(r.control, str) else None): r for r in old.itertuples()}
    changes, worst = [], 0.0
    for c in corrs:
        before = old_by.get((c.editor, c.x, c.y, c.control))
        if before is None:
            continue
        if not (math.isnan(c.rho) or math.isnan(before.rho)):
            worst = max(worst, abs(c.rho - before.rho))
        if before.verdict != c.verdict:
            pair = f"{c.x} ~ {c.y}" + (f" given {c.control}" if c.control else "")
            changes.append(f"{folder.name}: {c.editor}, {pair}: {before.verdict} -> {c.verdict} "
                           f"(rho {c.rho:+.3f}, p {before.p:.2g} -> {c.p:.2g}, p (BH) {c.p_adjusted:.2g})")
    md, csv_rows = hypothesis_section(corrs, cfg)
    pd.DataFrame(csv_rows).to_csv(folder / "hypothesis.csv", index=False)
    report = (folder / "report.md").read_text()
    (folder / "report.md").write_text(SECTION.sub(lambda _: md, report, count=1))
    tests = max(c.tests for c in corrs)
    return changes + [f"{folder.name}: {tests} tests, {len(changes)} verdict(s) changed; largest |rho new - rho old| "
                      f"= {worst:.2g}"]


def main() -> None:
    """Re-make every folder given; print what changed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    lm = load_model()
    for folder in args.folders:
        for line in remake(folder, lm):
            print(line)


if __name__ == "__main__":
    main()

"""ROME under sequential edits on the default model: how locality, unedited facts and the size of
each rank-one update evolve over 100 edits kept one after another, for several settings.

    python benchmarks/bench_rome_sequential.py --threads 1 --json docs/results/v1/rome-sequential/results.json
    python benchmarks/bench_rome_sequential.py --n 30 --configs default,paper-clamp

For each setting (``--configs``; see ``CONFIGS``) the first ``--n`` world test cases are edited in
order, each edit computed on the weights the earlier ones left and kept (the bench's sequential
protocol, ``sss_core.evaluation.runners.sequential_edits``). After each edit:

- reliability and locality of that edit, measured right after it (locality: its neighbour probes,
  post-edit argmax == unedited argmax, EasyEdit's definition);
- accuracy on ``--n-facts`` unedited facts (world test cases after the edited ones, prompt +
  true answer, teacher-forced token accuracy);
- the Frobenius norm of this edit's update against the norm of the edited weight before any edit
  (``Edit.delta_norms()``; the app's Sequential view warns when the first exceeds the second).

The table printed at the end (markdown) is the one in docs/editors.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench_rome_sequential")

# name -> (ROME overrides, what it means)
CONFIGS: dict[str, tuple[dict, str]] = {
    "default": ({}, "current defaults (clamp 10, v optimised through the update)"),
    "paper-clamp": ({"clamp_norm_factor": 4.0}, "the paper's clamp_norm_factor 4"),
    "no-through": ({"v_through_update": False}, "v not optimised through the update (the paper's patch)"),
    "paper": ({"clamp_norm_factor": 4.0, "v_through_update": False}, "both: clamp 4 and the paper's patch"),
}
BUCKETS = ((1, 10), (11, 30), (31, 60), (61, 100))  # edit positions, inclusive
CHECKPOINTS = (10, 30, 60, 100)  # accuracy on the unedited facts after this many edits


def _token_accuracy(model, tok, prompts, answers) -> float:
    """Mean teacher-forced token accuracy of ``answers`` after ``prompts`` (0..1)."""
    from sss_core.evaluation.metrics import teacher_forced
    preds = teacher_forced(model, tok, prompts, answers)
    return statistics.mean(sum(a == b for a, b in zip(p.target_ids, p.argmax_ids)) / len(p.target_ids)
                           for p in preds)


def run_config(lm, name: str, overrides: dict, cases, facts, stats_dir) -> dict:
    """Edit ``cases`` one after another with ROME(``overrides``); return the per-edit measurements.

    Every edit is reverted at the end (newest first), so the model is unchanged for the next setting.
    """
    from sss_core.editors import make_editor
    from sss_core.editors.base import model_lock
    from sss_core.evaluation.metrics import evaluate_edit, probes_of, teacher_forced

    editor = make_editor("rome", stats_dir=stats_dir, **overrides)
    params = dict(lm.model.named_parameters())
    fact_prompts, fact_answers = [f[0] for f in facts], [f[1] for f in facts]
    rows, applied = [], []
    acc0 = _token_accuracy(lm.model, lm.tok, fact_prompts, fact_answers)
    weight_norms: dict[str, float] = {}
    with model_lock(lm.model):
        # the original model's predictions on every case's probes (the bench's sequential protocol:
        # locality is agreement with the unedited model, not with the model after the earlier edits)
        pre_by_case = {}
        for c in cases:
            ps = probes_of(c)
            pre_by_case[c.request.case_id] = teacher_forced(lm.model, lm.tok, [q.prompt for q in ps],
                                                            [q.answer for q in ps])
        try:
            for i, case in enumerate(cases, start=1):
                t0 = time.perf_counter()
                edit = editor.edit(lm.model, lm.tok, [case.request])
                seconds = time.perf_counter() - t0
                result = evaluate_edit(lm.model, lm.tok, case, edit, "rome", seconds, with_lambda=False,
                                       pre=pre_by_case[case.request.case_id])
                norms = edit.delta_norms()
                for name_ in norms:
                    weight_norms.setdefault(name_, params[name_].detach().float().norm().item())
                edit.apply()
                applied.append(edit)
                rows.append({"n": i, "reliability": result.metrics["reliability"],
                             "locality": result.metrics["locality"],
                             "update_norm": max(norms.values()) if norms else 0.0,
                             "accuracy_unedited": _token_accuracy(lm.model, lm.tok, fact_prompts, fact_answers),
                             "seconds": seconds})
                log.info("%s %d: rel %.2f loc %.2f acc %.2f |dW| %.1f", name, i, rows[-1]["reliability"],
                         rows[-1]["locality"], rows[-1]["accuracy_unedited"], rows[-1]["update_norm"])
        finally:
            for edit in reversed(applied):
                edit.revert()
    return {"config": name, "overrides": overrides, "accuracy_unedited_before": acc0,
            "weight_norm": max(weight_norms.values()) if weight_norms else float("nan"), "edits": rows}


def summary(run: dict) -> dict:
    """Bucketed means of one setting's run: locality by edit position, accuracy at checkpoints, norms."""
    rows = run["edits"]
    out = {"config": run["config"], "weight_norm": run["weight_norm"],
           "accuracy_before": run["accuracy_unedited_before"]}
    for lo, hi in BUCKETS:
        sel = [r for r in rows if lo <= r["n"] <= hi]
        if sel:
            out[f"locality {lo}-{hi}"] = statistics.mean(r["locality"] for r in sel)
            out[f"reliability {lo}-{hi}"] = statistics.mean(r["reliability"] for r in sel)
    for c in CHECKPOINTS:
        if c <= len(rows):
            out[f"accuracy after {c}"] = rows[c - 1]["accuracy_unedited"]
    out["reliability, all"] = statistics.mean(r["reliability"] for r in rows) if rows else float("nan")
    out["first update norm"] = rows[0]["update_norm"] if rows else float("nan")
    out["median update norm"] = statistics.median(r["update_norm"] for r in rows) if rows else float("nan")
    out["edits above weight norm"] = sum(r["update_norm"] > run["weight_norm"] for r in rows)
    return out


def markdown(summaries: list[dict], n: int) -> str:
    """The summary table in markdown, one row per setting."""
    buckets = [(lo, min(hi, n)) for lo, hi in BUCKETS if lo <= n]
    checks = [c for c in CHECKPOINTS if c <= n]
    head = (["setting"] + [f"locality, edits {lo}-{hi}" for lo, hi in buckets]
            + ["reliability, all"] + [f"unedited acc. after {c}" for c in checks]
            + ["first ‖ΔW‖", "median ‖ΔW‖", "‖ΔW‖ > ‖W‖"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        cells = ([s["config"]] + [f"{s[f'locality {lo}-{hi}']:.2f}" for lo, hi in BUCKETS if lo <= n]
                 + [f"{s['reliability, all']:.2f}"] + [f"{s[f'accuracy after {c}']:.2f}" for c in checks]
                 + [f"{s['first update norm']:.1f}", f"{s['median update norm']:.1f}",
                    f"{s['edits above weight norm']}/{n}"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Parse the arguments, run every setting, print the markdown table, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="sequential ROME edits per setting")
    p.add_argument("--n-facts", type=int, default=60, help="unedited facts whose accuracy is tracked")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--stats-dir", default=None, help="key-statistics cache (default: the library's)")
    p.add_argument("--json", type=Path, default=None, help="also write every measurement to this file")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        p.error(f"unknown setting {unknown[0]!r}; choose from {', '.join(CONFIGS)}")

    import torch

    from sss_core.evaluation.presets import presets
    from sss_core.models import load_model

    torch.set_num_threads(args.threads)
    lm = load_model(device="cpu")
    pool = presets("test", args.n + args.n_facts)
    cases = pool[:args.n]
    facts = [(c.request.prompt, c.request.ground_truth) for c in pool[args.n:] if c.request.ground_truth]
    runs = [run_config(lm, name, CONFIGS[name][0], cases, facts, args.stats_dir) for name in names]
    summaries = [summary(r) for r in runs]
    print(markdown(summaries, args.n))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"n": args.n, "n_facts": len(facts), "threads": args.threads,
                                         "summaries": summaries, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()

"""``python -m sss_core bench``: editors x seeds x modes over a data set, streamed, resumable.

Results go to ``DIR/results.jsonl`` one line per (editor, seed, case_id, mode), flushed as each
is made, so a killed run keeps everything it finished and ``--resume`` skips those keys.
``DIR/config.json`` lists every invocation with its exact command; at the end the report
(``report.md``, CSVs, plotly HTML) is rebuilt from everything in the results file.

Example:
    python -m sss_core bench --editors ft-l,ft-l+sss --data world --n 500 --seeds 3 --out runs/world
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..editors import EDITORS, editor_config, make_editor
from ..errors import DataError, RequestError
from ..types import EditCase
from .datasets import group_counts, load_cases
from .hypothesis import correlations, knn_density
from .report import (c_sweep, c_sweep_figure, hypothesis_table, lambda_table, load_results, sequential_figure,
                     table1, table2, table3, table5, timing_table)
from .runners import Outcome, RunKey, sequential_edits, single_edits

log = logging.getLogger(__name__)

MODES = ("single", "sequential", "sweep")


@dataclass(frozen=True)
class BenchConfig:
    editors: tuple[str, ...]
    data: str = "world"  # "world", "world:SPLIT" or a JSON file
    n: int | None = None  # cases per seed (None: all)
    seeds: int = 3  # seeds 0 .. seeds-1
    modes: tuple[str, ...] = ("single",)
    seq_sizes: tuple[int, ...] = (1, 10, 100)
    sweep_values: tuple[float, ...] = tuple(i / 10 for i in range(11))
    sweep_n: int = 100  # cases per seed in the C sweep
    fmt: str = "auto"
    max_data_mb: float = 100.0
    skip_invalid: bool = False
    settings: dict = field(default_factory=dict)  # editor config overrides, for every editor
    knn: int = 10  # neighbours of the density measure
    model: str | None = None
    device: str = "auto"
    plotly_js: str = "directory"  # "directory" (offline, one plotly.min.js) or "cdn"

    def validate(self) -> "BenchConfig":
        if not self.editors:
            raise RequestError("give at least one editor, e.g. --editors ft-l,ft-l+sss")
        for name in self.editors:
            editor_config(name, **self.settings)  # unknown editor or setting -> RequestError
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise RequestError(f"unknown mode {bad[0] if bad else ''!r}; choose from {', '.join(MODES)}")
        if "sweep" in self.modes and not self.sweep_editors:
            raise RequestError("the C sweep needs an editor with SSS among --editors, e.g. ft-l+sss")
        if self.seeds < 1 or (self.n is not None and self.n < 1) or any(s < 1 for s in self.seq_sizes):
            raise RequestError("--n, --seeds and --seq-sizes must be positive")
        if any(not 0.0 <= c <= 1.0 for c in self.sweep_values):
            raise RequestError("C values of the sweep must be in [0, 1]")
        return self

    @property
    def sweep_editors(self) -> list[str]:
        return [e for e in self.editors if EDITORS[e].uses_sss]


class ResultStore:
    """The append-only results file. A torn last line (a run killed mid-write) is dropped."""

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.keys: set[RunKey] = set()
        if path.exists() and path.stat().st_size and not resume:
            raise RequestError(f"{path.parent} already has results; pass --resume to continue that run, "
                               "or choose another --out")
        if path.exists():
            self._read()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")

    def _read(self) -> None:
        raw = self.path.read_bytes()
        good = raw.rfind(b"\n") + 1  # bytes after the last newline were never completed
        lines = raw[:good].decode("utf-8").splitlines()
        for i, line in enumerate(lines):
            try:
                rec = json.loads(line)
                self.keys.add(RunKey(rec["editor"], rec["seed"], rec["case_id"], rec["mode"]))
            except (json.JSONDecodeError, KeyError) as exc:
                raise DataError(f"{self.path} line {i + 1} is corrupt ({exc}); move the file away to start over")
        if good < len(raw):
            log.warning("dropping an unfinished last line of %s", self.path)
            with open(self.path, "r+b") as fh:
                fh.truncate(good)

    def done(self, key: RunKey) -> bool:
        return key in self.keys

    def write(self, outcome: Outcome) -> None:
        self._fh.write(json.dumps(outcome.to_json(), ensure_ascii=False) + "\n")
        self._fh.flush()
        self.keys.add(outcome.key)

    def close(self) -> None:
        self._fh.close()


def _editor(name: str, seed: int, settings: dict, C: float | None = None):
    fields = {f.name for f in dataclasses.fields(EDITORS[name].config_cls)}
    overrides = {**settings, **({"seed": seed} if "seed" in fields else {})}
    if C is not None:
        overrides["sss_c"] = C
    return make_editor(name, **overrides)


Job = tuple[str, list[RunKey], Callable[[], Iterator[Outcome]]]


def plan(cfg: BenchConfig, lm, cases_by_seed: dict[int, list[EditCase]], skip) -> list[Job]:
    """Every (description, keys, generator) the run consists of, in order."""
    model, tok = lm.model, lm.tok
    jobs: list[Job] = []
    for seed, cases in cases_by_seed.items():
        for name in cfg.editors:
            editor = _editor(name, seed, cfg.settings)
            if "single" in cfg.modes:
                keys = [RunKey(name, seed, c.request.case_id, "single") for c in cases]
                jobs.append((f"{name} seed {seed} single", keys,
                             lambda e=editor, c=cases, s=seed: single_edits(model, tok, e, c, s, skip=skip)))
            if "sequential" in cfg.modes:
                for n in cfg.seq_sizes:
                    chunk = cases[:n]
                    keys = [RunKey(name, seed, c.request.case_id, f"sequential@{len(chunk)}{tail}")
                            for tail in ("", "/final") for c in chunk]
                    jobs.append((f"{name} seed {seed} sequential n={len(chunk)}", keys,
                                 lambda e=editor, c=chunk, s=seed: sequential_edits(model, tok, e, c, s, skip=skip)))
        if "sweep" in cfg.modes:
            for name in cfg.sweep_editors:
                for C in cfg.sweep_values:
                    editor, mode = _editor(name, seed, cfg.settings, C), f"sweep@C={C:g}"
                    chunk = cases[:cfg.sweep_n]
                    keys = [RunKey(name, seed, c.request.case_id, mode) for c in chunk]
                    jobs.append((f"{name} seed {seed} C={C:g}", keys, lambda e=editor, c=chunk, s=seed, m=mode, C=C:
                                 single_edits(model, tok, e, c, s, mode=m, skip=skip, C=C, with_lambda=False)))
    return jobs


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _log_invocation(out: Path, cfg: BenchConfig, command: str, **extra) -> list[dict]:
    path = out / "config.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    if extra.get("finished") and runs and runs[-1]["command"] == command and "finished" not in runs[-1]:
        runs[-1].update(extra)
    else:
        runs.append({"command": command, "config": dataclasses.asdict(cfg), "git_commit": _git_commit(),
                     "python": platform.python_version(), "torch": torch.__version__,
                     "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), **extra})
    path.write_text(json.dumps({"runs": runs}, indent=1, default=str))
    return runs


def run_bench(cfg: BenchConfig, out: Path, resume: bool = False, command: str = "",
              progress: bool = True) -> dict:
    """Run everything ``cfg`` asks for into ``out``, then write the report. Returns a summary."""
    from tqdm import tqdm

    from ..models import DEFAULT_MODEL, load_model

    cfg.validate()
    max_bytes = int(cfg.max_data_mb * 2**20)
    cases_by_seed = {s: load_cases(cfg.data, cfg.n, s, cfg.fmt, max_bytes, cfg.skip_invalid)
                     for s in range(cfg.seeds)}
    store = ResultStore(out / "results.jsonl", resume)
    started, cpu_started = time.time(), time.process_time()
    _log_invocation(out, cfg, command, started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    lm = load_model(cfg.model or DEFAULT_MODEL, device=cfg.device)
    jobs = plan(cfg, lm, cases_by_seed, store.done)
    todo = sum(not store.done(k) for _, keys, _ in jobs for k in keys)
    skipped = sum(len(keys) for _, keys, _ in jobs) - todo
    made = 0
    try:
        with tqdm(total=todo, desc="bench", unit="result", disable=not progress, mininterval=2) as bar:
            for desc, keys, run in jobs:
                if all(store.done(k) for k in keys):
                    continue
                bar.set_postfix_str(desc)
                for outcome in run():
                    store.write(outcome)
                    made += 1
                    bar.update(1)
    finally:
        store.close()
    wall = time.time() - started
    _log_invocation(out, cfg, command, finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    wall_seconds=round(wall, 1), cpu_seconds=round(time.process_time() - cpu_started, 1),
                    results_made=made, results_skipped=skipped)
    report = write_bench_report(out, cfg, lm, cases_by_seed)
    return {"out": str(out), "results_made": made, "results_skipped": skipped, "wall_seconds": round(wall, 1),
            "report": str(report)}


def seed_note(data: str) -> str:
    """What differs between seeds, said plainly in every report."""
    if data.startswith("world"):
        return ("Each seed draws, for the same fixed set of test facts (the split of seed 0, which trained "
                "editors never saw), a new target for every fact, the sampled neighbour and attribute probes, "
                "and the order of the cases (so also which facts the first n are), plus the torch seed of "
                "every edit.")
    return ("The cases are the file's first n records for every seed; a seed changes their order (which "
            "matters for sequential editing) and the torch seed of every edit. Deterministic editors "
            "therefore give the same single-edit scores under every seed (std 0).")


def _density(cfg: BenchConfig, lm, cases_by_seed: dict[int, list[EditCase]], prompts: list[str]) -> dict:
    if cfg.data.startswith("world"):
        from .presets import default_world
        reference = [f.prompt() for f in default_world().facts]
    else:
        reference = [p for c in cases_by_seed[0] for p in [c.request.prompt] + [q.prompt for q in c.probes]]
    return knn_density(lm.model, lm.tok, prompts, reference, cfg.knn)


def write_bench_report(out: Path, cfg: BenchConfig, lm, cases_by_seed: dict[int, list[EditCase]]) -> Path:
    """Write report.md, summary.csv, cases.csv, hypothesis.csv and the plots from DIR/results.jsonl."""
    import pandas as pd

    frame = load_results(out / "results.jsonl")
    runs = json.loads((out / "config.json").read_text())["runs"]
    commands = "\n".join(f"{r['command']}\n    # started {r.get('started')}, wall {r.get('wall_seconds', '?')} s, "
                         f"CPU {r.get('cpu_seconds', '?')} s, "
                         f"{r.get('results_made', '?')} results made, {r.get('results_skipped', '?')} resumed"
                         for r in runs)
    counts = group_counts(cases_by_seed[0])
    editors = list(dict.fromkeys(frame["editor"]))
    parts = [f"# Bench report: {', '.join(editors)} on {cfg.data}", "",
             "Exact command(s), in order (one per invocation into this folder):", "", "```", commands, "```", "",
             f"- model: `{lm.name}`; device {lm.device}; torch {torch.__version__}, {torch.get_num_threads()} threads",
             f"- data: `{cfg.data}`, {len(cases_by_seed[0])} cases per seed, seeds 0..{cfg.seeds - 1}",
             f"- probes per seed: " + ", ".join(f"{g} {k}" for g, k in counts.items()),
             f"- editor settings: " + "; ".join(f"{e}: {editor_config(e, **cfg.settings)}" for e in editors),
             f"- seeds: {seed_note(cfg.data)}",
             "- scores: EasyEdit teacher-forced token accuracy in %, mean ± std over seeds of the per-seed mean "
             "over cases; locality = agreement of post- with pre-edit argmax on neighbour prompts.", ""]
    csv: list[dict] = []
    if "single" in set(frame["mode"]):
        for title, (md, rows) in (("Table 1: overall performance (single edits, reverted after each)", table1(frame)),
                                  ("Table 3: locality levels", table3(frame)),
                                  ("Table 5: portability (each block over the cases that have that probe)",
                                   table5(frame))):
            parts += [f"## {title}", "", md, ""]
            csv += rows
        single = frame[(frame["mode"] == "single") & frame["error"].isna()]
        density = _density(cfg, lm, cases_by_seed, list(single["prompt"].unique()))
        corrs = correlations(single.assign(knn_distance=single["prompt"].map(density)))
        md, rows = hypothesis_table(corrs)
        pd.DataFrame(rows).to_csv(out / "hypothesis.csv", index=False)
        parts += ["## The paper's hypothesis, measured", "",
                  f"Per single edit: lambda_max before editing, knn_distance = mean distance of the edit prompt's "
                  f"pooled last-hidden-state embedding to its {cfg.knn} nearest neighbours among "
                  f"{'the world' if cfg.data.startswith('world') else 'the data set'}'s prompts "
                  f"({'every fact, first template' if cfg.data.startswith('world') else 'requests and probes'}; "
                  "large = sparse), and "
                  "locality_drop = 1 - locality. Spearman rho with a 95% bootstrap CI over edit prompts "
                  "(1000 resamples); 'supports' means the CI excludes 0 on the side the paper predicts.", "", md, "",
                  "lambda_max of the edit (prompt + new target) before and after editing:", "", lambda_table(frame), ""]
    for final in (False, True):
        md, rows = table2(frame, final)
        if rows:
            what = "after all n edits (EasyEdit's protocol)" if final else "each scored right after it is applied"
            parts += [f"## Table 2: sequential editing, {what}", "", md, ""]
            csv += rows
    md, rows, sweep_stats = c_sweep(frame)
    if rows:
        parts += ["## Fig. 3: ablation on C", "", md, "", "Plot: [c_sweep.html](c_sweep.html)", ""]
        csv += rows
        c_sweep_figure(sweep_stats).write_html(out / "c_sweep.html", include_plotlyjs=cfg.plotly_js)
    if frame["mode"].str.startswith("sequential@").any():
        sequential_figure(frame).write_html(out / "sequential.html", include_plotlyjs=cfg.plotly_js)
        parts += ["Plot of sequential editing: [sequential.html](sequential.html)", ""]
    parts += ["## Runs, failures and timing", "", timing_table(frame), "",
              "Every case's raw predictions (teacher-forced argmax tokens before and after, per probe) are in "
              "`results.jsonl`; per-case scores in `cases.csv`; every table cell in `summary.csv`.", ""]
    pd.DataFrame(csv).to_csv(out / "summary.csv", index=False)
    frame.to_csv(out / "cases.csv", index=False)
    path = out / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _csv_list(kind: type):
    def parse(text: str):
        try:
            return tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {text!r}")
    return parse


def add_bench_parser(sub) -> None:
    """Register ``bench`` on the CLI's subparsers."""
    from ..cli import _add_model_arg
    p = sub.add_parser("bench", help="run editors over a data set and seeds; write results and a report")
    p.add_argument("--editors", required=True, type=_csv_list(str), help=f"comma-separated: {', '.join(EDITORS)}")
    p.add_argument("--data", default="world", help="world, world:SPLIT (train/validation/test) or a JSON file")
    p.add_argument("--format", dest="fmt", default="auto", help="auto, zsre, counterfact, rome, knowedit, world")
    p.add_argument("--n", type=int, default=None, help="cases per seed (default: all)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..K-1)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--mode", dest="modes", type=_csv_list(str), default=("single",),
                   help="single, sequential, sweep, or a comma-separated list of them")
    p.add_argument("--seq-sizes", type=_csv_list(int), default=(1, 10, 100), help="sequential n values")
    p.add_argument("--sweep-values", type=_csv_list(float), default=BenchConfig.sweep_values, help="C values")
    p.add_argument("--sweep-n", type=int, default=100, help="cases per seed in the C sweep")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished results")
    p.add_argument("--max-data-mb", type=float, default=100.0, help="refuse data files larger than this")
    p.add_argument("--skip-invalid", action="store_true", help="leave malformed records out instead of failing")
    p.add_argument("--knn", type=int, default=10, help="k of the local-density measure")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="editor setting, every editor")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: small models edit several times faster on one thread "
                        "than on two busy ones; raise it for large models)")
    p.add_argument("--plotly-js", choices=("directory", "cdn"), default="directory",
                   help="plots load plotly.js from a file next to them (offline) or from the CDN")
    p.add_argument("--no-progress", action="store_true")
    _add_model_arg(p)
    p.set_defaults(handler=run_bench_command)


def _argv(cfg: BenchConfig, args) -> list[str]:
    argv = ["bench", "--editors", ",".join(cfg.editors), "--data", cfg.data, "--seeds", str(cfg.seeds),
            "--out", str(args.out), "--mode", ",".join(cfg.modes)]
    argv += ["--n", str(cfg.n)] if cfg.n else []
    argv += ["--seq-sizes", ",".join(map(str, cfg.seq_sizes))] if "sequential" in cfg.modes else []
    argv += (["--sweep-values", ",".join(f"{c:g}" for c in cfg.sweep_values), "--sweep-n", str(cfg.sweep_n)]
             if "sweep" in cfg.modes else [])
    argv += [a for k, v in cfg.settings.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    argv += ["--model", cfg.model] if cfg.model else []
    return argv + (["--resume"] if args.resume else [])


def run_bench_command(args) -> None:
    import shlex
    import sys

    from ..cli import _parse_settings
    if args.threads < 1:
        raise RequestError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    cfg = BenchConfig(editors=args.editors, data=args.data, n=args.n, seeds=args.seeds, modes=args.modes,
                      seq_sizes=args.seq_sizes, sweep_values=args.sweep_values, sweep_n=args.sweep_n, fmt=args.fmt,
                      max_data_mb=args.max_data_mb, skip_invalid=args.skip_invalid,
                      settings=_parse_settings(args.set), knn=args.knn, model=args.model, device=args.device,
                      plotly_js=args.plotly_js)
    # the exact command line when run as ``python -m sss_core``; an equivalent one when called in-process
    argv = sys.argv[1:] if Path(sys.argv[0]).name == "__main__.py" and "bench" in sys.argv else _argv(cfg, args)
    command = "python -m sss_core " + shlex.join(argv)
    summary = run_bench(cfg, args.out, args.resume, command, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))

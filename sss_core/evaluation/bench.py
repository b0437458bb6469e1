"""``python -m sss_core bench``: editors x seeds x modes over a data set, streamed, resumable.

Results go to ``DIR/results.jsonl`` one line per (editor, seed, case_id, mode), flushed as each
is made, so a killed run keeps everything it finished and ``--resume`` skips those keys.
``DIR/config.json`` lists every invocation with its exact command; at the end the report
(``report.md``, CSVs, plotly HTML) is rebuilt from everything in the results file.

Example:
    python -m sss_core bench --editors ft-l,ft-l+sss --data world --n 500 --seeds 3 --out runs/world
"""

from __future__ import annotations

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
from ..errors import DataError, RequestError, SSSError
from ..types import EditCase
from .datasets import load_cases
from .report import write_bench_report
from .runners import Outcome, RunKey, batch_edits, sequential_edits, single_edits

log = logging.getLogger(__name__)

MODES = ("single", "sequential", "batch", "sweep")
BLOCK = 25  # cases per job of single edits: the unit of work a worker takes


@dataclass(frozen=True)
class BenchConfig:
    """What one ``bench`` invocation runs (the CLI's flags; recorded in DIR/config.json)."""

    editors: tuple[str, ...]
    data: str = "world"  # "world", "world:SPLIT" or a JSON file
    n: int | None = None  # cases per seed (None: all)
    seeds: int = 3  # seeds 0 .. seeds-1
    modes: tuple[str, ...] = ("single",)
    seq_sizes: tuple[int, ...] = (1, 10, 100)
    batch_size: int = 100  # edits written at once in the batch mode (the paper's MEMIT batch)
    sweep_values: tuple[float, ...] = tuple(i / 10 for i in range(11))
    sweep_n: int = 100  # cases per seed in the C sweep
    fmt: str = "auto"
    max_data_mb: float = 100.0
    skip_invalid: bool = False
    settings: dict = field(default_factory=dict)  # editor config overrides, for every editor
    knn: int = 10  # neighbours of the density measure
    model: str | None = None
    device: str = "auto"
    dtype: str | None = None  # "float32", "float16", "bfloat16"; None: as saved
    device_map: str | None = None  # e.g. "auto": over several GPUs
    plotly_js: str = "directory"  # "directory" (offline, one plotly.min.js) or "cdn"
    workers: int = 1  # processes sharing the jobs (each loads its own copy of the model)

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
        if (self.seeds < 1 or self.workers < 1 or (self.n is not None and self.n < 1)
                or any(s < 1 for s in self.seq_sizes) or self.batch_size < 1):
            raise RequestError("--n, --seeds, --seq-sizes, --batch-size and --workers must be positive")
        if any(not 0.0 <= c <= 1.0 for c in self.sweep_values):
            raise RequestError("C values of the sweep must be in [0, 1]")
        return self

    @property
    def sweep_editors(self) -> list[str]:
        return [e for e in self.editors if EDITORS[e].uses_sss]


def _complete_lines(path: Path) -> list[str]:
    """The complete lines of a results file; a torn last line (a run killed mid-write) is cut off.

    Only for files nobody is writing to any more: a line being written would be cut off too.
    """
    raw = path.read_bytes()
    good = raw.rfind(b"\n") + 1  # bytes after the last newline were never completed
    if good < len(raw):
        log.warning("dropping an unfinished last line of %s", path)
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return raw[:good].decode("utf-8").splitlines()


def keys_of(path: Path) -> set[RunKey]:
    """The keys already in a results file (empty if there is none)."""
    keys = set()
    for i, line in enumerate(_complete_lines(path) if path.exists() else []):
        try:
            rec = json.loads(line)
            keys.add(RunKey(rec["editor"], rec["seed"], rec["case_id"], rec["mode"]))
        except (json.JSONDecodeError, KeyError) as exc:
            raise DataError(f"{path} line {i + 1} is corrupt ({exc}); move the file away to start over")
    return keys


class ResultStore:
    """An append-only results file; each result is one JSON line, flushed as soon as it is written."""

    def __init__(self, path: Path, resume: bool, also_done: set[RunKey] = frozenset()):
        self.path = path
        if path.exists() and path.stat().st_size and not resume:
            raise RequestError(f"{path.parent} already has results; pass --resume to continue that run, "
                               "or choose another --out")
        self.keys = keys_of(path) | set(also_done)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")

    def done(self, key: RunKey) -> bool:
        return key in self.keys

    def write(self, outcome: Outcome) -> None:
        self._fh.write(json.dumps(outcome.to_json(), ensure_ascii=False) + "\n")
        self._fh.flush()
        self.keys.add(outcome.key)

    def close(self) -> None:
        self._fh.close()


def merge_parts(out: Path) -> None:
    """Move the complete lines of worker files (results.part*.jsonl) into results.jsonl."""
    main = out / "results.jsonl"
    if main.exists():
        _complete_lines(main)
    for part in sorted(out.glob("results.part*.jsonl")):
        lines = _complete_lines(part)
        with open(main, "a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
        part.unlink()


def _cases_by_seed(cfg: BenchConfig) -> dict[int, list[EditCase]]:
    """The cases of every seed (the world draws them per seed; a file only reorders them)."""
    max_bytes = int(cfg.max_data_mb * 2**20)
    return {s: load_cases(cfg.data, cfg.n, s, cfg.fmt, max_bytes, cfg.skip_invalid) for s in range(cfg.seeds)}


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
                for start in range(0, len(cases), BLOCK):
                    block = cases[start:start + BLOCK]
                    keys = [RunKey(name, seed, c.request.case_id, "single") for c in block]
                    jobs.append((f"{name} seed {seed} single", keys,
                                 lambda e=editor, c=block, s=seed: single_edits(model, tok, e, c, s, skip=skip)))
            if "sequential" in cfg.modes:
                for n in cfg.seq_sizes:
                    chunk = cases[:n]
                    keys = [RunKey(name, seed, c.request.case_id, f"sequential@{len(chunk)}{tail}")
                            for tail in ("", "/final") for c in chunk]
                    jobs.append((f"{name} seed {seed} sequential n={len(chunk)}", keys,
                                 lambda e=editor, c=chunk, s=seed: sequential_edits(model, tok, e, c, s, skip=skip)))
            if "batch" in cfg.modes:
                for start in range(0, len(cases), cfg.batch_size):
                    chunk = cases[start:start + cfg.batch_size]
                    keys = [RunKey(name, seed, c.request.case_id, f"batch@{len(chunk)}") for c in chunk]
                    jobs.append((f"{name} seed {seed} batch {start // cfg.batch_size + 1}", keys,
                                 lambda e=editor, c=chunk, s=seed: batch_edits(model, tok, e, c, s, skip=skip)))
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


def _run_jobs(jobs: list[Job], store: ResultStore, bar=None) -> int:
    """Run the jobs in order, writing each outcome as it comes. Returns how many were written."""
    made = 0
    for desc, keys, run in jobs:
        if all(store.done(k) for k in keys):
            continue
        if bar is not None:
            bar.set_postfix_str(desc)
        for outcome in run():
            store.write(outcome)
            made += 1
            if bar is not None:
                bar.update(1)
    return made


def _worker(cfg: BenchConfig, out: Path, index: int, threads: int, queue, cpu, parent: int) -> None:
    """One worker process: take job numbers from ``queue`` until it is empty, write results.part{index}.jsonl.

    It stops after its current job if the parent dies (a killed run), so a resume never races it.
    """
    import queue as queues

    torch.set_num_threads(threads)
    cases_by_seed = _cases_by_seed(cfg)
    store = ResultStore(out / f"results.part{index}.jsonl", resume=True, also_done=keys_of(out / "results.jsonl"))
    lm = _load_model(cfg)
    jobs = plan(cfg, lm, cases_by_seed, store.done)  # the same list as the parent's: plan is deterministic
    try:
        while os.getppid() == parent:
            try:
                number = queue.get(timeout=5)  # blocking: get_nowait also fails while another worker reads
            except queues.Empty:
                continue  # look at the parent again
            if number is None:  # one stop sign per worker, after the last job
                break
            _run_jobs([jobs[number]], store)
    finally:
        store.close()
        cpu.value = time.process_time()


def _run_workers(cfg: BenchConfig, out: Path, n_jobs: int, bar) -> float:
    """Run the jobs in ``cfg.workers`` processes; returns their CPU seconds. Progress from their files."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch state shared with the parent
    queue = ctx.Queue()
    for number in [*range(n_jobs), *[None] * cfg.workers]:
        queue.put(number)
    cpus = [ctx.Value("d", 0.0) for _ in range(cfg.workers)]
    procs = [ctx.Process(target=_worker, args=(cfg, out, i, torch.get_num_threads(), queue, cpus[i], os.getpid()),
                         daemon=True)
             for i in range(cfg.workers)]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(2)
            # count only: a worker may be in the middle of writing a line, which must not be cut off
            written = sum(f.read_bytes().count(b"\n") for f in out.glob("results.part*.jsonl"))
            bar.update(max(0, written - bar.n))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    failed = [i for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        merge_parts(out)
        raise SSSError(f"bench worker {failed[0]} stopped (exit code {procs[failed[0]].exitcode}); its finished "
                           "results are kept: rerun with --resume to continue")
    return sum(c.value for c in cpus)


def rebuild_report(cfg: BenchConfig, out: Path) -> Path:
    """Write the report of ``out`` again from its results (nothing is run, no invocation is logged)."""
    if not (out / "results.jsonl").exists():
        raise RequestError(f"{out} has no results.jsonl to report on")
    cases_by_seed = _cases_by_seed(cfg)
    return write_bench_report(out, cfg, _load_model(cfg), cases_by_seed)


def run_bench(cfg: BenchConfig, out: Path, resume: bool = False, command: str = "",
              progress: bool = True) -> dict:
    """Run everything ``cfg`` asks for into ``out``, then write the report. Returns a summary."""
    from tqdm import tqdm


    cfg.validate()
    cases_by_seed = _cases_by_seed(cfg)
    if not resume and any(out.glob("results.part*.jsonl")):
        raise RequestError(f"{out} has results of an earlier run; pass --resume to continue it, or choose another --out")
    merge_parts(out)  # what the workers of an interrupted run had finished
    store = ResultStore(out / "results.jsonl", resume)
    started, cpu_started = time.time(), time.process_time()
    _log_invocation(out, cfg, command, started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    lm = _load_model(cfg)
    jobs = plan(cfg, lm, cases_by_seed, store.done)
    todo = sum(not store.done(k) for _, keys, _ in jobs for k in keys)
    skipped = sum(len(keys) for _, keys, _ in jobs) - todo
    before, cpu_workers, interrupted, failure = len(store.keys), 0.0, False, None
    try:
        with tqdm(total=todo, desc="bench", unit="result", disable=not progress, mininterval=2) as bar:
            if cfg.workers > 1:
                store.close()
                cpu_workers = _run_workers(cfg, out, len(jobs), bar)
            else:
                _run_jobs(jobs, store, bar)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the CLI turns it into this)
        interrupted = True
    except SSSError as exc:  # a worker died: log the invocation, then say so
        failure = exc
    finally:
        store.close()
        merge_parts(out)
    made = len(keys_of(out / "results.jsonl")) - before
    wall = time.time() - started
    _log_invocation(out, cfg, command, finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    wall_seconds=round(wall, 1),
                    cpu_seconds=round(time.process_time() - cpu_started + cpu_workers, 1),
                    results_made=made, results_skipped=skipped, interrupted=interrupted,
                    **({"failed": str(failure)} if failure else {}))
    if failure is not None:
        raise failure
    if interrupted:
        raise SSSError(f"interrupted after {made} new results; they are kept in {out / 'results.jsonl'}: "
                       "rerun the same command with --resume to continue")
    if made < todo:
        raise SSSError(f"{todo - made} of {todo} results are missing from {out / 'results.jsonl'}; "
                       "rerun the same command with --resume to make them")
    report = write_bench_report(out, cfg, lm, cases_by_seed)
    return {"out": str(out), "results_made": made, "results_skipped": skipped, "wall_seconds": round(wall, 1),
            "report": str(report)}


def _load_model(cfg: BenchConfig):
    from ..models import DEFAULT_MODEL, load_model
    return load_model(cfg.model or DEFAULT_MODEL, device=cfg.device, dtype=cfg.dtype, device_map=cfg.device_map)

"""``python -m sss_core bench``: editors x seeds x modes over a data set, streamed, resumable.

Results go to ``DIR/results.jsonl`` one line per (editor, seed, case_id, mode), flushed as each
is made, so a killed run keeps everything it finished and ``--resume`` skips those keys. A single
edit's line also carries the hypothesis' per-edit measures (k-NN density of the prompt, NLL of
the new target), taken on the unedited model before its job, so the report needs no model; with
``world_locality`` it also carries the edit's world locality and damage summary (every fact of the
built-in world read before and after the edit: ``world_locality.py``).
``DIR/config.json`` lists every invocation with its exact command; at the end the report
(``report.md``, CSVs, plotly HTML) is rebuilt from everything in the results file. The folder is
read and written through ``store.BenchStore``.

The jobs run in this process (``workers`` 1), in local worker processes (``workers`` N), or
through an ``Executor`` given to ``run_bench``: ``ray_bench.RayExecutor`` runs them on a Ray
cluster, each actor editing with its own copy of the model, and streams the results back here.

Example:
    python -m sss_core bench --editors ft-l,ft-l+sss --data world --n 500 --seeds 3 --out runs/world
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import torch

from ..editors import EDITORS, editor_config, make_editor, shipped_checkpoints
from ..errors import RequestError, SSSError
from ..models import DEFAULT_MODEL, LoadedModel, load_model
from ..record import fingerprint, result_digest
from ..types import EditCase
from .datasets import load_cases
from .hypothesis import EditMeasures, reference_prompts
from .presets import default_world
from .report import missing_measures, write_bench_report
from .runners import Outcome, RunKey, batch_edits, sequential_edits, single_edits
from .store import BenchStore, ResultFile

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
    plotly_js: str = "directory"  # "directory" (one plotly.min.js beside the pages) or "inline"; both work offline
    workers: int = 1  # processes sharing the jobs (each loads its own copy of the model)
    world_locality: bool = False  # single edits also score every world fact before and after (world_locality.py)
    edit_batch: int | None = None  # single edits (and the C sweep's) made side by side; None: each editor's
    # registry default (EditorSpec.edit_batch, chosen by measurement)

    def validate(self) -> BenchConfig:
        """Check every field; returns self. Raises RequestError naming the flag to fix."""
        if not self.editors:
            raise RequestError("give at least one editor, e.g. --editors ft-l,ft-l+sss")
        for name in self.editors:
            editor_config(name, **self.settings)  # unknown editor or setting -> RequestError
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise RequestError(f"unknown mode {bad[0] if bad else ''!r}; choose from {', '.join(MODES)}")
        if "sweep" in self.modes and not self.sweep_editors:
            raise RequestError("the C sweep needs an editor with SSS among --editors, e.g. ft-l+sss")
        for name in self.sweep_editors if "sweep" in self.modes else ():
            if not sweep_values_of(self, name)[0]:
                have = ", ".join(f"{c:g}" for c in shipped_checkpoints(name))
                raise RequestError(f"{name} is a trained editor whose C is its checkpoint's: none of the sweep's C "
                                   f"values has a checkpoint (shipped: C = {have}); add one of them to --sweep-values")
        if (self.seeds < 1 or self.workers < 1 or (self.n is not None and self.n < 1)
                or any(s < 1 for s in self.seq_sizes) or self.batch_size < 1
                or (self.edit_batch is not None and self.edit_batch < 1)):
            raise RequestError("--n, --seeds, --seq-sizes, --batch-size, --edit-batch and --workers must be positive")
        if any(not 0.0 <= c <= 1.0 for c in self.sweep_values):
            raise RequestError("C values of the sweep must be in [0, 1]")
        return self

    def edit_batch_of(self, editor: str) -> int:
        """How many of ``editor``'s single edits are made side by side: ``edit_batch``, else its registry default."""
        return self.edit_batch if self.edit_batch is not None else EDITORS[editor].edit_batch

    @property
    def sweep_editors(self) -> list[str]:
        """The editors among ``editors`` that use SSS (the C sweep runs these)."""
        return [e for e in self.editors if EDITORS[e].has_c]


def _cases_by_seed(cfg: BenchConfig) -> dict[int, list[EditCase]]:
    """The cases of every seed (the world draws them per seed; a file only reorders them).

    Raises RequestError when two cases share a case id (a result is stored under its case id, so one
    of them would be lost), naming the ids.
    """
    max_bytes = int(cfg.max_data_mb * 2**20)
    by_seed = {s: load_cases(cfg.data, cfg.n, s, cfg.fmt, max_bytes, cfg.skip_invalid) for s in range(cfg.seeds)}
    for cases in by_seed.values():
        counts = Counter(c.request.case_id for c in cases)
        twice = [str(cid) for cid, n in counts.items() if n > 1]
        if twice:
            raise RequestError(f"{cfg.data}: {len(twice)} case id(s) occur more than once ({', '.join(twice[:5])}"
                               f"{', ...' if len(twice) > 5 else ''}); results are stored by case id, so give each "
                               "record its own id (the 'case_id' field) before running")
    return by_seed


def _resumable(cfg: BenchConfig, store: BenchStore, cases_by_seed: dict[int, list[EditCase]], results: ResultFile,
               executor) -> LoadedModel | None:
    """Check that resuming into ``store`` mixes nothing: no stored result was made from other data or
    settings (digests), and the model is the one of the earlier runs (fingerprint in the run log).
    Returns the model it loaded for the check (None when an executor's workers load it).
    Raises RequestError naming what differs (the case ids, or both fingerprints)."""
    changed = _changed_results(store, plan(cfg, None, cases_by_seed, results.done))
    if changed:
        ids = list(dict.fromkeys(k.case_id for k in changed))
        raise RequestError(f"{len(changed)} results in {store.folder} were made from other data or settings than "
                           f"this run's (case ids {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}: the data "
                           "record or the editor's config changed since): resuming would mix the two. Use a new "
                           "--out, or move the folder away to start over")
    if executor is not None:
        return None
    lm, earlier = _load_model(cfg), store.log.latest("model_fingerprint")
    if earlier is not None and earlier != fingerprint(lm.model):
        raise RequestError(f"the results in {store.folder} were made on another model (weights {earlier}; "
                           f"{lm.name} is {fingerprint(lm.model)}): resuming would mix the two. Resume with that "
                           "model's --model and --dtype, or use a new --out")
    return lm


def _changed_results(store: BenchStore, jobs: list[Job]) -> list[RunKey]:
    """Keys stored with another digest than this run would write: their case's content or the editor's
    config changed since (results stored before digests existed are trusted)."""
    stored = store.digests()
    return [k for job in jobs for k in job.keys
            if stored.get(k) is not None and stored[k] != job.digests.get(k.case_id)]


def _editor(name: str, seed: int, settings: dict, C: float | None = None):
    """Editor ``name`` with ``settings``, its seed (if it has one) and, for the sweep, C in its registry's C field."""
    spec = EDITORS[name]
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    overrides = {**settings, **({"seed": seed} if "seed" in fields else {})}
    if C is not None:
        overrides[spec.c_field] = C  # the sweep runs only editors with SSS, which name their C field
    return make_editor(name, **overrides)


def sweep_values_of(cfg: BenchConfig, name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(C values the sweep runs for editor ``name``, values it leaves out). A trained editor's C is the C
    its checkpoint was trained at, so it runs only the values a checkpoint has (``checkpoint_c``)."""
    spec = EDITORS[name]
    if spec.c_role != "checkpoint":
        return cfg.sweep_values, ()
    kept, dropped = [], []
    for C in cfg.sweep_values:
        try:
            editor_config(name, **{**cfg.settings, spec.c_field: C})
            kept.append(C)
        except RequestError:
            dropped.append(C)
    return tuple(kept), tuple(dropped)


def _stamped(outcomes: Iterator[Outcome], digests: dict[str, str], checkpoint: str | None = None) -> Iterator[Outcome]:
    """``outcomes``, each stamped with its case's digest (``digests``: case id -> digest) and ``checkpoint``."""
    for o in outcomes:
        yield dataclasses.replace(o, digest=digests[o.case.request.case_id], checkpoint=checkpoint)


@dataclass(frozen=True)
class Job:
    """One unit of work: the results ``run()`` yields, for ``keys``, editing ``cases``."""

    desc: str  # shown on the progress bar
    keys: list[RunKey]
    cases: list[EditCase]
    run: Callable[[], Iterator[Outcome]]
    measure: bool = False  # store the hypothesis' measures with each result (single edits: the report uses them)
    digests: dict[str, str] = field(default_factory=dict)  # case id -> result_digest of this job's results


def _job(desc: str, keys: list[RunKey], cases: list[EditCase], editor, run: Callable[[], Iterator[Outcome]],
         measure: bool = False, checkpoint: str | None = None, measures: dict | None = None) -> Job:
    """A Job whose outcomes carry their digests (``record.result_digest`` of the case, the editor's config and
    ``measures``: what else the lines hold) and ``checkpoint``, with the digests it will write."""
    settings = dataclasses.asdict(editor.config)
    digests = {c.request.case_id: result_digest(c, editor.name, settings, measures) for c in cases}
    return Job(desc, keys, cases, lambda: _stamped(run(), digests, checkpoint), measure, digests)


def _checkpoint_of(editor) -> str | None:
    """The checkpoint folder's name of a trained editor (None for the others)."""
    folder = getattr(editor.config, "folder", None)
    return folder().name if callable(folder) else None


def plan(cfg: BenchConfig, lm, cases_by_seed: dict[int, list[EditCase]], skip) -> list[Job]:
    """Every job the run consists of, in order (deterministic: workers rebuild the same list).

    ``lm`` None: the jobs' keys and cases only, for a driver whose executor runs them elsewhere
    (calling ``run`` of such a job fails).
    """
    model, tok = (lm.model, lm.tok) if lm is not None else (None, None)
    world = default_world().facts if cfg.world_locality else None  # the built-in world, whatever the data
    jobs: list[Job] = []
    for seed, cases in cases_by_seed.items():
        for name in cfg.editors:
            editor = _editor(name, seed, cfg.settings)
            if "single" in cfg.modes:
                for start in range(0, len(cases), BLOCK):
                    block = cases[start:start + BLOCK]
                    keys = [RunKey(name, seed, c.request.case_id, "single") for c in block]
                    jobs.append(_job(f"{name} seed {seed} single", keys, block, editor,
                                     lambda e=editor, c=block, s=seed: single_edits(model, tok, e, c, s, skip=skip,
                                                                                    world=world,
                                                                                    edit_batch=cfg.edit_batch_of(e.name)),
                                     measure=True, measures={"world_locality": True} if world else None))
            if "sequential" in cfg.modes:
                for n in cfg.seq_sizes:
                    chunk = cases[:n]
                    keys = [RunKey(name, seed, c.request.case_id, f"sequential@{len(chunk)}{tail}")
                            for tail in ("", "/final") for c in chunk]
                    jobs.append(_job(f"{name} seed {seed} sequential n={len(chunk)}", keys, chunk, editor,
                                     lambda e=editor, c=chunk, s=seed: sequential_edits(model, tok, e, c, s,
                                                                                        skip=skip)))
            if "batch" in cfg.modes:
                for start in range(0, len(cases), cfg.batch_size):
                    chunk = cases[start:start + cfg.batch_size]
                    keys = [RunKey(name, seed, c.request.case_id, f"batch@{len(chunk)}") for c in chunk]
                    jobs.append(_job(f"{name} seed {seed} batch {start // cfg.batch_size + 1}", keys, chunk, editor,
                                     lambda e=editor, c=chunk, s=seed: batch_edits(model, tok, e, c, s, skip=skip)))
        if "sweep" in cfg.modes:
            for name in cfg.sweep_editors:
                for C in sweep_values_of(cfg, name)[0]:
                    editor, mode = _editor(name, seed, cfg.settings, C), f"sweep@C={C:g}"
                    chunk = cases[:cfg.sweep_n]
                    keys = [RunKey(name, seed, c.request.case_id, mode) for c in chunk]
                    jobs.append(_job(f"{name} seed {seed} C={C:g}", keys, chunk, editor,
                                     lambda e=editor, c=chunk, s=seed, m=mode, C=C:
                                     single_edits(model, tok, e, c, s, mode=m, skip=skip, C=C, with_lambda=False,
                                                  edit_batch=cfg.edit_batch_of(e.name)),
                                     checkpoint=_checkpoint_of(editor)))
    return jobs


def _measures(cfg: BenchConfig, lm, cases_by_seed: dict[int, list[EditCase]]) -> EditMeasures:
    """The hypothesis' per-edit measures of this bench (the reference is embedded on first use)."""
    return EditMeasures(lm.model, lm.tok, reference_prompts(cfg.data, cases_by_seed[0]), cfg.knn)


def _git_commit() -> str | None:
    """The checked-out commit of this code, or None outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _invocation(cfg: BenchConfig, command: str) -> dict:
    """The run log's entry of this invocation: its command and config, and the machine it runs on."""
    return {"command": command, "config": dataclasses.asdict(cfg), "git_commit": _git_commit(),
            "python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def job_results(job: Job, measures: EditMeasures) -> Iterator[tuple[Outcome, dict[str, float]]]:
    """Run one job: each outcome as it comes, with its case's measures (``{}`` if the job has none).

    The measures of the job's cases are taken before the job starts, while the model is unedited
    (sequential and batch jobs keep edits applied between the outcomes they yield). Keys the
    job's ``skip`` names done are not yielded.
    """
    requests = [c.request for c in job.cases] if job.measure else []
    fields = {(r.prompt, r.target_new): m for r, m in zip(requests, measures(requests))}
    for outcome in job.run():
        request = outcome.case.request
        yield outcome, fields.get((request.prompt, request.target_new), {})


def _run_jobs(jobs: list[Job], results: ResultFile, measures: EditMeasures, bar=None) -> int:
    """Run the jobs in order, writing each outcome as it comes (see ``job_results``).

    Returns how many results were written.
    """
    made = 0
    for job in jobs:
        if all(results.done(k) for k in job.keys):
            continue
        if bar is not None:
            bar.set_postfix_str(job.desc)
        for outcome, fields in job_results(job, measures):
            results.write(outcome, **fields)
            made += 1
            if bar is not None:
                bar.update(1)
    return made


class Executor(Protocol):
    """Runs a bench's jobs outside this process and writes their results here (e.g. ``ray_bench.RayExecutor``).

    ``run_bench`` then loads no model itself: the executor's workers load it, plan the same jobs
    (``plan`` is deterministic) and run them by number; the executor writes every result into
    ``results`` as it arrives (skipping keys already done), updates ``bar`` by one per result,
    and records ``model_name``, ``model_device`` and anything it wants kept about the run
    through ``note(**fields)`` (fields of this invocation's run-log entry). It returns the CPU
    seconds its workers spent. It may raise KeyboardInterrupt (stopping its workers first) or
    SSSError (no worker left); what it wrote is kept either way.
    """

    def run(self, cfg: BenchConfig, cases_by_seed: dict[int, list[EditCase]], jobs: list[Job],
            results: ResultFile, bar, note: Callable[..., None]) -> float:
        """Run the jobs whose keys are not all in ``results``; see the class docstring."""
        ...


def _worker(cfg: BenchConfig, out: Path, index: int, threads: int, queue, cpu, parent: int) -> None:
    """One worker process: take job numbers from ``queue`` until it is empty, write results.part{index}.jsonl.

    It stops after its current job if the parent dies (a killed run), so a resume never races it.
    """
    import queue as queues

    torch.set_num_threads(threads)
    cases_by_seed = _cases_by_seed(cfg)
    results = BenchStore(out).open_part(index)
    lm = _load_model(cfg)
    jobs = plan(cfg, lm, cases_by_seed, results.done)  # the same list as the parent's: plan is deterministic
    measures = _measures(cfg, lm, cases_by_seed)
    try:
        while os.getppid() == parent:
            try:
                number = queue.get(timeout=5)  # blocking: get_nowait also fails while another worker reads
            except queues.Empty:
                continue  # look at the parent again
            if number is None:  # one stop sign per worker, after the last job
                break
            _run_jobs([jobs[number]], results, measures)
    finally:
        results.close()
        cpu.value = time.process_time()


def _run_workers(cfg: BenchConfig, store: BenchStore, n_jobs: int, bar) -> float:
    """Run the jobs in ``cfg.workers`` processes; returns their CPU seconds. Progress from their files."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch state shared with the parent
    queue = ctx.Queue()
    for number in [*range(n_jobs), *[None] * cfg.workers]:
        queue.put(number)
    cpus = [ctx.Value("d", 0.0) for _ in range(cfg.workers)]
    procs = [ctx.Process(target=_worker, args=(cfg, store.folder, i, torch.get_num_threads(), queue, cpus[i],
                                               os.getpid()), daemon=True)
             for i in range(cfg.workers)]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(2)
            bar.update(max(0, store.part_lines() - bar.n))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    failed = [i for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        store.merge_parts()
        raise SSSError(f"bench worker {failed[0]} stopped (exit code {procs[failed[0]].exitcode}); its finished "
                       "results are kept: rerun with --resume to continue")
    return sum(c.value for c in cpus)


def rebuild_report(cfg: BenchConfig, out: Path, lm=None) -> Path:
    """Write the report of ``out`` again from its results (nothing is run, no invocation is logged).

    No model is loaded unless results written before the per-edit measures were stored need
    them: then ``lm``, or else the model of ``cfg`` (``--model``, default the shipped one),
    computes them for this report (the results file is not changed).
    Raises RequestError if ``out`` has no results.
    """
    store = BenchStore(out)
    if not store.exists():
        raise RequestError(f"{out} has no results.jsonl to report on")
    cases_by_seed = _cases_by_seed(cfg)
    missing = missing_measures(store.frame())
    if missing and lm is None:
        log.warning("%d results in %s predate the stored k-NN density and target NLL; loading the model to "
                    "compute them", missing, out)
        lm = _load_model(cfg)
    return write_bench_report(out, cfg, cases_by_seed, lm)


def run_bench(cfg: BenchConfig, out: Path, resume: bool = False, command: str = "",
              progress: bool = True, executor: Executor | None = None) -> dict:
    """Run everything ``cfg`` asks for into ``out``, then write the report. Returns a summary.

    ``executor``: run the jobs there (e.g. ``ray_bench.RayExecutor``) instead of in this process
    or ``cfg.workers`` local ones; the results go into the same store, so either kind of run
    resumes the other's.
    Raises RequestError if ``out`` has results and not ``resume``, or if an executor is given
    with ``cfg.workers`` > 1; SSSError if the run was interrupted, a worker died or results are
    missing (what is finished is kept: rerun with ``resume``).
    """
    from tqdm import tqdm

    cfg.validate()
    if executor is not None and cfg.workers > 1:
        raise RequestError("--workers starts local processes; on a cluster give the number of actors instead")
    cases_by_seed = _cases_by_seed(cfg)
    store = BenchStore(out)
    if not resume and store.has_parts():
        raise RequestError(f"{out} has results of an earlier run; pass --resume to continue it, "
                           "or choose another --out")
    store.merge_parts()  # what the workers of an interrupted run had finished
    results = store.open(resume)
    started, cpu_started = time.time(), time.process_time()
    try:
        lm = _resumable(cfg, store, cases_by_seed, results, executor) if resume else None
        if lm is None and executor is None:
            lm = _load_model(cfg)  # an executor's workers load their own
    except RequestError:
        results.close()
        raise
    entry = store.log.append(_invocation(cfg, command))
    if lm is not None:
        store.log.update(entry, model_name=lm.name, model_device=str(lm.device), model_fingerprint=fingerprint(lm.model))
    jobs = plan(cfg, lm, cases_by_seed, results.done)
    todo = sum(not results.done(k) for job in jobs for k in job.keys)
    skipped = sum(len(job.keys) for job in jobs) - todo
    before, cpu_workers, interrupted, failure = len(results.keys), 0.0, False, None
    try:
        with tqdm(total=todo, desc="bench", unit="result", disable=not progress, mininterval=2) as bar:
            if executor is not None:
                cpu_workers = executor.run(cfg, cases_by_seed, jobs, results, bar,
                                           lambda **fields: store.log.update(entry, **fields))
            elif cfg.workers > 1:
                results.close()
                cpu_workers = _run_workers(cfg, store, len(jobs), bar)
            else:
                _run_jobs(jobs, results, _measures(cfg, lm, cases_by_seed), bar)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the CLI turns it into this)
        interrupted = True
    except SSSError as exc:  # a worker died: log the invocation, then say so
        failure = exc
    finally:
        results.close()
        store.merge_parts()
    made = len(store.keys()) - before
    wall = time.time() - started
    store.log.update(entry, finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     wall_seconds=round(wall, 1), cpu_seconds=round(time.process_time() - cpu_started + cpu_workers, 1),
                     results_made=made, results_skipped=skipped, interrupted=interrupted,
                     **({"failed": str(failure)} if failure else {}))
    if failure is not None:
        raise failure
    if interrupted:
        raise SSSError(f"interrupted after {made} new results; they are kept in {store.results_path}: "
                       "rerun the same command with --resume to continue")
    if made < todo:
        raise SSSError(f"{todo - made} of {todo} results are missing from {store.results_path}; "
                       "rerun the same command with --resume to make them")
    if lm is None and missing_measures(store.frame()):  # older results, resumed through an executor
        lm = _load_model(cfg)
    report = write_bench_report(out, cfg, cases_by_seed, lm)
    return {"out": str(out), "results_made": made, "results_skipped": skipped, "wall_seconds": round(wall, 1),
            "report": str(report)}


def _load_model(cfg: BenchConfig) -> LoadedModel:
    """The model of ``cfg`` (default: the shipped one), as ``load_model`` loads it. Raises ModelLoadError."""
    return load_model(cfg.model or DEFAULT_MODEL, device=cfg.device, dtype=cfg.dtype, device_map=cfg.device_map)

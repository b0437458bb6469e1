"""The bench on a Ray cluster (``bench --ray [ADDRESS]``): actors edit, this process writes the results.

Each Ray actor loads the model once, on its own device (``num_gpus`` per actor where the cluster
has GPUs, else ``num_cpus`` = its torch threads), plans the same jobs as the driver (``bench.plan``
is deterministic) and runs the job numbers it is handed, yielding each result as it is made
(a Ray streaming generator). The driver (this process) writes every result into the bench's
``BenchStore`` as it arrives and skips keys it already has, so a Ray run and a local run resume
each other's folders and nothing is counted twice.

A job whose actor dies (killed process, out of memory) or raises loses only what it had not sent
yet: Ray restarts the actor (``max_restarts``) and the driver hands the job again, preferably to
another actor, with the keys already stored marked done; after ``max_tries`` tries the job's
missing results are recorded as failed with the reason. Ctrl-C kills the actors; every result
written so far is kept. Ray is imported only here and only when a run starts, so the bench works
without it.

Example:
    >>> from sss_core.evaluation.ray_bench import RayExecutor
    >>> run_bench(cfg, Path("runs/world"), executor=RayExecutor(address="auto"))
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from ..errors import RequestError, SSSError
from ..types import EditCase
from .bench import BenchConfig, Job, _load_model, _measures, job_results, plan
from .runners import Outcome, RunKey
from .store import ResultFile, key_of

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "sss-lab[ray]"'
UNAVAILABLE_PROBES = 120  # an actor that stays unreachable this many seconds after dying counts as gone
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours the messages it relays


def import_ray():
    """The ``ray`` module. Raises RequestError with the line that installs it when it is missing."""
    try:
        import ray
    except ImportError:
        raise RequestError(f"running the bench on Ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


class BenchActor:
    """What one Ray actor holds: the model (loaded once), the planned jobs and the measures.

    Made by ``RayExecutor`` as ``ray.remote(BenchActor)``; Ray pickles the class by reference, so
    every node of the cluster needs this package installed (the same version as the driver).
    """

    def __init__(self, cfg: BenchConfig, cases_by_seed: dict[int, list[EditCase]], threads: int):
        """Load ``cfg``'s model on this actor's device with ``threads`` torch threads and plan the jobs.

        Raises ModelLoadError (the actor then fails to start; the driver says so).
        """
        from transformers.utils import logging as hf_logging

        torch.set_num_threads(threads)
        hf_logging.disable_progress_bar()  # N actors' weight-loading bars would bury the driver's one bar
        self._done: set[RunKey] = set()
        self.lm = _load_model(cfg)  # "auto" finds the GPU Ray gave this actor (CUDA_VISIBLE_DEVICES)
        self.jobs = plan(cfg, self.lm, cases_by_seed, self._done.__contains__)
        self.measures = _measures(cfg, self.lm, cases_by_seed)

    def describe(self) -> dict:
        """Where this actor runs: pid, node address, device, model name, GPU ids Ray assigned."""
        import ray
        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address(), "device": str(self.lm.device),
                "model_name": self.lm.name, "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}

    def run(self, number: int, done: list[RunKey]) -> Iterator[tuple[dict, dict]]:
        """Run job ``number`` of the plan, skipping the keys in ``done``; yield (result record, measures) per result.

        A generator: Ray streams each item to the driver as soon as it is yielded.
        """
        self._done.clear()
        self._done.update(RunKey(*k) for k in done)
        for outcome, fields in job_results(self.jobs[number], self.measures):
            yield outcome.to_json(), fields

    def cpu_seconds(self) -> float:
        """CPU seconds this actor's process has used (since its last start)."""
        return time.process_time()


def failed_outcome(job: Job, key: RunKey, reason: str) -> Outcome:
    """The failed outcome of ``key`` of ``job`` (no result, ``error`` = ``reason``), with the n, position or C
    a result of its mode carries (sequential: position in the run, or n for ``/final``; batch: n; sweep: C)."""
    ids = [c.request.case_id for c in job.cases]
    case = job.cases[ids.index(key.case_id)]
    n = position = C = None
    if key.mode.startswith(("sequential@", "batch@")):
        n = len(job.cases)
    if key.mode.startswith("sequential@"):
        position = n if key.mode.endswith("/final") else ids.index(key.case_id) + 1
    if key.mode.startswith("sweep@C="):
        C = float(key.mode.split("=", 1)[1])
    return Outcome(key, case, None, error=reason, n=n, position=position, C=C)


@dataclass
class _Slot:
    """The driver's view of one actor: its handle and what it is doing."""

    handle: object
    state: str = "starting"  # starting (readiness asked) | idle | busy | gone
    probe: object = None  # the pending describe() reference while starting
    probe_at: float = 0.0  # when to ask again, after the actor was unreachable
    probes: int = 0
    job: int | None = None
    deaths: int = 0
    info: dict = field(default_factory=dict)


class RayExecutor:
    """Runs a bench's jobs on Ray actors and streams the results into the driver's store (``bench.Executor``).

    ``address``: None starts a local Ray cluster of ``num_cpus`` CPUs (default: this machine's),
    unless RAY_ADDRESS is set; "auto" or "HOST:PORT" connects to a running cluster (``ray start``).
    If Ray is already initialised in this process, that cluster is used and left running.
    ``actors``: how many (default: one per GPU of the cluster, else one per ``threads`` CPUs);
    ``threads``: torch threads and Ray CPUs of each actor; ``gpus_per_actor``: GPUs each actor
    holds where the cluster has GPUs and ``cfg.device`` is not "cpu"; ``max_tries``: how often a
    job is handed out before its missing results are recorded as failed; ``max_restarts``: how
    often Ray restarts a dead actor (each restart loads the model again).

    Example:
        >>> summary = run_bench(cfg, Path("runs/world"), executor=RayExecutor(actors=2))
    """

    def __init__(self, address: str | None = None, actors: int | None = None, threads: int = 1,
                 num_cpus: int | None = None, gpus_per_actor: float = 1, max_tries: int = 3,
                 max_restarts: int = 3):
        """Settings only; Ray is started or joined by ``run``. Raises RequestError on a count below 1."""
        if (actors is not None and actors < 1) or threads < 1 or max_tries < 1 or max_restarts < 0 \
                or gpus_per_actor <= 0 or (num_cpus is not None and num_cpus < 1):
            raise RequestError("actors, threads, CPUs, GPUs per actor and tries must be positive")
        self.address, self.actors, self.threads, self.num_cpus = address, actors, threads, num_cpus
        self.gpus_per_actor, self.max_tries, self.max_restarts = gpus_per_actor, max_tries, max_restarts
        self.slots: list[_Slot] = []  # the actors of the run in progress
        self._running: tuple[list, ResultFile | None] = ([], None)  # its jobs and result file
        self.stats: dict = {}

    def pids(self) -> list[int | None]:
        """The process id of each actor of the run in progress, as it last reported (None: not started yet)."""
        return [s.info.get("pid") for s in self.slots]

    def busy(self) -> dict[int, int]:
        """{actor index: job number} of the actors holding a job right now."""
        return {i: s.job for i, s in enumerate(self.slots) if s.state == "busy"}

    def unstored(self, job: int) -> int:
        """How many results of job ``job`` of the run in progress are not stored yet (0 outside a run)."""
        jobs, results = self._running
        return sum(not results.done(k) for k in jobs[job].keys) if jobs else 0

    def _connect(self, ray) -> bool:
        """Start or join the cluster; returns whether this call started Ray (and so shuts it down)."""
        if ray.is_initialized():
            return False
        sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it with sys.exit; the CLI has its own
        try:
            if self.address or os.environ.get("RAY_ADDRESS"):
                ray.init(address=self.address, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=self.num_cpus or os.cpu_count(), include_dashboard=False,
                         logging_level=logging.WARNING)
        except ConnectionError as exc:
            raise RequestError(f"no Ray cluster at {self.address or os.environ.get('RAY_ADDRESS')} ({exc}); "
                               "start one with `ray start --head`, or leave the address out to start a local one")
        finally:
            if threading.current_thread() is threading.main_thread() and sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
        return True

    def _actor_options(self, ray, cfg: BenchConfig) -> tuple[int, dict]:
        """How many actors, and the Ray options of each (resources, restarts)."""
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0) if cfg.device != "cpu" else 0
        options = {"num_cpus": self.threads, "max_restarts": self.max_restarts, "max_task_retries": 0}
        if gpus:
            options["num_gpus"] = self.gpus_per_actor
            fit = int(gpus // self.gpus_per_actor)
        else:
            fit = int(resources.get("CPU", 1) // self.threads)
        count = self.actors or max(1, fit)
        if count > max(fit, 1):
            log.warning("%d actors asked for, the cluster has room for %d now: the others wait for resources",
                        count, fit)
        self.stats["resources"] = {k: resources[k] for k in ("CPU", "GPU") if k in resources}
        return count, options

    def run(self, cfg: BenchConfig, cases_by_seed: dict[int, list[EditCase]], jobs: list[Job],
            results: ResultFile, bar, note: Callable[..., None]) -> float:
        """Run the jobs not yet in ``results`` on Ray actors; write each result as it arrives.

        Returns the CPU seconds the actors spent (as far as they could be asked). Raises
        KeyboardInterrupt after killing the actors on Ctrl-C; SSSError when no actor is left or
        none could start (e.g. the model failed to load on it); RequestError when Ray is not
        installed or the cluster cannot be reached.
        """
        if all(results.done(k) for job in jobs for k in job.keys):
            return 0.0  # nothing to run: no cluster, no model loaded
        ray = import_ray()
        started = self._connect(ray)
        self.stats = {"address": self.address or os.environ.get("RAY_ADDRESS") or "local", "actor_deaths": 0,
                      "retried_jobs": [], "failed_jobs": []}
        cpu = 0.0
        self._running = (jobs, results)  # for ``unstored``
        try:
            count, options = self._actor_options(ray, cfg)
            remote = ray.remote(BenchActor).options(**options)
            # the cases travel with each actor's creation (Ray stores large arguments once), so a restart has them
            self.slots = [_Slot(remote.remote(cfg, cases_by_seed, self.threads)) for _ in range(count)]
            for slot in self.slots:
                slot.probe = slot.handle.describe.remote()
            note(ray=self.stats)
            self._drive(ray, jobs, results, bar, note)
            cpu = self._cpu_seconds(ray)
        finally:
            for slot in self.slots:
                ray.kill(slot.handle, no_restart=True)  # Ctrl-C, an error or the end: no actor outlives the run
            note(ray={**self.stats, "actors": [{**s.info, "deaths": s.deaths} for s in self.slots]})
            if started:
                ray.shutdown()
            self._running = ([], None)
        return cpu

    def _cpu_seconds(self, ray) -> float:
        """The CPU seconds of the live actors (an actor that died and restarted counts from its restart)."""
        live = [s.handle.cpu_seconds.remote() for s in self.slots if s.state == "idle"]
        try:
            return float(sum(ray.get(live, timeout=30)))
        except ray.exceptions.RayError:
            return 0.0

    def _drive(self, ray, jobs: list[Job], results: ResultFile, bar, note: Callable[..., None]) -> None:
        """Hand jobs to idle actors, write streamed results, retry or fail the jobs of dead actors, until done."""
        queue = deque(i for i, job in enumerate(jobs) if not all(results.done(k) for k in job.keys))
        tries: Counter = Counter()
        last_actor: dict[int, int] = {}
        streams: dict = {}  # ObjectRefGenerator -> actor index
        described = False
        while queue or streams:
            now = time.monotonic()
            for i, slot in enumerate(self.slots):
                if slot.state == "starting" and slot.probe is None and now >= slot.probe_at:
                    slot.probe = slot.handle.describe.remote()
            for i, slot in enumerate(self.slots):
                if slot.state == "idle" and queue:
                    number = self._next_job(queue, last_actor, i)
                    if number is None:
                        continue
                    job = jobs[number]
                    slot.state, slot.job = "busy", number
                    streams[slot.handle.run.remote(number, [k for k in job.keys if results.done(k)])] = i
                    bar.set_postfix_str(job.desc)
            probes = {s.probe: i for i, s in enumerate(self.slots) if s.probe is not None}
            if not streams and not probes:
                if all(s.state == "gone" for s in self.slots):
                    raise SSSError(f"no Ray actor is left ({self._why_gone()}); the finished results are kept: "
                                   "rerun with --resume (with or without --ray) to continue")
                time.sleep(0.2)  # only actors waiting to be asked again after being unreachable
                continue
            ready, _ = ray.wait([*streams, *probes], num_returns=1, timeout=1.0)
            if not ready:
                continue
            ref = ready[0]
            if ref in probes:
                self._on_probe(ray, self.slots[probes[ref]])
                if not described and any(s.state == "idle" for s in self.slots):
                    first = next(s for s in self.slots if s.state == "idle").info
                    note(model_name=first["model_name"], model_device=first["device"])
                    described = True
                continue
            i = streams[ref]
            try:
                record, fields = ray.get(next(ref))
            except StopIteration:
                del streams[ref]
                self.slots[i].state, self.slots[i].job = "idle", None
                continue
            except ray.exceptions.RayError as exc:
                del streams[ref]
                self._on_failure(ray, i, exc, jobs, queue, tries, last_actor, results, bar)
                note(ray=self.stats)
                continue
            if not results.done(key_of(record)):  # a retried job yields only what is missing; this is a guard
                results.write(record, **fields)
                bar.update(1)

    def _next_job(self, queue: deque, last_actor: dict[int, int], index: int) -> int | None:
        """The first queued job for actor ``index``: not one that just failed on it, unless no other actor is alive."""
        others = sum(s.state != "gone" for j, s in enumerate(self.slots) if j != index)
        for pos, number in enumerate(queue):
            if last_actor.get(number) != index or not others:
                del queue[pos]
                return number
        return None

    def _on_probe(self, ray, slot: _Slot) -> None:
        """A readiness answer: the actor is idle, gone (dead for good, or failed to start), or asked again later."""
        ref, slot.probe = slot.probe, None
        try:
            slot.info = ray.get(ref)
            slot.state, slot.probes = "idle", 0
            log.info("Ray actor ready: %s", slot.info)
        except ray.exceptions.ActorUnavailableError:  # restarting, or its death not yet noticed: ask again
            slot.probes += 1
            slot.probe_at = time.monotonic() + 1.0
            if slot.probes > UNAVAILABLE_PROBES:
                self._gone(slot, "unreachable")
        except ray.exceptions.RayError as exc:
            self._gone(slot, _reason(exc))

    def _gone(self, slot: _Slot, why: str) -> None:
        """Stop using an actor for the rest of the run."""
        log.warning("a Ray actor is gone: %s", why)
        slot.state, slot.job = "gone", None
        slot.info = {**slot.info, "gone": why}

    def _why_gone(self) -> str:
        """The reasons the actors are gone, each once."""
        return "; ".join(dict.fromkeys(s.info.get("gone", "?") for s in self.slots))

    def _on_failure(self, ray, index: int, exc: Exception, jobs: list[Job], queue: deque, tries: Counter,
                    last_actor: dict[int, int], results: ResultFile, bar) -> None:
        """Actor ``index``'s job stopped with ``exc``: count the try, requeue the job or record its missing keys failed."""
        slot = self.slots[index]
        number, reason = slot.job, _reason(exc)
        if isinstance(exc, ray.exceptions.RayTaskError):
            slot.state, slot.job = "idle", None  # the job raised; the actor itself is fine
        else:  # the actor's process died: Ray restarts it (up to max_restarts), the model loads again
            slot.deaths += 1
            self.stats["actor_deaths"] += 1
            if isinstance(exc, ray.exceptions.ActorDiedError) or slot.deaths > self.max_restarts:
                self._gone(slot, reason)
            else:
                slot.state, slot.job, slot.probe_at = "starting", None, time.monotonic() + 0.5
        tries[number] += 1
        last_actor[number] = index
        job = jobs[number]
        if tries[number] < self.max_tries:
            log.warning("%s: try %d of %d failed (%s); handing it out again", job.desc, tries[number],
                        self.max_tries, reason)
            self.stats["retried_jobs"].append({"job": job.desc, "try": tries[number], "reason": reason})
            queue.appendleft(number)
            return
        log.warning("%s failed %d times (%s); its missing results are recorded as failed", job.desc,
                    tries[number], reason)
        self.stats["failed_jobs"].append({"job": job.desc, "reason": reason})
        for key in job.keys:
            if not results.done(key):
                results.write(failed_outcome(job, key, f"{reason} (after {tries[number]} tries on Ray actors)"))
                bar.update(1)


def _reason(exc: Exception) -> str:
    """One line saying why a Ray task failed: the exception's type and the first line of its message.

    What a job raised is unwrapped from Ray's RayTaskError; an actor whose ``__init__`` raised
    (e.g. the model does not load there) is told by that error's last line, where Ray's message
    ends with it.
    """
    cause = getattr(exc, "cause", None)  # RayTaskError wraps what the job raised
    shown = cause if isinstance(cause, Exception) else exc
    lines = [line.strip() for line in _ANSI.sub("", str(shown)).splitlines() if line.strip()]
    if getattr(shown, "actor_init_failed", False) and lines:
        return f"the actor could not start: {lines[-1]}"[:300]
    return f"{type(shown).__name__}: {lines[0] if lines else ''}"[:300]


__all__ = ["INSTALL_HINT", "BenchActor", "RayExecutor", "failed_outcome", "import_ray"]

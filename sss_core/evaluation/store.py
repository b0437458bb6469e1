"""A bench's results on disk: one folder, read and written only through this module.

A bench folder (``bench --out DIR``) holds:

- ``results.jsonl``: one JSON line per result (editor, seed, case_id, mode; the scores and every
  probe's raw predictions; for single edits also the per-edit measures of the hypothesis,
  ``knn_distance`` and ``target_nll``, taken on the unedited model when the result was made; with
  ``--world-locality`` also ``world_locality`` and the ``world_damage`` summary).
  Append-only: each line is flushed as it is written, so a killed run keeps everything it finished.
- ``results.part{i}.jsonl``: what worker ``i`` of a parallel run has written so far; merged into
  ``results.jsonl`` when the run ends (or when an interrupted run is resumed).
- ``config.json``: the run log, one entry per invocation into the folder (its command, its
  config, the machine, the model it loaded, how long it took).

The bench, the report and the app all go through ``BenchStore``; a distributed executor
streams its outcomes into the same API:

    >>> store = BenchStore(Path("runs/world"))
    >>> with store.open(resume=True) as results:
    ...     for outcome in outcomes:
    ...         if not results.done(outcome.key):
    ...             results.write(outcome, knn_distance=0.8, target_nll=2.1)
    >>> frame = store.frame()  # one row per result, one column per metric
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..editors import EDITORS
from ..errors import DataError, RequestError
from ..jsonio import to_json
from .runners import Outcome, RunKey

log = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
RUN_LOG_FILE = "config.json"
PART_GLOB = "results.part*.jsonl"

# Per-edit measures of the hypothesis stored with each result (hypothesis.EditMeasures makes them).
MEASURES = ("knn_distance", "target_nll")
# Metric columns every results frame has (NaN where a result has no such probe), in this order.
METRICS = ("reliability", "generality", "locality", "portability", "neighbour", "pre_neighbour", "post_neighbour",
           "distract_neighbour", "unrelated_attribute", "subject_replace", "reversed_relation", "one_hop")
_KEY_COLUMNS = ("editor", "seed", "case_id", "mode", "n", "position", "C", "error", "lambda_max_before",
                "lambda_max_after", "seconds")
# Single edits run with world locality (``bench --world-locality``): the share of world facts that should
# not change whose top answer did not, and how many did change (NaN for the other results).
WORLD = ("world_locality", "world_damaged")
_NUMERIC = ("lambda_max_before", "lambda_max_after", "seconds", "n", "C", *MEASURES, *WORLD)


def complete_lines(path: Path) -> list[str]:
    """The complete lines of a results file; a torn last line (a run killed mid-write) is cut off the file.

    Only for files nobody is writing to any more: a line being written would be cut off too.
    Raises FileNotFoundError if ``path`` does not exist.
    """
    raw = path.read_bytes()
    good = raw.rfind(b"\n") + 1  # bytes after the last newline were never completed
    if good < len(raw):
        log.warning("dropping an unfinished last line of %s", path)
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return raw[:good].decode("utf-8").splitlines()


def key_of(record: Mapping) -> RunKey:
    """The RunKey of one result record. Raises KeyError if a key field is missing."""
    return RunKey(record["editor"], record["seed"], record["case_id"], record["mode"])


def keys_of(path: Path) -> set[RunKey]:
    """The keys already in a results file (empty if there is none); cuts off a torn last line.

    Raises DataError, naming the line, if a complete line is not a result.
    """
    keys = set()
    for i, line in enumerate(complete_lines(path) if path.exists() else []):
        try:
            keys.add(key_of(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path} line {i + 1} is corrupt ({exc}); move the file away to start over")
    return keys


def read_records(path: Path, strict: bool = True, max_rows: int | None = None) -> tuple[list[dict], int]:
    """The JSON objects of a JSON-lines file, read only (the file is never changed).

    Returns (records, number of unreadable lines). ``strict``: a torn last line (no newline: a
    run killed mid-write, or one still writing) is left out with a warning, and any other line
    that is not a JSON object raises DataError naming it. Not strict: every unreadable line,
    the torn one included, is skipped and counted. Reading stops after ``max_rows`` records.
    """
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    torn = lines.pop()  # "" when the file ends with a newline
    if torn.strip() and strict:
        log.warning("leaving out an unfinished last line of %s", path)
    elif torn.strip():
        lines.append(torn)
    records, bad = [], 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            obj, error = None, exc
        else:
            error = None if isinstance(obj, dict) else "not a JSON object"
        if error is not None:
            if strict:
                raise DataError(f"{path} line {i + 1} is corrupt ({error}); move the file away or repair that line")
            bad += 1
            continue
        records.append(obj)
        if max_rows is not None and len(records) >= max_rows:
            break
    return records, bad


def results_frame(records: list[dict]) -> pd.DataFrame:
    """One row per result record: key columns, the request prompt and target, one column per metric.

    Also ``post`` (every post-edit prediction of the case, as JSON, to tell whether two editors
    changed the model alike), the stored measures (``knn_distance``, ``target_nll``; NaN where
    null or absent), ``world_locality`` and ``world_damaged`` (NaN unless the result was run with
    world locality) and ``measured`` (whether the line has them: False for results of other
    modes than single, and for results written before they were stored). Rows are sorted by
    editor (registry order), mode, seed and case id: the frame does not depend on the order in
    which workers or Ray actors wrote the file.
    """
    rows = []
    for rec in records:
        row = {k: rec.get(k) for k in _KEY_COLUMNS}
        row["prompt"], row["target_new"] = rec["request"]["prompt"], rec["request"]["target_new"]
        row["post"] = json.dumps([p["post"] for p in rec.get("probes") or []])
        row.update(rec.get("metrics") or {})  # null -> NaN below
        row.update({k: rec.get(k) for k in MEASURES})
        row["measured"] = all(k in rec for k in MEASURES)
        row["checkpoint"] = rec.get("checkpoint")  # trained editors: the checkpoint that made the result
        row["world_locality"] = rec.get("world_locality")
        row["world_damaged"] = (rec.get("world_damage") or {}).get("damaged")
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else [*_KEY_COLUMNS, "prompt", "target_new", "post",
                                                          *MEASURES, "measured", "checkpoint", *WORLD])
    rank = {name: i for i, name in enumerate(EDITORS)}
    # One order whatever order the results were written in (local workers and Ray actors finish in
    # any order): the bootstrap CIs and float sums of the report then match digit for digit.
    # The key (editor, mode, seed, case id) is unique in a results file (a run skips keys it has), so
    # it orders every row.
    frame = frame.sort_values(["editor", "mode", "seed", "case_id"],
                              key=lambda col: col.map(lambda e: rank.get(e, len(rank))) if col.name == "editor" else col)
    for col in [*METRICS, *_NUMERIC]:  # a fixed order for columns no result has
        frame[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame else math.nan
    return frame


class ResultFile:
    """One append-only results file: each result is one JSON line, flushed as soon as it is written.

    Knows the keys already in the file (and ``also_done``: e.g. the main file's keys for a
    worker's part file), so a caller skips work that is done. Use as a context manager, or
    call ``close``.
    """

    def __init__(self, path: Path, resume: bool = False, also_done: set[RunKey] = frozenset()):
        """Open ``path`` for appending. Raises RequestError if it has results and ``resume`` is False,
        DataError if a line of it is corrupt."""
        self.path = path
        if path.exists() and path.stat().st_size and not resume:
            raise RequestError(f"{path.parent} already has results; pass --resume to continue that run, "
                               "or choose another --out")
        self.keys: set[RunKey] = keys_of(path) | set(also_done)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")

    def done(self, key: RunKey) -> bool:
        """Whether a result for ``key`` is already stored."""
        return key in self.keys

    def write(self, outcome: Outcome | Mapping, **fields) -> None:
        """Append one result and flush it: an ``Outcome`` (or its ``to_json()`` record), plus ``fields``.

        ``fields`` are extra top-level fields of the line, e.g. ``knn_distance=0.83`` (NaN and
        infinities are written as null, so the file stays strict JSON).
        """
        record = {**(outcome.to_json() if isinstance(outcome, Outcome) else outcome), **fields}
        key = key_of(record)
        self._fh.write(to_json(record) + "\n")
        self._fh.flush()
        self.keys.add(key)

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._fh.close()

    def __enter__(self) -> ResultFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RunLog:
    """``config.json``: one entry per invocation into a bench folder, in order.

    An entry is what the bench records (command, config, machine, model, timing); the log only
    keeps them. Every change rewrites the file whole and atomically.
    """

    def __init__(self, path: Path):
        """The log at ``path`` (it need not exist yet)."""
        self.path = path

    def runs(self) -> list[dict]:
        """Every entry, oldest first ([] when there is no log). Raises DataError if the file is not a run log."""
        if not self.path.exists():
            return []
        try:
            return list(json.loads(self.path.read_text(encoding="utf-8"))["runs"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{self.path} is not a bench run log ({exc}); move it away or repair it")

    def append(self, entry: dict) -> int:
        """Add ``entry`` as the newest invocation; returns its index (for ``update``)."""
        runs = self.runs()
        runs.append(entry)
        self._write(runs)
        return len(runs) - 1

    def update(self, index: int, **fields) -> None:
        """Add or replace ``fields`` of entry ``index`` (e.g. when the run finishes)."""
        runs = self.runs()
        runs[index].update(fields)
        self._write(runs)

    def latest(self, field: str):
        """The value of ``field`` in the newest entry that has it, or None."""
        return next((r[field] for r in reversed(self.runs()) if field in r), None)

    def _write(self, runs: list[dict]) -> None:
        """Replace the file with ``runs`` (through a temporary file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(to_json({"runs": runs}, indent=True), encoding="utf-8")
        os.replace(tmp, self.path)  # a killed run never leaves half a log


class BenchStore:
    """A bench folder: its results (``results.jsonl`` and worker part files) and its run log.

    Example (a run, then its report):
        >>> store = BenchStore(Path("runs/world"))
        >>> with store.open(resume=False) as results:
        ...     results.write(outcome, knn_distance=0.8, target_nll=2.1)
        >>> store.frame()["reliability"].mean()
    """

    def __init__(self, folder: Path):
        """The store in ``folder`` (created when the first result is written)."""
        self.folder = Path(folder)
        self.results_path = self.folder / RESULTS_FILE
        self.log = RunLog(self.folder / RUN_LOG_FILE)

    def exists(self) -> bool:
        """Whether the folder has a results file."""
        return self.results_path.exists()

    def open(self, resume: bool = False) -> ResultFile:
        """The main results file, for appending. Raises RequestError if it has results and not ``resume``."""
        return ResultFile(self.results_path, resume)

    def open_part(self, index: int) -> ResultFile:
        """Worker ``index``'s part file; the keys of the main file count as done."""
        return ResultFile(self.folder / f"results.part{index}.jsonl", resume=True, also_done=self.keys())

    def keys(self) -> set[RunKey]:
        """The keys in the main results file (a torn last line is cut off). Raises DataError on a corrupt line."""
        return keys_of(self.results_path)

    def has_parts(self) -> bool:
        """Whether worker part files are there (a parallel run is going on, or was interrupted)."""
        return any(self.folder.glob(PART_GLOB))

    def part_lines(self) -> int:
        """Results written to the part files so far (a count only: a worker may be mid-line)."""
        return sum(f.read_bytes().count(b"\n") for f in self.folder.glob(PART_GLOB))

    def merge_parts(self) -> None:
        """Move the complete lines of the worker part files into the main file and delete the parts.

        Only when no worker is writing any more; a torn last line of any file is dropped.
        """
        if self.results_path.exists():
            complete_lines(self.results_path)
        for part in sorted(self.folder.glob(PART_GLOB)):
            lines = complete_lines(part)
            with open(self.results_path, "a", encoding="utf-8") as fh:
                fh.write("".join(line + "\n" for line in lines))
            part.unlink()

    def digests(self) -> dict[RunKey, str | None]:
        """Key -> the digest each stored result was made with (None for results stored before digests)."""
        if not self.results_path.exists():
            return {}
        records, _ = read_records(self.results_path)
        return {key_of(r): r.get("digest") for r in records}

    def records(self, strict: bool = True, max_rows: int | None = None) -> tuple[list[dict], int]:
        """Every record of the main file and the number of unreadable lines (see ``read_records``).

        Raises RequestError if there is no results file.
        """
        if not self.exists():
            raise RequestError(f"{self.folder} has no {RESULTS_FILE}; give the --out folder of a bench run")
        return read_records(self.results_path, strict, max_rows)

    def frame(self) -> pd.DataFrame:
        """Every result as one row of a DataFrame (see ``results_frame``). Raises RequestError or DataError."""
        return results_frame(self.records()[0])


__all__ = [
    "MEASURES",
    "METRICS",
    "WORLD",
    "BenchStore",
    "ResultFile",
    "RunLog",
    "complete_lines",
    "key_of",
    "keys_of",
    "read_records",
    "results_frame",
]

"""The data of the Hypothesis view, with no Streamlit in it: world edits run one at a time, or a bench
folder read from disk, turned into the bench's results frame and its statistics.

Nothing here measures or correlates on its own: an edit is the bench's single-edit runner
(``evaluation.runners.single_edits``: edit, score, revert, lambda_max before and after), its
per-edit measures are the bench's (``evaluation.hypothesis.EditMeasures``: k-NN distance of the
edit prompt among the world's prompts, NLL of the new target), the frame is the store's
(``evaluation.store.results_frame``), and the statistics are the report's
(``hypothesis.correlations``: Spearman and partial Spearman with cluster-bootstrap CIs;
``report.sss_effect_table``: the paired effect of SSS with bootstrap CIs). So the view shows
what ``python -m sss_core bench`` would write for the same edits.

Example:
    >>> job = HypothesisJob.start(load_cases("world", 50, 0), [("ft-l", {})], seed=0, k=10)
    >>> while job.pending:
    ...     run_next(lm, job)
    >>> table = correlation_frame(correlations(hypothesis_rows(job.frame())))
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sss_core.editors import EDITORS, editor_config, make_editor
from sss_core.editors.base import model_lock
from sss_core.errors import RequestError
from sss_core.evaluation.hypothesis import Correlation, EditMeasures, reference_prompts
from sss_core.evaluation.report import sss_effect_table
from sss_core.evaluation.runners import single_edits
from sss_core.evaluation.store import RESULTS_FILE, BenchStore, results_frame
from sss_core.models import LoadedModel
from sss_core.sss import lambda_max, n_hidden_states
from sss_core.types import EditCase

CASES_FILES = ("cases.csv", "cases.csv.gz")  # the report's per-case table (no stored measures in it)
PREDICTS = {1: "> 0", -1: "< 0", 0: "no sign"}
MEASURE_LABELS = {"lambda_max_before": "λ_max before", "knn_distance": "kNN distance",
                  "target_nll": "target NLL", "locality_drop": "damage (1 − locality)"}


@dataclass
class HypothesisJob:
    """N world edits per editor, run one at a time so that the view can show progress and stop.

    ``records`` holds one results-file record per finished edit (``Outcome.to_json()`` plus the
    bench's per-edit measures), in the order they were made: case by case, every editor on a
    case before the next case, so a stopped job still has its pairs with and without SSS.
    """

    cases: list[EditCase]
    editors: list[tuple[str, dict[str, Any]]]  # (registry name, config overrides)
    seed: int
    k: int
    layer: int = -1  # hidden states lambda_max before the edit is read at (-1: the last, the paper's)
    records: list[dict] = field(default_factory=list)
    stopped: bool = False
    seconds: float = 0.0  # wall time of the edits and measures so far
    _measures: EditMeasures | None = field(default=None, repr=False)
    _editors: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def start(cls, cases: Sequence[EditCase], editors: Sequence[tuple[str, dict]], seed: int = 0,
              k: int = 10, layer: int = -1) -> HypothesisJob:
        """A job over ``cases`` x ``editors`` (raises RequestError for no case or no editor). ``layer``: where
        lambda_max before the edit is read (``sss.lambda_max``'s layer; checked against the model when it runs)."""
        if not cases or not editors:
            raise RequestError("pick at least one editor and at least one edit")
        return cls(list(cases), [(name, dict(o)) for name, o in editors], seed, k, layer)

    @property
    def total(self) -> int:
        """Edits the job consists of (cases x editors)."""
        return len(self.cases) * len(self.editors)

    @property
    def pending(self) -> bool:
        """Edits are left and the job was not stopped."""
        return not self.stopped and len(self.records) < self.total

    def next_edit(self) -> tuple[str, dict, EditCase]:
        """(editor, overrides, case) of the next edit to run. Raises IndexError when none is left."""
        i = len(self.records)
        if i >= self.total:
            raise IndexError("the job is done")
        name, overrides = self.editors[i % len(self.editors)]
        return name, overrides, self.cases[i // len(self.editors)]

    def c_of(self, editor: str) -> float | None:
        """C that ``editor`` ran with in this job (its C field's override, else its registry default);
        None for an editor without an SSS term or not in the job."""
        spec = EDITORS.get(editor)
        overrides = dict(self.editors).get(editor)
        if spec is None or overrides is None or not spec.has_c:
            return None
        return float(getattr(editor_config(editor, **overrides), spec.c_field))

    def settings(self) -> dict[str, str]:
        """Editor -> the settings it runs with in this job, in words (``settings_text``), with the layer
        lambda_max before the edit was read at when it is not the last."""
        layer = "" if self.layer == -1 else f"; λ_max before read at layer {self.layer}"
        return {name: settings_text(name, overrides) + layer for name, overrides in self.editors}

    def frame(self) -> pd.DataFrame:
        """The finished edits as the bench's results frame (``store.results_frame``)."""
        return results_frame(self.records)


def _editor(job: HypothesisJob, name: str, overrides: dict):
    """The job's editor ``name`` (made once), with the job's seed where its config has one (as the bench)."""
    if name not in job._editors:
        fields = {f.name for f in dataclasses.fields(EDITORS[name].config_cls)}
        seed = {"seed": job.seed} if "seed" in fields else {}
        job._editors[name] = make_editor(name, **{**overrides, **seed})
    return job._editors[name]


def _with_layer(lm: LoadedModel, job: HypothesisJob, cases: Sequence[EditCase],
                measures: list[dict[str, float]]) -> list[dict[str, float]]:
    """``measures`` with lambda_max before the edit read at the job's layer (each request alone, on the
    unedited model: call under its lock), unless the layer is the last, which the runner's results carry."""
    if job.layer in (-1, n_hidden_states(lm.model) - 1):
        return measures
    return [{**m, "lambda_max_before": lambda_max(lm.model, lm.tok, [c.request.prompt], [c.request.target_new],
                                                  layer=job.layer).item()} for c, m in zip(cases, measures)]


def _record(outcome, measures: dict[str, float]) -> dict:
    """One results-file record: the outcome and the per-edit measures (NaN as None); a lambda_max read at
    another layer replaces the runner's before, and the after (read at the last layer) is left out."""
    record = {**outcome.to_json(), **{k: (None if not math.isfinite(v) else v) for k, v in measures.items()}}
    if "lambda_max_before" in measures:
        record["lambda_max_after"] = None
    return record


def run_next(lm: LoadedModel, job: HypothesisJob) -> dict:
    """Run the job's next edit with the bench's runner and measures; append and return its record.

    The measures (k-NN distance, target NLL) are taken under the model's lock before the edit, on
    the unedited model, as the bench takes them. A failed edit is a record with ``error`` set.
    """
    name, overrides, case = job.next_edit()
    start = time.perf_counter()
    if job._measures is None:
        job._measures = EditMeasures(lm.model, lm.tok, reference_prompts("world", job.cases), job.k)
    with model_lock(lm.model):
        measures = _with_layer(lm, job, [case], job._measures([case.request]))[0]
    outcome = next(single_edits(lm.model, lm.tok, _editor(job, name, overrides), [case], job.seed))
    record = _record(outcome, measures)
    job.records.append(record)
    job.seconds += time.perf_counter() - start
    return record


GROUP_MAX = 5  # cases per group at most: Stop, and other sessions' turns, come within a couple of seconds


def group_size(job: HypothesisJob) -> int:
    """Cases per ``run_group``: the smallest side-by-side batch of the job's editors (``EditorSpec.edit_batch``),
    at most ``GROUP_MAX``, so Stop and the other sessions' edits still come within a couple of seconds."""
    return max(1, min(GROUP_MAX, *(EDITORS[name].edit_batch for name, _ in job.editors)))


def run_group(lm: LoadedModel, job: HypothesisJob, cases: int | None = None) -> list[dict]:
    """Run every editor on the job's next ``cases`` cases (default ``group_size``), side by side; returns the
    new records, appended to ``job.records`` case by case, every editor on a case before the next case.

    Each editor's edits of the group are the bench's ``single_edits`` with ``edit_batch`` = the group
    (results equal to one at a time within float tolerance); the measures are taken on the unedited
    model first, as in ``run_next``. A job left mid-case by ``run_next`` is first brought to a case
    boundary with ``run_next``. Raises IndexError when no edit is left.
    """
    made: list[dict] = []
    while job.records and len(job.records) % len(job.editors) and job.pending:
        made.append(run_next(lm, job))
    if made:
        return made
    first = len(job.records) // len(job.editors)
    group = job.cases[first:first + (cases or group_size(job))]
    if not group:
        raise IndexError("the job is done")
    start = time.perf_counter()
    if job._measures is None:
        job._measures = EditMeasures(lm.model, lm.tok, reference_prompts("world", job.cases), job.k)
    with model_lock(lm.model):
        measures = _with_layer(lm, job, group, job._measures([c.request for c in group]))
    by_editor = [list(single_edits(lm.model, lm.tok, _editor(job, name, overrides), group, job.seed,
                                   edit_batch=len(group))) for name, overrides in job.editors]
    for i, m in enumerate(measures):
        for outcomes in by_editor:
            made.append(_record(outcomes[i], m))
    job.records += made
    job.seconds += time.perf_counter() - start
    return made


RUNNING_COLUMNS = {"reliability": "reliability", "generality": "generality", "locality": "locality",
                   "lambda_max_before": "λ_max before", "lambda_max_after": "λ_max after"}


def running_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Per editor, the edits finished so far and the means of their metrics (failed edits left out): the
    view shows it while a run goes on. Columns: editor, edits, then ``RUNNING_COLUMNS``' labels."""
    done = frame[frame["error"].isna()]
    table = done.groupby("editor", sort=False)[list(RUNNING_COLUMNS)].mean().round(4)
    table.insert(0, "edits", done.groupby("editor", sort=False).size())
    return table.rename(columns=RUNNING_COLUMNS).reset_index()


def readable_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a bench's results.jsonl or its report's cases.csv(.gz)."""
    path = Path(folder)
    return (path / RESULTS_FILE).is_file() or any((path / f).is_file() for f in CASES_FILES)


def read_folder(folder: str | Path) -> tuple[pd.DataFrame, str]:
    """A bench folder as the results frame, and which file it came from.

    ``results.jsonl`` (through ``store.BenchStore``) carries the stored per-edit measures;
    a report's ``cases.csv(.gz)`` (the committed docs/results folders) does not, so its frame has
    no ``knn_distance`` and ``target_nll`` columns and the pairs that need them are left out.
    Raises RequestError if the folder has neither, DataError for a corrupt results file.
    """
    path = Path(folder)
    if not path.is_dir():
        raise RequestError(f"{folder} is not a folder")
    store = BenchStore(path)
    if store.exists():
        return store.frame(), RESULTS_FILE
    for name in CASES_FILES:
        if (path / name).is_file():
            frame = pd.read_csv(path / name)
            frame["post"] = ""  # the report's table keeps no predictions; only the paired metric differences use it
            return frame, name
    raise RequestError(f"{folder} has no {RESULTS_FILE} and no cases.csv: give the --out folder of a bench run")


def hypothesis_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the hypothesis is measured on, as in the bench's report: single edits that did not fail,
    with ``locality_drop`` = 1 - locality (the damage to the neighbours)."""
    rows = frame[(frame["mode"] == "single") & frame["error"].isna()]
    return rows.assign(locality_drop=1.0 - rows["locality"])


def per_edit_rows(frame: pd.DataFrame, settings: dict[str, str] | None = None) -> pd.DataFrame:
    """The rows behind the view's statistics, one per single edit that finished (``hypothesis_rows``), with
    each editor's settings in words: what the per-edit CSV export holds, so a table can be recomputed."""
    rows = hypothesis_rows(frame).reset_index(drop=True)
    return rows.assign(settings=rows["editor"].map(settings or {}).fillna("")) if len(rows) else rows


def pair_label(c: Correlation) -> str:
    """"λ_max before ~ damage (1 − locality) | target NLL" for a correlation."""
    text = f"{MEASURE_LABELS.get(c.x, c.x)} ~ {MEASURE_LABELS.get(c.y, c.y)}"
    return text + (f" | {MEASURE_LABELS.get(c.control, c.control)}" if c.control else "")


def correlation_frame(corrs: Sequence[Correlation], settings: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per (editor, pair): rho, its bootstrap CI, p and p adjusted by Benjamini-Hochberg over the table,
    counts, the sign the paper predicts, the verdict, and (when some row repeats another editor's numbers, e.g.
    identical edits) which editor's test it repeats;
    with ``settings`` (editor -> the settings it ran with, in words) a last column says them."""
    repeats = any(c.same_as for c in corrs)
    columns = ["editor", "pair", "ρ (Spearman)", "CI low", "CI high", "p", "p (BH)", "edits", "prompts",
               "paper predicts", "verdict", *(["same test as"] if repeats else []),
               *(["settings"] if settings is not None else [])]
    return pd.DataFrame([{"editor": c.editor, "pair": pair_label(c), "ρ (Spearman)": c.rho, "CI low": c.lo,
                          "CI high": c.hi, "p": c.p, "p (BH)": c.p_adjusted, "edits": c.points, "prompts": c.clusters,
                          "paper predicts": PREDICTS[c.expected_sign], "verdict": c.verdict,
                          **({"same test as": c.same_as or ""} if repeats else {}),
                          **({"settings": settings.get(c.editor, "")} if settings is not None else {})}
                         for c in corrs], columns=columns)


def settings_text(editor: str, overrides: dict[str, Any]) -> str:
    """The settings an editor ran with, in words: C (and what it means) and every setting changed from its
    defaults ("defaults" when none is)."""
    spec = EDITORS[editor]
    config = editor_config(editor, **overrides)
    defaults = editor_config(editor)
    parts = []
    if spec.has_c:
        c = getattr(config, spec.c_field)
        parts.append(f"C = {c:g} ({'its checkpoint was trained at it' if spec.c_role == 'checkpoint' else 'loss weight'})")
    changed = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
               if f.name != spec.c_field and getattr(config, f.name) != getattr(defaults, f.name)}
    parts += [f"{k} = {v}" for k, v in sorted(changed.items())]
    return ", ".join(parts) if parts else "defaults"


def sss_effect_frame(frame: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """The paired effect of SSS (same seed and case, editor with SSS minus without) per metric, with the
    bench report's bootstrap 95% CI (``report.sss_effect_table``); empty when no pair ran both."""
    _, rows = sss_effect_table(frame, n_boot)
    out = pd.DataFrame(rows, columns=["table", "editor", "baseline", "metric", "mean_diff", "lo", "hi", "pairs"])
    return out.drop(columns="table").rename(columns={"editor": "with SSS", "baseline": "without SSS",
                                                     "mean_diff": "mean difference", "lo": "CI low",
                                                     "hi": "CI high", "pairs": "paired cases"})

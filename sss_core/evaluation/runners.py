"""Run editors over many cases: single edits with revert, sequential edits that accumulate,
batches written at once.

Each runner is a generator of ``Outcome`` (a key and an EditResult), so the caller can stream
results to disk as they are made and skip keys it already has. A failed edit (e.g. a NaN loss)
becomes an outcome with ``error`` set, not an exception: one bad case never stops a bench.

Example:
    >>> for out in single_edits(lm.model, lm.tok, make_editor("ft-l"), cases, seed=0):
    ...     print(out.key, out.result.metrics["reliability"])
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from dataclasses import dataclass, replace
from typing import Callable, Iterator, NamedTuple, Sequence

import torch
from torch import nn

from ..editors.base import Edit, EditBase, Editor, model_lock
from ..errors import SSSError
from ..locks import reads_model
from ..types import LOCALITY_GROUPS, EditCase, EditResult
from ..world.generate import Fact as WorldFact
from .metrics import edit_and_score, evaluate_edit, evaluate_edits, probes_of, teacher_forced
from .world_locality import world_locality

log = logging.getLogger(__name__)


class RunKey(NamedTuple):
    """What identifies one result in a bench's results file (resume skips keys it has)."""

    editor: str
    seed: int
    case_id: str
    mode: str  # "single", "sequential@10", "sequential@10/final", "sweep@C=0.9"


@dataclass(frozen=True)
class Outcome:
    """One case's result in a run, or its failure (``result`` None, ``error`` set)."""

    key: RunKey
    case: EditCase
    result: EditResult | None  # None when the edit failed
    error: str | None = None
    n: int | None = None  # sequential: how many edits the run accumulates
    position: int | None = None  # sequential: how many edits were applied when this was scored
    C: float | None = None  # sweep: the SSS weight
    checkpoint: str | None = None  # trained editors: the checkpoint that made the result (its C is the run's C)
    digest: str | None = None  # record.result_digest of the case's content and the editor's config
    world: dict | None = None  # single edits with world locality: WorldLocality.as_dict (compact)

    def to_json(self) -> dict:
        """One line of a results file: the key, the scores and every probe's raw predictions."""
        r, req = self.result, self.case.request
        row = {**self.key._asdict(), "n": self.n, "position": self.position, "C": self.C,
               "checkpoint": self.checkpoint, "digest": self.digest, "error": self.error, "relation": self.case.relation,
               "request": {"prompt": req.prompt, "target_new": req.target_new, "subject": req.subject,
                           "ground_truth": req.ground_truth}}
        if r is not None:
            row.update(metrics=r.metrics, lambda_max_before=r.lambda_max_before,
                       lambda_max_after=r.lambda_max_after, seconds=r.seconds,
                       extra={k: v for k, v in r.extra.items() if k != "history"},
                       probes=[{"group": p.probe.group, "prompt": p.probe.prompt, "answer": p.probe.answer,
                                "score": p.score, "target": p.target_tokens, "pre": p.pre_tokens,
                                "post": p.post_tokens} for p in r.probes])
        if self.world is not None:  # only lines of runs that asked for it carry these two fields
            row.update(world_locality=self.world["world_locality"], world_damage=self.world)
        return _json_safe(row)


Skip = Callable[[RunKey], bool]


def case_seed(seed: int, case_id: str) -> int:
    """The torch seed of one case: a function of (seed, case), so a resumed run draws the same."""
    return zlib.crc32(f"{seed}/{case_id}".encode())


def _json_safe(value):
    """NaN and infinities become null, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _never(_: RunKey) -> bool:
    """Skip nothing (the default of every runner's ``skip``)."""
    return False


# What a case's input can make an edit or its scoring raise: the project's user errors, and what
# torch raises for an input the checks did not foresee (an index past the context, a shape that
# does not fit). Either way the case is recorded as failed and the run goes on.
INPUT_ERRORS = (SSSError, IndexError, ValueError)


def _failed(key: RunKey, case: EditCase, exc: Exception, **kw) -> Outcome:
    """The failed outcome of one case: no result, ``error`` = "ExceptionType: message"."""
    log.warning("%s on %s failed: %s", key.editor, key.case_id, exc, exc_info=not isinstance(exc, SSSError))
    return Outcome(key, case, None, error=f"{type(exc).__name__}: {exc}", **kw)


WORLD_LISTED = 20  # damaged facts listed by name in a result line's world_damage (all are counted)


def single_edits(model: nn.Module, tok, editor: Editor, cases: Sequence[EditCase], seed: int,
                 mode: str = "single", skip: Skip = _never, with_lambda: bool = True,
                 C: float | None = None, world: Sequence[WorldFact] | None = None,
                 edit_batch: int = 1) -> Iterator[Outcome]:
    """Edit, evaluate and revert each case on its own (the paper's default protocol).

    ``edit_batch`` > 1 runs that many independent edits side by side (``edit_side_by_side``): the
    outcomes equal those of ``edit_batch`` = 1 within float tolerance, each result's ``seconds``
    is its share of the batch's editing time and ``extra["batch"]`` the batch's size (FT-L, ROME).
    The batches are ``cases[0:B]``, ``cases[B:2B]``, ...: for given cases and B the stored numbers
    are the same bits however often the run was interrupted and resumed.
    ``world``: facts to score before and after each edit (``world_locality``; the unedited model's
    reading is made once per model); each outcome then carries ``WorldLocality.as_dict`` with at
    most ``WORLD_LISTED`` damaged facts named. A world fact the model cannot read fails the case.
    """
    if edit_batch < 1:
        raise ValueError(f"edit_batch must be at least 1, got {edit_batch}")
    keyed = [(RunKey(editor.name, seed, c.request.case_id, mode), c) for c in cases]
    # groups are fixed by position in ``cases``, whatever ``skip`` says: a group with any case to do is made
    # whole (the others' outcomes are dropped), so a resumed run stores the very numbers an uninterrupted
    # one would (side by side, a batch's padding moves the last bits of lambda_max)
    for start in range(0, len(keyed), edit_batch):
        group = keyed[start:start + edit_batch]
        wanted = [not skip(key) for key, _ in group]
        if not any(wanted):
            continue
        with model_lock(model):  # released before yielding: the consumer may take its time
            made = (edit_side_by_side(model, tok, editor, [c for _, c in group], seed, with_lambda)
                    if len(group) > 1 else [_edit_one(model, tok, editor, group[0][1], seed, with_lambda)])
        for (key, case), res, want in zip(group, made, wanted):
            if want:
                yield _outcome(model, tok, key, case, res, C, world)


def _edit_one(model: nn.Module, tok, editor: Editor, case: EditCase, seed: int,
              with_lambda: bool) -> tuple[Edit, EditResult] | Exception:
    """``edit_and_score`` of one case with its seed, or the input error it raised."""
    try:
        return edit_and_score(model, tok, editor, case, case_seed(seed, case.request.case_id), with_lambda)
    except INPUT_ERRORS as exc:
        return exc


def _outcome(model: nn.Module, tok, key: RunKey, case: EditCase, made: tuple[Edit, EditResult] | Exception,
             C: float | None, world: Sequence[WorldFact] | None) -> Outcome:
    """The outcome of one scored edit (or of its error), with its world locality when ``world`` is given."""
    if isinstance(made, Exception):
        return _failed(key, case, made, C=C)
    edit, result = made
    try:
        scored = None if world is None else world_locality(model, tok, world, edit, case.request,
                                                           relation=case.relation)
    except INPUT_ERRORS as exc:
        return _failed(key, case, exc, C=C)
    return Outcome(key, case, result, C=C, world=None if scored is None else scored.as_dict(WORLD_LISTED))


def edit_side_by_side(model: nn.Module, tok, editor: Editor, cases: Sequence[EditCase], seed: int,
                      with_lambda: bool = True) -> list[tuple[Edit, EditResult] | Exception]:
    """Independent edits of ``cases`` made and scored together: (edit, result) or the error, per case.

    An editor with ``edit_each`` (FT-L) trains all edits in one batch, each on its own copy of the
    weights; the others edit one case at a time with the case's seed. The edits are scored together
    (``evaluate_edits``); if that batch raises an input error (a probe longer than the context),
    each case is scored alone so that only its own case fails. Hold the model's lock.
    """
    requests = [c.request for c in cases]
    start = time.perf_counter()
    if hasattr(editor, "edit_each"):
        made = editor.edit_each(model, tok, requests)
        share = (time.perf_counter() - start) / len(cases)
        seconds = [share] * len(cases)
    else:
        made, seconds = [], []
        for req in requests:
            torch.manual_seed(case_seed(seed, req.case_id))
            t0 = time.perf_counter()
            try:
                made.append(editor.edit(model, tok, [req]))
            except INPUT_ERRORS as exc:
                made.append(exc)
            seconds.append(time.perf_counter() - t0)
    ok = [i for i, m in enumerate(made) if not isinstance(m, Exception)]
    try:
        results = evaluate_edits(model, tok, [cases[i] for i in ok], [made[i] for i in ok], editor.name,
                                 [seconds[i] for i in ok], with_lambda)
    except INPUT_ERRORS:
        results = []
        for i in ok:
            try:
                results.append(evaluate_edit(model, tok, cases[i], made[i], editor.name, seconds[i], with_lambda))
            except INPUT_ERRORS as exc:
                results.append(exc)
    out: list = list(made)
    for i, res in zip(ok, results):
        out[i] = res if isinstance(res, Exception) else (made[i], res)
    return out


class HeldEdit(EditBase):
    """An Edit that is already applied and stays so: lets ``evaluate_edit`` score the current model."""

    def _apply(self) -> None:
        """Nothing to do: the model already carries the edits."""

    def _revert(self) -> None:
        """Nothing to do: the edits stay."""


class Fact(NamedTuple):
    """What an edit writes, for telling whether a later edit re-edits it: the prompt, and the subject and
    relation where they are known (None where not)."""

    prompt: str
    subject: str | None = None
    relation: str | None = None


def fact_of(case: EditCase) -> Fact:
    """The fact that ``case``'s edit writes."""
    return Fact(case.request.prompt, case.request.subject, case.relation)


def superseded_by(facts: Sequence[Fact]) -> list[int | None]:
    """For each edit of a sequence, the index of the first later edit of the same fact, or None.

    Two edits write the same fact when their prompts are equal (leading and trailing spaces aside),
    or when both know their subject and relation and these are equal. An edit that a later one
    re-edits is superseded: its own target is no longer meant to hold, so a retention score over
    earlier edits leaves it out.
    """
    out: list[int | None] = [None] * len(facts)
    nearest: dict[tuple, int] = {}  # a fact's key -> the nearest later index with it
    for i in range(len(facts) - 1, -1, -1):
        keys = [("prompt", facts[i].prompt.strip())]
        if facts[i].subject and facts[i].subject.strip() and facts[i].relation:
            keys.append(("subject+relation", facts[i].subject.strip(), facts[i].relation))
        later = [nearest[k] for k in keys if k in nearest]
        out[i] = min(later) if later else None
        nearest.update((k, i) for k in keys)
    return out


# Metrics a superseded edit keeps in its final score: those that compare with the unedited model's
# predictions (locality); the others measure its own target, which a later edit replaced.
_KEPT_WHEN_SUPERSEDED = frozenset(("locality", *LOCALITY_GROUPS))


def _superseded(result: EditResult, by: str | None) -> EditResult:
    """The final score of an edit that the later case ``by`` re-edited: its own-target metrics NaN (left
    out of the means), locality kept, ``extra["superseded_by"]`` naming the later case."""
    metrics = {k: (v if k in _KEPT_WHEN_SUPERSEDED else math.nan) for k, v in result.metrics.items()}
    return replace(result, metrics=metrics, extra={**result.extra, "superseded_by": by})


def sequential_edits(model: nn.Module, tok, editor: Editor, cases: Sequence[EditCase], seed: int,
                     skip: Skip = _never, with_lambda: bool = True) -> Iterator[Outcome]:
    """Apply the cases' edits one after another, keeping each (paper Table 2).

    Each case is scored right after its edit is applied (mode ``sequential@n``), against the
    predictions of the original model; once all n are applied, every case is scored again
    (``sequential@n/final``, EasyEdit's protocol: did later edits undo earlier ones?). An edit whose
    fact a later applied edit of the run re-edits (``superseded_by``: same prompt, or same subject and
    relation) is superseded: its final outcome keeps its raw predictions and locality, its own-target
    metrics (reliability, generality, portability) are NaN so the final table's means leave it out,
    and ``extra["superseded_by"]`` names the later case. At the end every edit is reverted, newest
    first, so the model is bit-identical to what it was.
    A run whose keys are all in ``skip`` is not run at all; a partly done run is redone whole
    (edits accumulate, so it cannot start in the middle) and only the missing keys are yielded.
    """
    name = editor.name
    n = len(cases)
    keys = [RunKey(name, seed, c.request.case_id, f"sequential@{n}") for c in cases]
    finals = [k._replace(mode=f"{k.mode}/final") for k in keys]
    if all(skip(k) for k in keys + finals):
        return
    pres = _predictions_by_case(model, tok, cases)  # the original model's predictions
    applied: list[Edit] = []
    done: list[int] = []  # indices of the cases whose edit was applied
    with model_lock(model):
        try:
            for position, (case, key, pre) in enumerate(zip(cases, keys, pres), start=1):
                if isinstance(pre, Exception):  # its probes cannot be read: not edited, one failed case
                    if not skip(key):
                        yield _failed(key, case, pre, n=n, position=position)
                    continue
                try:
                    # always the base model: weight edits change it in place, memory editors (SERAC)
                    # keep one memory per base model, so either way edit k sees edits 1..k-1
                    edit, result = edit_and_score(model, tok, editor, case, case_seed(seed, key.case_id),
                                                  with_lambda, pre=pre)
                except INPUT_ERRORS as exc:
                    if not skip(key):
                        yield _failed(key, case, exc, n=n, position=position)
                    continue
                edit.apply()  # evaluate_edit reverted it; keep it for the edits that follow
                applied.append(edit)
                done.append(position - 1)
                if not skip(key):
                    yield Outcome(key, case, result, n=n, position=position)
            final_model = applied[-1].model if applied else model
            later = dict(zip(done, superseded_by([fact_of(cases[i]) for i in done])))
            for i, (case, key, pre) in enumerate(zip(cases, finals, pres)):
                if skip(key):
                    continue
                try:
                    if isinstance(pre, Exception):
                        raise pre
                    result = evaluate_edit(final_model, tok, case, HeldEdit(final_model), name,
                                           with_lambda=False, pre=pre)
                    if later.get(i) is not None:
                        result = _superseded(result, cases[done[later[i]]].request.case_id)
                except INPUT_ERRORS as exc:
                    yield _failed(key, case, exc, n=n, position=n)
                    continue
                yield Outcome(key, case, result, n=n, position=n)
        finally:
            for edit in reversed(applied):
                edit.revert()


def batch_edits(model: nn.Module, tok, editor: Editor, cases: Sequence[EditCase], seed: int,
                skip: Skip = _never) -> Iterator[Outcome]:
    """Write all the cases' edits in one ``editor.edit`` call (MEMIT's mass editing) and score each
    case with the whole batch applied, against the original model's predictions; then revert.

    Mode ``batch@n``. Each result's ``seconds`` is the batch's edit time divided by n (its share);
    lambda_max is not measured (the model seen before each case's edit is the unedited one, the
    after is shared by the batch). A case whose probes cannot be read (e.g. longer than the
    model's context) is left out of the batch and recorded as failed; a failed batch yields a
    failed outcome for every case in it.
    """
    name = editor.name
    n = len(cases)
    keys = [RunKey(name, seed, c.request.case_id, f"batch@{n}") for c in cases]
    if all(skip(k) for k in keys):
        return
    pres = _predictions_by_case(model, tok, cases)
    for case, key, pre in zip(cases, keys, pres):
        if isinstance(pre, Exception) and not skip(key):
            yield _failed(key, case, pre, n=n)
    todo = [(case, key, pre) for case, key, pre in zip(cases, keys, pres) if not isinstance(pre, Exception)]
    if not todo:
        return
    torch.manual_seed(case_seed(seed, keys[0].case_id))
    with model_lock(model):
        try:
            start = time.perf_counter()
            edit = editor.edit(model, tok, [case.request for case, _, _ in todo])
            seconds = time.perf_counter() - start
        except INPUT_ERRORS as exc:
            for case, key, _ in todo:
                if not skip(key):
                    yield _failed(key, case, exc, n=n)
            return
        with edit:
            for case, key, pre in todo:
                if skip(key):
                    continue
                try:
                    result = evaluate_edit(edit.model, tok, case, HeldEdit(edit.model), name, seconds / len(todo),
                                           with_lambda=False, pre=pre)
                except INPUT_ERRORS as exc:
                    yield _failed(key, case, exc, n=n)
                    continue
                yield Outcome(key, case, result, n=n)


@reads_model
def _predictions_by_case(model: nn.Module, tok, cases: Sequence[EditCase]) -> list:
    """Teacher-forced predictions of every case's probes, in one batched pass, split per case.

    When the batch cannot be read (a case's probe is longer than the model's context, ...), each
    case is read on its own: the failing ones get the exception instead of their predictions.
    """
    probes = [probes_of(c) for c in cases]
    try:
        flat = teacher_forced(model, tok, [p.prompt for ps in probes for p in ps],
                              [p.answer for ps in probes for p in ps])
    except INPUT_ERRORS:
        out = []
        for ps in probes:
            try:
                out.append(teacher_forced(model, tok, [p.prompt for p in ps], [p.answer for p in ps]))
            except INPUT_ERRORS as exc:
                out.append(exc)
        return out
    out, start = [], 0
    for ps in probes:
        out.append(flat[start:start + len(ps)])
        start += len(ps)
    return out


__all__ = ["Fact", "HeldEdit", "Outcome", "RunKey", "batch_edits", "case_seed", "fact_of", "sequential_edits",
           "single_edits", "superseded_by"]

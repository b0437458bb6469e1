"""One edit analysed: what the app shows for an edit, with no user interface in it.

``analyse_edit`` edits the model under its lock, measures everything the app's Edit and
Projection views show (probabilities, top-1 predictions, lambda_max, embeddings before and after,
sparsity per sentence, the weight delta, the optimisation trajectory) and reverts the edit in
``finally``: no other user of a shared model ever sees it edited. ``sweep_c`` repeats one edit over
several values of C; ``sequential_step`` stacks edits.

What an ``EditRun`` keeps beyond the probe table and the metrics:

- ``sparsity``: one ``sparsity.SentenceSparsity`` per sentence of the neighbourhood (probes, then
  background): lambda_max against the unedited model's top answer, the kNN distance in the full
  embedding space (``knn``: k, cosine / euclidean, pooling) and P(answer), before and after;
  ``edit_lambda``: the edit prompt's lambda_max against the new and against the old target.
  ``run.with_knn(k, metric, pooling)`` measures the kNN distances again without the model.
- ``weight_deltas``: parameter -> the flattened change (new - base), float32 on the CPU, for edits
  that change weights (FT-L, ROME, MEMIT, MEND); None for SERAC, whose edit is a memory beside
  the model. Memory: 4 bytes per edited weight, e.g. 1 MiB for one MLP projection of the default
  model (256 x 1024), about 9 MiB per GPT-2 small (768 x 3072) projection. ``delta_cosine(a, b)``
  is the cosine between two runs' deltas per parameter; ``same_weight_edit(a, b)`` says whether
  they are the same change.
- ``trajectory``: the editor's optimisation per step (``edit.info["history"]``), as dicts
  ``{"step", "loss", "sss"}``: FT-L's edit loss (mean target NLL, nats) and its SSS term
  (lambda_max of the edit, NaN when C = 0). ROME and MEMIT record only their final NLL and delta
  norms (in ``result.extra``), MEND and SERAC no steps: their trajectory is ().

C, the weight of the SSS term in ``L_all = (1 - C) * L + C * SSS`` (paper Eq. 10), is the config
field that the editor's registry entry names (``EDITORS[name].c_field``; None: no SSS term).

Example:
    >>> from sss_core import EditRequest, analyse_edit, case_for_request, load_model
    >>> lm = load_model()
    >>> request = EditRequest("The capital of France is", "Rome", subject="France")
    >>> run = analyse_edit(lm, "ft-l+sss", {"sss_c": 0.9}, case_for_request(request, lm=lm))
    >>> run.rows[0].top1_after, run.result.lambda_max_after
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
from torch import nn

from .editors import EDITORS, editor_config, kept_editor, make_editor
from .editors.base import Edit, Editor, WeightEdit, model_lock
from .embeddings import POOLINGS, nearest_neighbours, sentence_states
from .errors import RequestError
from .evaluation.metrics import (TokenPrediction, answer_probability, edit_and_score, probes_of, request_warnings,
                                 teacher_forced, top_k)
from .evaluation.presets import default_world, greedy_answer, presets
from .evaluation.world_locality import WorldLocality, world_locality
from .evaluation.runners import Fact, superseded_by
from .models import LoadedModel
from .record import N_BACKGROUND, AnalysisOptions, RunRecord, check_model, make_record
from .sparsity import (EditLambda, KnnSettings, SentenceSparsity, answer_rows, lambda_and_probability,
                       sentence_sparsity)
from .sparsity import with_knn as remeasure_knn
from .sss import TokenLambda, lambda_max_tokens
from .text import joined_text, max_positions, n_tokens, target_ids
from .types import LOCALITY_GROUPS, EditCase, EditRequest, EditResult, Probe

Progress = Callable[[str], None]

WORLD_FACTS_LISTED = 20  # damaged world facts named in a run's JSON (all are counted)

# Groups whose top-1 prediction should become the new target; in LOCALITY_GROUPS it should stay.
REWRITE_GROUPS = ("rewrite", "paraphrase", "subject_replace")
GROUP_LABELS = {"rewrite": "edit prompt", "paraphrase": "paraphrase", "neighbour": "neighbour",
                "pre_neighbour": "pre-neighbour", "post_neighbour": "post-neighbour",
                "distract_neighbour": "distract-neighbour", "unrelated_attribute": "unrelated attribute",
                "subject_replace": "subject alias", "reversed_relation": "reversed relation",
                "one_hop": "one-hop", "background": "background (other facts)"}


def _noop(_: str) -> None:
    """A progress callback that shows nothing."""


def c_field(editor: str) -> str | None:
    """The config field of ``editor`` that holds C (``EDITORS[editor].c_field``); None: it has no SSS term.

    Raises RequestError for a name that is not in EDITORS.
    """
    if editor not in EDITORS:
        raise RequestError(f"unknown editor {editor!r}; choose one of: {', '.join(EDITORS)}")
    return EDITORS[editor].c_field


@dataclass(frozen=True)
class ProbeRow:
    """One line of the probability table: a probe's old and new answer, before and after the edit."""

    group: str
    prompt: str
    old: str | None  # the answer before the edit (None when unknown, e.g. reversed relations)
    new: str  # the answer a perfect edit gives (locality groups: the edit's new target, which should not rise)
    p_old_before: float
    p_old_after: float
    p_new_before: float
    p_new_after: float
    top1_before: str
    top1_after: str
    score: float  # the EasyEdit metric of this probe (accuracy, or locality agreement)

    @property
    def flipped(self) -> bool:
        """Did the most likely next token change?"""
        return self.top1_before != self.top1_after

    @property
    def wanted_flip(self) -> bool | None:
        """True where a flip is the goal, False where it is damage, None where it depends."""
        if self.group in REWRITE_GROUPS:
            return True
        if self.group in LOCALITY_GROUPS:
            return False
        return None

    def as_dict(self) -> dict[str, Any]:
        """The row as a flat dict, with ``flipped`` and the changes of P(new) and P(old) added."""
        d = dataclasses.asdict(self)
        d.update(flipped=self.flipped, delta_p_new=self.p_new_after - self.p_new_before,
                 delta_p_old=(self.p_old_after - self.p_old_before) if self.old is not None else math.nan)
        return d


@dataclass(frozen=True)
class EmbeddingSet:
    """The sentences around an edit, embedded before and after it (one pooling)."""

    sentences: tuple[str, ...]
    groups: tuple[str, ...]
    before: np.ndarray  # (n, d_model)
    after: np.ndarray  # (n, d_model)
    top1_before: tuple[str, ...]  # next-token prediction (with its probability) per sentence
    top1_after: tuple[str, ...]
    pooling: str

    @property
    def moved(self) -> np.ndarray:
        """Distance each sentence moved in the full space. (n,)"""
        return np.linalg.norm(self.after.astype(np.float64) - self.before.astype(np.float64), axis=1)


@dataclass(frozen=True)
class EditRun:
    """Everything one edit in the app produced; the model itself was reverted."""

    run_id: str
    model_name: str
    editor: str
    config: dict[str, Any]
    case: EditCase
    result: EditResult
    rows: tuple[ProbeRow, ...]
    delta_norms: dict[str, float] | None  # parameter -> Frobenius norm of the change (weight edits)
    embeddings: dict[str, EmbeddingSet] = field(default_factory=dict)  # pooling -> set
    warnings: tuple[str, ...] = ()
    seconds_edit: float = math.nan
    seconds_total: float = math.nan
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    sparsity: tuple[SentenceSparsity, ...] = ()  # per sentence, in the order of the EmbeddingSet's sentences
    edit_lambda: EditLambda | None = None  # the edit prompt against the new and the old target
    knn: KnnSettings = KnnSettings()  # how sparsity's kNN distances were measured
    # parameter -> flattened (new - base), float32 on the CPU; None when the edit changes no weight
    weight_deltas: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)
    trajectory: tuple[dict[str, float], ...] = ()  # per optimisation step: {"step", "loss", "sss"}
    top_k_before: tuple[tuple[str, float], ...] = ()  # the edit prompt's top-k next tokens (when asked for)
    top_k_after: tuple[tuple[str, float], ...] = ()
    record: RunRecord | None = field(default=None, compare=False)  # what made this run (run_record replays it)
    world: WorldLocality | None = field(default=None, compare=False)  # every world fact before/after (when asked)
    # the edit prompt's lambda_max against the new target split over its tokens, before and after the edit
    token_lambda: tuple[TokenLambda, TokenLambda] | None = field(default=None, compare=False)

    @property
    def c(self) -> float | None:
        """C of the run (the editor's C field in its config); None for an editor without an SSS term."""
        spec = EDITORS.get(self.editor)
        return self.config.get(spec.c_field) if spec is not None and spec.c_field else None

    def sparsity_of(self, sentence: str) -> SentenceSparsity | None:
        """The sparsity record of ``sentence`` (a probe's prompt or a background sentence), or None."""
        return next((s for s in self.sparsity if s.sentence == sentence), None)

    def with_knn(self, k: int | None = None, metric: str | None = None, pooling: str | None = None) -> EditRun:
        """This run with its sparsity's kNN distances measured again (no model needed); None keeps a setting.

        Raises RequestError for a bad k or metric, or a pooling the run has no embeddings of.
        """
        knn = KnnSettings(self.knn.k if k is None else k, metric or self.knn.metric,
                          pooling or self.knn.pooling).validate()
        if not self.sparsity:
            return dataclasses.replace(self, knn=knn)
        if knn.pooling not in self.embeddings:
            raise RequestError(f"this run has no {knn.pooling!r} embeddings; choose one of {', '.join(self.embeddings)}")
        emb = self.embeddings[knn.pooling]
        return dataclasses.replace(self, knn=knn, sparsity=remeasure_knn(self.sparsity, emb.before, emb.after, knn))

    def token_lambda_dict(self) -> dict[str, Any] | None:
        """The edit prompt's lambda_max split over its tokens, ``{"before": ..., "after": ...}``
        (``TokenLambda.as_dict``), as ``edit --json`` and the app's JSON export write it; None when not measured."""
        if self.token_lambda is None:
            return None
        return {"before": self.token_lambda[0].as_dict(), "after": self.token_lambda[1].as_dict()}

    def to_json_dict(self) -> dict[str, Any]:
        """Config and results, JSON-ready (embeddings and weight deltas left out: they are large).

        Each probe carries its sentence's ``lambda_max_before/after`` (against the unedited
        model's top answer) and ``knn_distance_before/after``; ``sparsity`` lists every sentence,
        background included; ``edit_lambda`` the edit prompt against the new and the old target.
        """
        res = self.result

        def probe(row: ProbeRow) -> dict[str, Any]:
            s = self.sparsity_of(row.prompt)
            return {**row.as_dict(), **(s.probe_fields() if s is not None else {})}

        record = self.record.to_dict() if self.record is not None else None
        return {
            "record": record,  # everything that made this run: `sss-lab edit --from FILE` replays it
            "lambda_max_tokens": self.token_lambda_dict(),
            "command": {"replay": self.record.command("FILE") if record else None,
                        "equivalent": self.record.command() if record else None,
                        "equivalent_note": self.record.command_note() if record else None},
            "config": {"model": self.model_name, "editor": self.editor, "settings": self.config,
                       "c": record["c"] if record else None, "c_means": record["c_means"] if record else None,
                       "request": dataclasses.asdict(self.case.request)},
            "results": {"metrics": res.metrics, "lambda_max_before": res.lambda_max_before,
                        "lambda_max_after": res.lambda_max_after, "seconds_edit": self.seconds_edit,
                        "seconds_total": self.seconds_total, "timings": self.timings, "delta_norms": self.delta_norms,
                        "warnings": list(self.warnings), "extra": res.extra,
                        "current_answer_notice": current_answer_notice(self),
                        "world_locality": self.world.as_dict(max_facts=WORLD_FACTS_LISTED) if self.world else None,
                        "probes": [probe(r) for r in self.rows],
                        "edit_lambda": self.edit_lambda.as_dict() if self.edit_lambda else None,
                        "knn": dataclasses.asdict(self.knn),
                        "sparsity": [s.as_dict() for s in self.sparsity],
                        "trajectory": list(self.trajectory),
                        "teacher_forced": [{"group": r.probe.group, "prompt": r.probe.prompt, "answer": r.probe.answer,
                                            "score": r.score, "target_tokens": r.target_tokens,
                                            "pre_tokens": r.pre_tokens, "post_tokens": r.post_tokens}
                                           for r in res.probes]},
        }


# --- small measurements ---------------------------------------------------------------------------

def _probabilities(model: nn.Module, tok, prompts: Sequence[str],
                   answers: Sequence[tuple[str | None, str]]) -> tuple[list[float], list[float]]:
    """P(old) and P(new) for each probe, in one batch (NaN where the old answer is unknown)."""
    pairs = [(i, p, a) for k in (0, 1) for i, (p, ans) in enumerate(zip(prompts, answers)) if (a := ans[k])]
    probs = answer_probability(model, tok, [p for _, p, _ in pairs], [a for _, _, a in pairs]) if pairs else []
    old, new = [math.nan] * len(prompts), [math.nan] * len(prompts)
    n_old = sum(1 for ans in answers if ans[0])
    for j, ((i, _, _), q) in enumerate(zip(pairs, probs)):
        (old if j < n_old else new)[i] = float(q)
    return old, new


def old_and_new(probe: Probe, request: EditRequest, old_answer: str | None) -> tuple[str | None, str]:
    """The (old, new) answers shown for a probe, see ProbeRow."""
    if probe.group in REWRITE_GROUPS:
        return old_answer, request.target_new
    if probe.group in LOCALITY_GROUPS:
        return probe.answer, request.target_new
    return None, probe.answer  # portability: only the answer the edit should imply is known


def _check_lengths(lm: LoadedModel, texts: Sequence[str]) -> None:
    """Raise RequestError if a text (with a few tokens of margin) is longer than the model's context."""
    limit = max_positions(lm.model)
    if limit is None:
        return
    for t in texts:
        n = n_tokens(lm.tok, t)
        if n + 8 > limit:
            raise RequestError(f"{t[:50]!r}... has {n} tokens; the model reads at most {limit} "
                               "(prompt and answer together): shorten it")


def _sentences(case: EditCase, probes: Sequence[Probe], background: Sequence[str]) -> tuple[list[str], list[str]]:
    """The distinct prompts to embed (probes first, then ``background``) and the group of each."""
    sentences, groups, seen = [], [], set()
    for p in probes:
        if p.prompt not in seen:
            seen.add(p.prompt)
            sentences.append(p.prompt)
            groups.append(p.group)
    for s in background:
        if s not in seen:
            seen.add(s)
            sentences.append(s)
            groups.append("background")
    return sentences, groups


@functools.lru_cache(maxsize=8)  # read twice per edit (the record's check and the pipeline), 12 ms each
def background_sentences(n: int = N_BACKGROUND) -> tuple[str, ...]:
    """Prompts of ``n`` world facts (the validation split) to embed around an edit as its background."""
    return tuple(c.request.prompt for c in presets("validation", n)) if n > 0 else ()


def weight_deltas(edit: Edit) -> dict[str, np.ndarray] | None:
    """Parameter -> flattened (new - base) as float32 on the CPU, for an edit of weights; None otherwise.

    Memory: 4 bytes per edited weight (see the module's docstring).
    """
    if not isinstance(edit, WeightEdit):
        return None
    return {n: (edit.new[n].detach().float() - edit.base[n].detach().float()).flatten().cpu().numpy()
            for n in edit.new}


def trajectory_of(edit: Edit) -> tuple[dict[str, float], ...]:
    """The editor's optimisation per step, ``{"step", **edit.info["history"][step]}``; () when it records none."""
    return tuple({"step": i, **{k: float(v) for k, v in h.items()}}
                 for i, h in enumerate(edit.info.get("history") or ()))


# --- the edit ---------------------------------------------------------------------------------------

def analyse_edit(lm: LoadedModel, editor: str, overrides: Mapping[str, Any], case: EditCase,
                 background: Sequence[str] = (), poolings: Sequence[str] = POOLINGS,
                 progress: Progress | None = None, with_embeddings: bool = True,
                 knn: KnnSettings = KnnSettings(), top_k_tokens: int = 0, seed: int = 0,
                 probes_from: str = "record", world: bool = False, typed_probes: int = 0) -> EditRun:
    """Edit, measure and revert: ``run_record`` of the record these arguments describe.

    ``background``: sentences embedded around the edit (``background_sentences(n)`` is recorded as
    n world facts). With ``with_embeddings`` (the default) it embeds the probes and ``background``
    and measures the sparsity of each sentence (``sparsity.SentenceSparsity``, kNN distances as
    ``knn`` says); without, ``embeddings`` and ``sparsity`` are empty (the C sweep and sequential
    steps). ``top_k_tokens`` > 0 also keeps the edit prompt's top-k next tokens before and after.
    Errors a user can cause raise SSSError subclasses with a message saying what to do (also a
    ``knn`` whose pooling is not among ``poolings``, and a trained editor's C no checkpoint has).
    ``world``: also read every fact of the built-in world before and after (``EditRun.world``, a few seconds).
    ``probes_from`` and ``typed_probes`` say where the case's probes came from, for the record's command.
    """
    knn = knn.validate()
    n = len(background)
    shown = n if n and tuple(background) == background_sentences(n) else tuple(background)
    options = AnalysisOptions(shown if with_embeddings else 0, knn.k, knn.metric, knn.pooling, top_k_tokens,
                              with_embeddings, tuple(poolings), world)
    record = make_record(editor, overrides, case, lm=lm, analysis=options, seed=seed, probes_from=probes_from,
                         typed_probes=typed_probes)
    return run_record(lm, record, progress)


@dataclass
class _Before:
    """What is measured on the unedited model, for ``run_record``."""

    old_answer: str
    answers: list[tuple[str | None, str]]
    warnings: tuple[str, ...]
    p_old: list[float]
    p_new: list[float]
    states: Any  # embeddings.SentenceStates
    pre: list[TokenPrediction]
    top_k: list[tuple[str, float]]
    lam_rows: list
    lam: Any  # sparsity.lambda_and_probability's (lambda_max, P(answer)) of lam_rows


def _measure_before(lm: LoadedModel, record: RunRecord, probes: Sequence[Probe], sentences: Sequence[str]) -> _Before:
    """Probabilities, embeddings, teacher-forced predictions and lambda_max of the unedited model."""
    model, tok, request, options = lm.model, lm.tok, record.case.request, record.analysis
    prompts = [p.prompt for p in probes]
    old_answer = request.ground_truth or greedy_answer(lm, request.prompt)
    answers = [old_and_new(p, request, old_answer) for p in probes]
    p_old, p_new = _probabilities(model, tok, prompts, answers)
    states = sentence_states(model, tok, sentences, options.poolings if options.embeddings else ())
    pre = teacher_forced(model, tok, prompts, [p.answer for p in probes])
    k_before = top_k(model, tok, request.prompt, options.top_k) if options.top_k > 0 else []
    # one batch: each sentence against its top answer (with embeddings), then the edit prompt
    # against the old target; the new target's lambda_max comes with the metrics
    lam_rows = answer_rows(tok, sentences, states.next_token_ids) if options.embeddings else []
    lam_rows.append(target_ids(tok, request.prompt, old_answer))
    return _Before(old_answer, answers, tuple(request_warnings(model, tok, request)), p_old, p_new, states, pre,
                   k_before, lam_rows, lambda_and_probability(model, tok, lam_rows))


def _background(options: AnalysisOptions) -> Sequence[str]:
    """The background sentences a record's analysis options name."""
    if not options.embeddings:
        return ()
    return background_sentences(options.background) if isinstance(options.background, int) else options.background


def run_record(lm: LoadedModel, record: RunRecord, progress: Progress | None = None) -> EditRun:
    """The one pipeline: edit as ``record`` says, measure, revert. Holds the model's lock from the
    first measurement to the revert, so no other user of a shared model ever sees it edited.

    ``progress`` is called with a short message at each stage (the app shows them in st.status).
    Raises RequestError when ``lm`` is not the record's model (fingerprint), for a record whose kNN
    pooling is not among its poolings, and SSSError subclasses for what the edit itself refuses.
    """
    progress, options = progress or _noop, record.analysis
    knn = KnnSettings(options.k, options.metric, options.pooling).validate()
    if options.embeddings and knn.pooling not in options.poolings:
        raise RequestError(f"the kNN distance is measured on {knn.pooling!r} embeddings, which are not among "
                           f"the poolings asked for ({', '.join(options.poolings)})")
    check_model(record, lm)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    mark = [start]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        timings[stage] = round(now - mark[0], 4)
        mark[0] = now

    request = record.case.request.validate()
    editor = kept_editor(lm.model, record.editor, record.settings)  # built once per model and settings
    editor.name = record.editor  # the registry entry's name (the results name their editor by it)
    probes = probes_of(record.case)
    _check_lengths(lm, [joined_text(p.prompt, p.answer) for p in probes])
    model, tok = lm.model, lm.tok
    sentences, groups = _sentences(record.case, probes, _background(options))
    with model_lock(model):
        progress("Reading the model's predictions before the edit")
        before = _measure_before(lm, record, probes, sentences)
        tokens_before = lambda_max_tokens(model, tok, request.prompt, request.target_new)
        lap("before")
        progress(f"Editing with {record.editor}, then scoring it (metrics and lambda_max)")
        edit, result = edit_and_score(model, tok, editor, record.case, record.seed, pre=before.pre)
        seconds_edit = result.seconds
        lap("edit and score")
        world = None
        if options.world_locality:
            progress("Reading every fact of the world before and after the edit (world locality)")
            world = world_locality(model, tok, default_world().facts, edit, request, relation=record.case.relation)
            lap("world locality")
        progress("Reading predictions and embeddings after the edit")
        with edit:  # applied here, reverted on the way out whatever happens
            edited = edit.model
            p_old_after, p_new_after = _probabilities(edited, tok, [p.prompt for p in probes], before.answers)
            after = sentence_states(edited, tok, sentences, options.poolings if options.embeddings else ())
            k_after = top_k(edited, tok, request.prompt, options.top_k) if options.top_k > 0 else []
            lam_after = lambda_and_probability(edited, tok, before.lam_rows)
            tokens_after = lambda_max_tokens(edited, tok, request.prompt, request.target_new)
        lap("after")
    run = _assemble(lm, record, probes, sentences, groups, before, (p_old_after, p_new_after, after, k_after, lam_after),
                    edit, result, knn, seconds_edit, time.perf_counter() - start, timings)
    return dataclasses.replace(run, world=world, token_lambda=(tokens_before, tokens_after))


def _assemble(lm: LoadedModel, record: RunRecord, probes, sentences, groups, before: _Before, after_parts,
              edit: Edit, result: EditResult, knn: KnnSettings, seconds_edit: float, seconds_total: float,
              timings: dict[str, float]) -> EditRun:
    """The EditRun of ``run_record``'s measurements."""
    p_old_after, p_new_after, after, k_after, lam_after = after_parts
    request, lam_before = record.case.request, before.lam
    top_before = [(lm.tok.decode([int(t)]), float(q))
                  for t, q in zip(before.states.next_token_ids, before.states.next_token_probs)]
    top_after = [(lm.tok.decode([int(t)]), float(q)) for t, q in zip(after.next_token_ids, after.next_token_probs)]
    top_of = {s: i for i, s in enumerate(sentences)}
    rows = tuple(ProbeRow(p.group, p.prompt, a[0], a[1], before.p_old[i], p_old_after[i], before.p_new[i],
                          p_new_after[i], top_before[top_of[p.prompt]][0], top_after[top_of[p.prompt]][0],
                          result.probes[i].score)
                 for i, (p, a) in enumerate(zip(probes, before.answers)))
    fmt = tuple(f"{t!r} ({q:.2f})" for t, q in top_before)
    fmt_after = tuple(f"{t!r} ({q:.2f})" for t, q in top_after)
    embeddings = {p: EmbeddingSet(tuple(sentences), tuple(groups), before.states.pooled[p], after.pooled[p], fmt,
                                  fmt_after, p) for p in before.states.pooled}
    edit_lambda = EditLambda(request.target_new, before.old_answer, result.lambda_max_before, result.lambda_max_after,
                             float(lam_before[0][-1]), float(lam_after[0][-1]))
    sparsity: tuple[SentenceSparsity, ...] = ()
    if record.analysis.embeddings:
        n = len(sentences)
        sparsity = sentence_sparsity(sentences, groups, [t for t, _ in top_before], [t for t, _ in top_after],
                                     (lam_before[0][:n], lam_before[1][:n]), (lam_after[0][:n], lam_after[1][:n]),
                                     before.states.pooled[knn.pooling], after.pooled[knn.pooling], knn)
    return EditRun(uuid.uuid4().hex[:12], lm.name, record.editor, dict(record.settings), record.case, result, rows,
                   edit.delta_norms() or None, embeddings, before.warnings, seconds_edit, seconds_total, timings,
                   sparsity, edit_lambda, knn, weight_deltas(edit), trajectory_of(edit), tuple(before.top_k),
                   tuple(k_after), record)


def delta_cosine(run_a: EditRun, run_b: EditRun) -> dict[str, float]:
    """Cosine between the two runs' weight deltas, per edited parameter (float64 arithmetic).

    Every parameter either run edited is a key; its value is NaN where only one run changed it
    (or their shapes differ, e.g. runs on different models), where either delta is zero, or when
    either run is not a weight edit (SERAC: ``weight_deltas`` is None). {} when neither is.
    1.0 means the same direction of change (e.g. the SSS term did not turn the update).
    """
    a, b = run_a.weight_deltas or {}, run_b.weight_deltas or {}
    out: dict[str, float] = {}
    for name in dict.fromkeys([*a, *b]):
        x, y = a.get(name), b.get(name)
        if x is None or y is None or x.shape != y.shape:
            out[name] = math.nan
            continue
        x, y = x.astype(np.float64), y.astype(np.float64)
        nx, ny = np.linalg.norm(x), np.linalg.norm(y)
        out[name] = float(x @ y / (nx * ny)) if nx > 0 and ny > 0 else math.nan
    return out


def same_weight_edit(run_a: EditRun, run_b: EditRun) -> bool | None:
    """Whether both runs changed the same parameters by exactly the same amounts (bit for bit).

    None when either run is not a weight edit (nothing to compare). Two runs whose editors or
    settings differ yet give True made the same edit: e.g. an SSS term too weak to change FT-L's steps.
    """
    a, b = run_a.weight_deltas, run_b.weight_deltas
    if a is None or b is None:
        return None
    return a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a)


def paired_probe_differences(run_a: EditRun, run_b: EditRun) -> list[dict[str, Any]]:
    """Per probe both runs share (same group and prompt): its change of P(old answer) under A and under B.

    Rows ``{"group", "prompt", "delta_p_old_a", "delta_p_old_b", "difference"}`` with difference =
    A minus B (negative: A took more probability from the old answer, i.e. did more damage there);
    NaN where the old answer is unknown. Probes only one run has are left out.
    """
    b_rows = {(r.group, r.prompt): r for r in run_b.rows}
    out = []
    for r in run_a.rows:
        other = b_rows.get((r.group, r.prompt))
        if other is None:
            continue
        da, db = r.as_dict()["delta_p_old"], other.as_dict()["delta_p_old"]
        out.append({"group": r.group, "prompt": r.prompt, "delta_p_old_a": da, "delta_p_old_b": db,
                    "difference": da - db})
    return out


def neighbour_table(emb: EmbeddingSet, index: int, k: int = 5,
                    metric: Literal["euclidean", "cosine"] = "euclidean") -> list[dict[str, Any]]:
    """The k nearest sentences to sentence ``index`` before and after the edit (full space, ``metric``: the
    euclidean distance or 1 - cos), with the distance of each before and after. ValueError for another metric."""
    before = nearest_neighbours(emb.before, index, k, metric)
    after = nearest_neighbours(emb.after, index, k, metric)
    after_set, before_set = {i for i, _ in after}, {i for i, _ in before}
    rows = []
    for rank in range(max(len(before), len(after))):
        row: dict[str, Any] = {"rank": rank + 1}
        if rank < len(before):
            i, d = before[rank]
            row.update({"before": emb.sentences[i], "distance before": round(d, 4),
                        "kept": "yes" if i in after_set else "no"})
        if rank < len(after):
            i, d = after[rank]
            row.update({"after": emb.sentences[i], "distance after": round(d, 4),
                        "new": "yes" if i not in before_set else "no"})
        rows.append(row)
    return rows


# --- C sweep ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepPoint:
    """One value of C in a sweep: the edit's metrics and lambda_max, and the seconds the edit took."""

    c: float
    metrics: dict[str, float]
    lambda_max_before: float
    lambda_max_after: float
    seconds: float
    checkpoint: str | None = None  # trained editors: the checkpoint folder whose C this is
    record: RunRecord | None = field(default=None, compare=False)  # what made the point


def sweep_c(lm: LoadedModel, editor: str, overrides: Mapping[str, Any], case: EditCase,
            c_values: Sequence[float], progress: Callable[[int, float], None] | None = None) -> list[SweepPoint]:
    """Run the same edit at each C (the editor's C field, see ``c_field``), reverting after each.

    For a trained editor C is the C its checkpoint was trained at: every value must have a
    checkpoint (``editors.shipped_checkpoints``), checked before any edit. ``progress(i, c)`` is
    called before the i-th value. Raises RequestError for an editor without C, or a C no checkpoint has.
    """
    field_name = c_field(editor)
    if field_name is None:
        raise RequestError(f"{editor} has no C to sweep; pick an editor with SSS")
    records = [make_record(editor, {**overrides, field_name: float(c)}, case, lm=lm,
                           analysis=AnalysisOptions(background=0, embeddings=False)) for c in c_values]
    points = []
    for i, (c, record) in enumerate(zip(c_values, records)):
        if progress:
            progress(i, c)
        run = run_record(lm, record)
        r = run.result
        folder = getattr(editor_config(editor, **record.settings), "folder", None)
        points.append(SweepPoint(float(c), r.metrics, r.lambda_max_before, r.lambda_max_after, run.seconds_edit,
                                 folder().name if callable(folder) else None, record))
    return points


# --- an edit to what the model already says ----------------------------------------------------------

def current_answer_notice(run: EditRun) -> str | None:
    """What an edit did whose target was already the model's top answer for the edit prompt; None otherwise.

    "Already the top answer" is the run's own measurement: the edit prompt's teacher-forced argmax
    before the edit equals the target's tokens (``request_warnings``' test). The notice gives the
    run's numbers: the norm of the update the editor wrote (``run.delta_norms``, all edited weights
    together) and how many probes changed their top-1 answer (``run.rows``' ``flipped``), per group.
    """
    rewrite = next((p for p in run.result.probes if p.probe.group == "rewrite"), None)
    if rewrite is None or not rewrite.target_tokens or rewrite.pre_tokens != rewrite.target_tokens:
        return None
    request = run.case.request
    head = f"{request.target_new!r} was already the model's top answer to {request.prompt!r} before the edit"
    if run.delta_norms is None:
        wrote = f"{run.editor} still added the edit to its memory (no weight changed)"
    else:
        total = math.sqrt(sum(v * v for v in run.delta_norms.values()))
        where = (next(iter(run.delta_norms)) if len(run.delta_norms) == 1
                 else f"{len(run.delta_norms)} weights together")
        wrote = (f"{run.editor} wrote no update (norm 0.00)" if total == 0
                 else f"{run.editor} still wrote an update of norm {total:.2f} ({where})")
    flipped = [r for r in run.rows if r.flipped]
    groups: dict[str, int] = {}  # label -> probes of it that changed, in the table's order
    for label in (GROUP_LABELS.get(r.group, r.group) for r in flipped):
        groups[label] = groups.get(label, 0) + 1
    detail = f" ({', '.join(f'{g}: {k}' for g, k in groups.items())})" if groups else ""
    return f"{head}; {wrote}, and {len(flipped)} of {len(run.rows)} probes changed their top-1 answer{detail}."


# --- sequential editing ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SequentialBaseline:
    """Fixed locality probes and the unedited model's predictions on them, taken when a history starts."""

    probes: tuple[Probe, ...]
    pre: tuple[TokenPrediction, ...]


@dataclass(frozen=True)
class SequentialStep:
    """The n-th edit of a sequential history, measured right after it was stacked on the n - 1 before."""

    n: int
    editor: str
    request: EditRequest
    metrics: dict[str, float]  # of this edit, right after it was applied (paper Table 2)
    lambda_max_after: float
    locality_fixed: float  # fixed probes: post-edit argmax == unedited argmax, after n edits
    retention: float  # mean reliability of the edits so far still meant to hold, measured after the n-th
    retained: int  # how many edits retention counts: the n so far less the superseded ones
    superseded: int  # earlier edits left out of retention: a later edit re-edited their fact
    seconds: float
    edit: Edit = field(repr=False, compare=False)
    relation: str | None = None  # the edited fact's relation, when known (tells re-edits of the same fact)
    settings: dict[str, Any] = field(default_factory=dict)  # the editor's full config
    editor_obj: Any = field(default=None, repr=False, compare=False)  # the Editor (a memory editor's memory)
    record: RunRecord | None = field(default=None, compare=False)  # what made this step (a link replays it)

    def as_dict(self) -> dict[str, Any]:
        """One row of the history table (the Edit object left out)."""
        return {"n": self.n, "editor": self.editor, "prompt": self.request.prompt,
                "target_new": self.request.target_new, **{f"this edit: {k}": v for k, v in self.metrics.items()
                                                          if k in ("reliability", "generality", "locality")},
                "lambda_max_after": self.lambda_max_after, "locality (fixed probes)": self.locality_fixed,
                "retention (edits still meant to hold)": self.retention, "retention counts": retention_note(self),
                "seconds": self.seconds}


def retention_note(step: SequentialStep) -> str:
    """How many edits ``step.retention`` counts, and how many superseded ones it leaves out, in words."""
    edits = f"{step.retained} edit{'' if step.retained == 1 else 's'}"
    if not step.superseded:
        return f"retention over the {edits} so far; none superseded"
    return (f"retention over the {edits} still meant to hold; {step.superseded} superseded (a later edit "
            "re-edited the same fact: same prompt, or same subject and relation) and left out")


def sequential_baseline(lm: LoadedModel, probes: Sequence[Probe]) -> SequentialBaseline:
    """The unedited model's teacher-forced predictions on ``probes``, to compare later steps with."""
    with model_lock(lm.model):
        pre = teacher_forced(lm.model, lm.tok, [p.prompt for p in probes], [p.answer for p in probes])
    return SequentialBaseline(tuple(probes), tuple(pre))


def _agreement(pre: Sequence[TokenPrediction], post: Sequence[TokenPrediction]) -> float:
    """Mean fraction of target positions whose argmax is unchanged (EasyEdit locality); NaN if none."""
    scores = [sum(a == b for a, b in zip(x.argmax_ids, y.argmax_ids)) / len(y.target_ids)
              for x, y in zip(pre, post) if y.target_ids]
    return sum(scores) / len(scores) if scores else math.nan


def _accuracy(preds: Sequence[TokenPrediction]) -> float:
    """Mean teacher-forced token accuracy (argmax == target); NaN if there is no target token."""
    scores = [sum(a == b for a, b in zip(p.target_ids, p.argmax_ids)) / len(p.target_ids)
              for p in preds if p.target_ids]
    return sum(scores) / len(scores) if scores else math.nan


def _sequential_editor(history: Sequence[SequentialStep], model: nn.Module, editor: str,
                       overrides: Mapping[str, Any]) -> Editor:
    """The editor of a history's next step. A memory editor (SERAC: its edits live in a memory beside the
    model, ``edit.model is not model``) stacks only on its own earlier edits, so the history's memory
    editor is reused (its memory holds them); RequestError for another editor after it."""
    memory = [s for s in history if s.edit.model is not model]
    if not memory:
        return make_editor(editor, **dict(overrides))
    last = memory[-1]
    if last.editor != editor or last.settings != dataclasses.asdict(editor_config(editor, **dict(overrides))):
        raise RequestError(f"{last.editor} keeps its edits in a memory beside the model; after its edits this "
                           f"history stacks only more {last.editor} edits with the same settings. Start a new "
                           "history to use another editor")
    return last.editor_obj


def sequential_step(lm: LoadedModel, history: Sequence[SequentialStep], baseline: SequentialBaseline,
                    editor: str, overrides: Mapping[str, Any], case: EditCase) -> SequentialStep:
    """Apply ``history``'s edits in order, add one more on top, measure, and revert them all.

    The step is the bench's (``runners.sequential_edits``): the editor edits the model with the history
    applied (``evaluation.metrics.edit_and_score``), a memory editor (SERAC) keeping one memory across
    the history. Retention is the mean reliability of the edits still meant to hold: an edit whose
    fact a later one re-edits (same prompt, or same subject and relation; ``runners.superseded_by``)
    is superseded and left out. Between calls the shared model is always unedited; a session's
    history lives in its own state. Raises RequestError for bad settings or a request the editor refuses.
    """
    record = make_record(editor, overrides, case, lm=lm, analysis=AnalysisOptions(background=0, embeddings=False))
    settings = record.settings
    request = case.request.validate()
    model, tok = lm.model, lm.tok
    requests = [s.request for s in history] + [request]
    later = superseded_by([Fact(s.request.prompt, s.request.subject, s.relation) for s in history]
                          + [Fact(request.prompt, request.subject, case.relation)])
    held = [r for r, by in zip(requests, later) if by is None]
    editor_obj = _sequential_editor(history, model, editor, overrides)
    applied: list[Edit] = []
    with model_lock(model):
        try:
            for step in history:
                step.edit.apply()
                applied.append(step.edit)
            edit, result = edit_and_score(model, tok, editor_obj, case)
            edit.apply()
            applied.append(edit)
            final = edit.model  # the base model, or a memory editor's routed model over it
            post = teacher_forced(final, tok, [p.prompt for p in baseline.probes], [p.answer for p in baseline.probes])
            mine = teacher_forced(final, tok, [r.prompt for r in held], [r.target_new for r in held])
        finally:
            for e in reversed(applied):
                e.revert()
    return SequentialStep(len(history) + 1, editor, request, result.metrics, result.lambda_max_after,
                          _agreement(baseline.pre, post), _accuracy(mine), len(held), len(requests) - len(held),
                          result.seconds, edit, case.relation, settings, editor_obj, record)

"""Two sessions editing the shared model at once each get their own results; the model ends unedited; every
read of the shared model waits for another session's edit to be reverted (issue 24.3)."""

from __future__ import annotations

import math
import tempfile
import threading
import time

import pytest
import torch

from sss_core.analysis import analyse_edit
from sss_core.editors import make_editor
from sss_core.editors.base import model_lock
from sss_core.editors.stats import key_second_moments
from sss_core.evaluation.presets import presets
from sss_core.types import EditRequest


def test_two_concurrent_sessions_get_their_own_results(default_lm):
    cases = presets("test", 2)
    saved = {k: v.clone() for k, v in default_lm.model.state_dict().items()}
    alone = [analyse_edit(default_lm, "ft-l", {"steps": 8}, c, with_embeddings=False) for c in cases]
    results: dict[int, object] = {}
    failures: list[BaseException] = []
    barrier = threading.Barrier(2)

    def session(i: int) -> None:
        try:
            barrier.wait()
            results[i] = analyse_edit(default_lm, "ft-l", {"steps": 8}, cases[i], with_embeddings=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures, failures
    for i in range(2):
        assert results[i].case.request == cases[i].request
        assert [r.top1_after for r in results[i].rows] == [r.top1_after for r in alone[i].rows]
        assert results[i].result.metrics == alone[i].result.metrics
    assert all(torch.equal(v, saved[k]) for k, v in default_lm.model.state_dict().items())


# --- every read of the shared model holds its lock (issue 24.3) --------------------------------------------------
#
# One thread applies a real FT-L edit on the shared default model inside ``model_lock`` and keeps it applied; this
# thread meanwhile calls one read path of the app, the core or the bench. A path that takes the lock waits for the
# edit to be reverted and reads the unedited model: its values equal those computed alone beforehand, and it
# finishes only after the edit was reverted. A path that reads without the lock finishes while the edit is applied,
# with the edited model's values.

HOLD_S = 2.0  # how long the holder keeps its edit applied, at least (longer for a slow path: see _hold_for)


@pytest.fixture(scope="module")
def shared_edit(default_lm):
    """(case, WeightEdit): a real FT-L edit of a world fact on the shared default model, not applied."""
    case = presets("test", 3)[2]
    edit = make_editor("ft-l").edit(default_lm.model, default_lm.tok, [case.request])
    assert not edit.applied
    return case, edit


def _overlapped(lm, edit, read, hold: float):
    """``read()`` in this thread while another thread holds ``edit`` applied under the model's lock.

    The holder reverts the edit when ``read`` returns or after ``hold`` seconds, whichever is first.
    Returns (what read returned, whether read returned only after the edit was reverted).
    """
    applied, done, times = threading.Event(), threading.Event(), {}

    def holder() -> None:
        with model_lock(lm.model):
            edit.apply()
            try:
                applied.set()
                done.wait(hold)
            finally:
                edit.revert()
                times["reverted"] = time.perf_counter()

    thread = threading.Thread(target=holder, name="holds-an-edit")
    thread.start()
    assert applied.wait(120), "the holder never applied its edit"
    try:
        value = read()
    finally:
        times["returned"] = time.perf_counter()
        done.set()
        thread.join(120)
    return value, times["returned"] > times["reverted"]


def _edited(lm, edit, read):
    """What ``read()`` gives while ``edit`` is applied in this thread (the value an unlocked read can see)."""
    with model_lock(lm.model), edit:
        return read()


def _same(a, b) -> bool:
    """Equal, floats within 1e-6 relative (NaN equal to NaN), through lists, tuples and dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def _run_values(run) -> dict:
    """What an EditRun says about the model: probabilities and top-1 of every probe, lambda_max, embeddings."""
    emb = run.embeddings.get("last")
    return {"rows": [(r.p_old_before, r.p_new_before, r.top1_before, r.p_old_after, r.p_new_after, r.top1_after)
                     for r in run.rows],
            "metrics": dict(run.result.metrics), "lambda": [run.result.lambda_max_before, run.result.lambda_max_after],
            "sparsity": [(s.lambda_max_before, s.p_answer_before) for s in run.sparsity],
            "emb_before": emb.before.round(5).tolist() if emb is not None else None}


def _result_values(result) -> dict:
    """What an EditResult says about the model: its metrics and lambda_max before and after."""
    return {"metrics": dict(result.metrics), "lambda": [result.lambda_max_before, result.lambda_max_after]}


def _read_paths(lm, case, monkeypatch) -> dict:
    """Each read path of the shared model that the app, the core and the bench call: name -> read()."""
    from app import resources
    from app.hypothesis import HypothesisJob, run_next
    from app.inputs import RequestChoice
    from sss_core import analysis
    from sss_core.evaluation.hypothesis import EditMeasures
    from sss_core.evaluation.metrics import run_edit
    from sss_core.evaluation.presets import case_for_request, greedy_answer
    from sss_core.evaluation.runners import single_edits

    other = presets("test", 3)[1]
    typed = EditRequest("Ulla Kessel lives in", "Rome")  # not a world fact: its neighbours are the model's answers
    neighbours = (case.request.prompt, *[p.prompt for p in case.probes if p.group == "paraphrase"][:2])
    reference = [c.request.prompt for c in presets("validation", 12)]
    fast = {"steps": 4}
    captured: list = []
    monkeypatch.setattr(resources, "get_model", lambda name: lm)
    monkeypatch.setattr(resources, "analyse_edit", lambda *a, **kw: captured.append(analysis.analyse_edit(*a, **kw))
                        or captured[-1])

    def prewarm():
        captured.clear()
        resources._warm_edit(lm)  # the body of the warm-up thread the page starts
        return _run_values(captured[-1])

    def key_statistics():  # ROME/MEMIT's C, as the warm-up thread computes it (a fresh cache: really read)
        with tempfile.TemporaryDirectory() as cache:
            # the last block's keys: any edit of an earlier block changes them
            return key_second_moments(lm.model, lm.tok, [-1], n_samples=40, cache_dir=cache).popitem()[1].diagonal().tolist()

    def sequential():
        baseline = analysis.sequential_baseline(lm, case.probes)
        step = analysis.sequential_step(lm, [], baseline, "ft-l", fast, other)
        return {"pre": [p.argmax_ids for p in baseline.pre], "metrics": dict(step.metrics),
                "locality_fixed": step.locality_fixed}

    return {
        "greedy_answer": lambda: greedy_answer(lm, case.request.prompt),
        "case_for_request (typed neighbours)": lambda: [(p.prompt, p.answer) for p in case_for_request(
            typed, (), neighbours, lm).probes],
        "RequestChoice.build (the Edit form)": lambda: [(p.prompt, p.answer) for p in RequestChoice(
            "Type a fact", typed.prompt, None, typed.target_new, None, (), neighbours).build(lm).probes],
        "EditMeasures (bench and Hypothesis view)": lambda: EditMeasures(lm.model, lm.tok, reference, k=3)(
            [case.request, other.request]),
        "Hypothesis view (run_next)": lambda: {k: v for k, v in run_next(lm, HypothesisJob.start(
            [case], [("ft-l", fast)], k=3)).items() if k in ("metrics", "lambda_max_before", "knn_distance",
                                                              "target_nll", "probes")},
        "analyse_edit (Edit view)": lambda: _run_values(analysis.analyse_edit(
            lm, "ft-l", fast, other, reference[:4])),
        "sweep_c (C sweep view)": lambda: [(p.metrics, p.lambda_max_before, p.lambda_max_after)
                                           for p in analysis.sweep_c(lm, "ft-l+sss", fast, other, [0.5])],
        "sequential baseline and step (Sequential view)": sequential,
        "single_edits (bench runner)": lambda: [_result_values(o.result) for o in single_edits(
            lm.model, lm.tok, make_editor("ft-l", **fast), [other], seed=0)],
        "run_edit (core)": lambda: _result_values(run_edit(lm.model, lm.tok, make_editor("ft-l", **fast), other)),
        "prewarm (app start-up)": prewarm,
        "key statistics (warm-up, first ROME/MEMIT edit)": key_statistics,
    }


def test_every_read_path_of_the_shared_model_waits_for_another_sessions_edit(default_lm, shared_edit, monkeypatch):
    case, edit = shared_edit
    saved = {k: v.clone() for k, v in default_lm.model.state_dict().items()}
    unlocked, wrong = [], []
    for name, read in _read_paths(default_lm, case, monkeypatch).items():
        start = time.perf_counter()
        alone = read()
        hold = max(HOLD_S, 3 * (time.perf_counter() - start) + 1)  # an unlocked read surely ends while held
        assert not _same(_edited(default_lm, edit, read), alone), f"{name}: the edit does not change what it reads"
        value, waited = _overlapped(default_lm, edit, read, hold)
        if not waited:
            unlocked.append(name)
        if not _same(value, alone):
            wrong.append(name)
    assert unlocked == [], f"read the shared model without its lock: {unlocked}"
    assert wrong == [], f"read another session's edit: {wrong}"
    assert all(torch.equal(v, saved[k]) for k, v in default_lm.model.state_dict().items())


def _core_paths(lm, case) -> dict:
    """The core's own read paths (each takes the model's lock through ``locks.reads_model``, or reads through
    one that does): name -> read()."""
    from sss_core.embeddings import embed_prompts, sentence_states
    from sss_core.evaluation.hypothesis import knn_density, target_nll_of
    from sss_core.evaluation.metrics import answer_probability, request_warnings, teacher_forced, top_k
    from sss_core.evaluation.runners import batch_edits, sequential_edits
    from sss_core.sparsity import answer_rows, lambda_and_probability
    from sss_core.sss import lambda_max

    model, tok, r = lm.model, lm.tok, case.request
    prompts = [r.prompt, *[p.prompt for p in case.probes][:3]]
    others = presets("test", 5)[3:5]
    fast = make_editor("ft-l", steps=4)
    return {
        "teacher_forced": lambda: [p.argmax_ids for p in teacher_forced(model, tok, [r.prompt], [r.target_new])],
        "top_k": lambda: top_k(model, tok, r.prompt),
        "answer_probability": lambda: answer_probability(model, tok, [r.prompt], [r.target_new]),
        "request_warnings": lambda: request_warnings(model, tok, EditRequest(r.prompt, " ".join(
            r.target_new.split()[:1]), r.subject)),
        "lambda_max": lambda: lambda_max(model, tok, [r.prompt], [r.target_new]).tolist(),
        "sentence_states": lambda: sentence_states(model, tok, prompts, ("last",)).pooled["last"].round(5).tolist(),
        "embed_prompts": lambda: embed_prompts(model, tok, prompts).round(5).tolist(),
        "lambda_and_probability": lambda: [a.tolist() for a in lambda_and_probability(
            model, tok, answer_rows(tok, [r.prompt], [tok.encode(" " + r.target_new)[0]]))],
        "target_nll_of (bench report)": lambda: target_nll_of(model, tok, [r.prompt], [r.target_new]),
        "knn_density (bench report)": lambda: knn_density(model, tok, [r.prompt], prompts[1:] + [
            c.request.prompt for c in others], k=2),
        "sequential_edits (bench runner)": lambda: [_result_values(o.result) for o in sequential_edits(
            model, tok, fast, others, seed=0, with_lambda=False)],
        "batch_edits (bench runner)": lambda: [_result_values(o.result) for o in batch_edits(
            model, tok, fast, others, seed=0)],
    }


@pytest.mark.parametrize("name", ["teacher_forced", "top_k", "answer_probability", "request_warnings", "lambda_max",
                                  "sentence_states", "embed_prompts", "lambda_and_probability",
                                  "target_nll_of (bench report)", "knn_density (bench report)",
                                  "sequential_edits (bench runner)", "batch_edits (bench runner)"])
def test_a_core_read_path_waits_for_another_sessions_edit(default_lm, shared_edit, name):
    case, edit = shared_edit
    read = _core_paths(default_lm, case)[name]
    start = time.perf_counter()
    alone = read()
    hold = max(HOLD_S, 3 * (time.perf_counter() - start) + 1)
    assert not _same(_edited(default_lm, edit, read), alone), f"{name}: the edit does not change what it reads"
    value, waited = _overlapped(default_lm, edit, read, hold)
    assert waited, f"{name} read the shared model without its lock"
    assert _same(value, alone), f"{name} read another session's edit"

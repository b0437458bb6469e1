"""The metric definitions on hand-built predictions with known answers (EasyEdit's teacher-forced metrics).

Reliability, generality and portability: the fraction of answer tokens that are the post-edit
argmax. Locality: the fraction of positions whose post-edit argmax equals the PRE-edit argmax
(not the probe's answer, which for a neighbour is only the text fed for teacher forcing).
"""

from __future__ import annotations

import math

import pytest

from sss_core.analysis import _accuracy, _agreement
from sss_core.evaluation import metrics
from sss_core.evaluation.metrics import TokenPrediction, evaluate_edit, summarize
from sss_core.types import EditCase, EditRequest, Probe

REQUEST = EditRequest("The capital of France is", "Rome", subject="France")

# (probe, pre-edit prediction, post-edit prediction, expected score)
ROWS = [
    (Probe(REQUEST.prompt, "Rome", "rewrite"), TokenPrediction((1, 2), (3, 2)), TokenPrediction((1, 2), (1, 2)), 1.0),
    (Probe("France's capital is", "Rome", "paraphrase"),
     TokenPrediction((1, 2), (3, 3)), TokenPrediction((1, 2), (1, 9)), 0.5),
    (Probe("The capital city of France is", "Rome", "paraphrase"),
     TokenPrediction((1, 2), (1, 2)), TokenPrediction((1, 2), (8, 9)), 0.0),
    # locality: pre argmax (5, 6, 0), post (5, 4, 0): 2 of 3 unchanged, although only 1 of 3 is the answer
    (Probe("The capital of Spain is", "Madrid city", "neighbour"),
     TokenPrediction((5, 6, 7), (5, 6, 0)), TokenPrediction((5, 6, 7), (5, 4, 0)), 2 / 3),
    # locality: the model never predicted the answer, and still does not: unchanged, so 1.0
    (Probe("Paris is in", "Europe", "pre_neighbour"), TokenPrediction((4,), (9,)), TokenPrediction((4,), (9,)), 1.0),
    (Probe("The capital of Italy's neighbour is", "Rome Rome", "one_hop"),
     TokenPrediction((7, 7), (0, 0)), TokenPrediction((7, 7), (7, 0)), 0.5),
    (Probe("The capital of the French Republic is", "Rome", "subject_replace"),
     TokenPrediction((3,), (0,)), TokenPrediction((3,), (3,)), 1.0),
    (Probe("Nothing to score", "", "paraphrase"), TokenPrediction((), ()), TokenPrediction((), ()), math.nan),
]
EXPECTED = {"reliability": 1.0, "generality": 0.25, "locality": (2 / 3 + 1.0) / 2, "portability": 0.75,
            "neighbour": 2 / 3, "pre_neighbour": 1.0, "one_hop": 0.5, "subject_replace": 1.0}


@pytest.mark.parametrize("probe, pre, post, expected", ROWS, ids=[r[0].group for r in ROWS])
def test_score_of_each_probe(probe, pre, post, expected):
    got = metrics._score(probe, pre, post)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


class _Tok:
    """Token ids as strings: all evaluate_edit needs of a tokenizer here."""

    def convert_ids_to_tokens(self, ids):
        """["t1", "t2"] for [1, 2]."""
        return [f"t{i}" for i in ids]


class _Edit:
    """An edit whose application is only recorded (the predictions are hand-made)."""

    def __init__(self):
        self.model, self.info, self.applied = object(), {"steps": 3, "history": []}, False

    def __enter__(self):
        self.applied = True
        return self

    def __exit__(self, *exc):
        self.applied = False


def test_evaluate_edit_scores_post_against_pre(monkeypatch):
    """The whole path: predictions before (edit not applied) and after (applied), then the summary."""
    edit = _Edit()

    def fake_teacher_forced(model, tok, prompts, answers):
        assert prompts == [r[0].prompt for r in ROWS]
        return [r[2] if edit.applied else r[1] for r in ROWS]

    monkeypatch.setattr(metrics, "teacher_forced", fake_teacher_forced)
    monkeypatch.setattr(metrics, "unedited_predictions", lambda model, tok, cases: fake_teacher_forced(
        model, tok, [p.prompt for p in metrics.probes_of(cases[0])], []))
    case = EditCase(REQUEST, tuple(r[0] for r in ROWS[1:]))
    result = evaluate_edit(None, _Tok(), case, edit, "hand-made", with_lambda=False)
    assert result.metrics == pytest.approx(EXPECTED)
    assert [p.pre_tokens for p in result.probes][3] == ("t5", "t6", "t0")
    assert [p.post_tokens for p in result.probes][3] == ("t5", "t4", "t0")
    assert result.extra == {"steps": 3}
    assert not edit.applied


def test_summarize_pools_locality_and_portability_groups():
    results = [metrics.ProbeResult(p, metrics._score(p, a, b), (), (), ()) for p, a, b, _ in ROWS]
    assert summarize(results) == pytest.approx(EXPECTED)
    # pooled over probes, not over group means: two neighbours at 0 and one pre_neighbour at 1 -> 1/3
    pooled = [metrics.ProbeResult(Probe("a", "b", g), s, (), (), ())
              for g, s in (("neighbour", 0.0), ("neighbour", 0.0), ("pre_neighbour", 1.0))]
    assert summarize(pooled)["locality"] == pytest.approx(1 / 3)
    assert math.isnan(summarize([])["reliability"]) and math.isnan(summarize([])["portability"])


def test_sequential_agreement_and_accuracy():
    """The Sequential view's fixed-probe locality (agreement with the pre-edit argmax) and retention."""
    pre = [TokenPrediction((5, 6, 7), (5, 6, 0)), TokenPrediction((4,), (9,)), TokenPrediction((), ())]
    post = [TokenPrediction((5, 6, 7), (5, 4, 0)), TokenPrediction((4,), (9,)), TokenPrediction((), ())]
    assert _agreement(pre, post) == pytest.approx((2 / 3 + 1.0) / 2)
    assert _accuracy(post) == pytest.approx((1 / 3 + 0.0) / 2)
    assert math.isnan(_agreement([], [])) and math.isnan(_accuracy([]))


def test_teacher_forced_on_the_default_model(default_lm):
    """Known answers of the shipped model: it predicts Paris for France, and not Rome."""
    model, tok = default_lm.model, default_lm.tok
    paris, rome = metrics.teacher_forced(model, tok, [REQUEST.prompt] * 2, ["Paris", "Rome"])
    assert paris.target_ids == tuple(tok(" Paris")["input_ids"])
    assert paris.argmax_ids == paris.target_ids
    assert rome.target_ids == tuple(tok(" Rome")["input_ids"])
    assert rome.argmax_ids[0] == paris.target_ids[0] != rome.target_ids[0]


def test_summarize_of_missing_groups_is_nan():
    only_rewrite = [metrics.ProbeResult(Probe("a", "b", "rewrite"), 1.0, (), (), ())]
    summary = summarize(only_rewrite)
    assert summary["reliability"] == 1.0
    assert all(math.isnan(summary[k]) for k in ("generality", "locality", "portability"))


def test_probes_of_puts_the_rewrite_first_once():
    own = Probe(REQUEST.prompt, "Rome", "rewrite")
    para = Probe("France's capital is", "Rome", "paraphrase")
    assert metrics.probes_of(EditCase(REQUEST, (para, own))) == [own, para]
    assert metrics.probes_of(EditCase(REQUEST, ())) == [own]


def test_evaluate_edit_passes_everything_through(monkeypatch):
    """Given pre-edit predictions are used as they are; lambda_max before and after by default; the
    editor's name, the request, the seconds and the layer info reach the result."""
    edit = _Edit()
    edit.info = {"steps": 3, "layer": 1, "layers": [1, 2], "history": [1]}
    calls = []

    def fake_teacher_forced(model, tok, prompts, answers):
        calls.append(edit.applied)
        return [r[2] if edit.applied else r[1] for r in ROWS]

    lambdas = iter([0.5, 0.25])
    monkeypatch.setattr(metrics, "teacher_forced", fake_teacher_forced)
    monkeypatch.setattr(metrics, "lambda_max", lambda *a, **k: metrics.torch.tensor([next(lambdas)]))
    monkeypatch.setattr(metrics, "unedited_lambda", lambda *a, **k: metrics.torch.tensor([next(lambdas)]))
    case = EditCase(REQUEST, tuple(r[0] for r in ROWS[1:]))
    result = evaluate_edit(None, _Tok(), case, edit, "hand-made", seconds=1.5, pre=[r[1] for r in ROWS])
    assert calls == [True]  # only the post-edit predictions were made here
    assert (result.lambda_max_before, result.lambda_max_after) == (0.5, 0.25)
    assert (result.editor, result.request, result.seconds) == ("hand-made", REQUEST, 1.5)
    assert result.extra == {"steps": 3, "layer": 1, "layers": [1, 2]}
    assert result.probes[3].target_tokens == ("t5", "t6", "t7")
    assert result.metrics == pytest.approx(EXPECTED)


def test_run_edit_names_and_times_the_edit(default_lm):
    import time

    from sss_core.editors import make_editor
    start = time.perf_counter()
    result = metrics.run_edit(default_lm.model, default_lm.tok, make_editor("ft-l", steps=1),
                              EditCase(REQUEST), with_lambda=False)
    elapsed = time.perf_counter() - start
    assert result.editor == "ft-l" and 0 < result.seconds <= elapsed
    assert math.isnan(result.lambda_max_before) and math.isnan(result.lambda_max_after)


def test_request_warnings_and_single_case(default_lm):
    model, tok = default_lm.model, default_lm.tok
    known = metrics.request_warnings(model, tok, EditRequest("The capital of France is", "Paris"))
    assert known == ["the model already predicts 'Paris' for this prompt: it is already the top answer, and reliability is "
                     "1.0 before editing. The edit still runs, and the editor may still write an update that changes other "
                     "answers; the result reports the update's norm and how many probes changed their top-1 answer"]
    assert metrics.request_warnings(model, tok, REQUEST) == []
    accents = metrics.request_warnings(model, tok, EditRequest("The capital of France is", "Zürich"))
    assert accents == ["the request has non-ASCII characters; the default model was trained on ASCII text only, "
                       "so they split into byte tokens it has rarely seen"]
    case = metrics.single_case(REQUEST, ["France's capital is"], [("The capital of Spain is", "Madrid")])
    assert case.request == REQUEST
    assert case.probes == (Probe("France's capital is", "Rome", "paraphrase"),
                           Probe("The capital of Spain is", "Madrid", "neighbour"))

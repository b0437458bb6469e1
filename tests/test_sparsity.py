"""Sparsity per sentence (sss_core.sparsity through analysis.analyse_edit) on the shipped model.

The default model is retrained from time to time: these tests assert properties and relations
(finite values, lambda_max against the new target falls when the edit takes, the kNN distance is
what a direct computation on the embeddings gives), never figures measured on one version of it.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from sss_core.analysis import (analyse_edit, background_sentences, delta_cosine, paired_probe_differences,
                               same_weight_edit)
from sss_core.errors import RequestError
from sss_core.evaluation.presets import case_for_request
from sss_core.jsonio import to_json
from sss_core.sparsity import KnnSettings, knn_distances
from sss_core.types import EditRequest

FRANCE = EditRequest("The capital of France is", "Rome", subject="France")
FOUR = ("lambda_max_before", "lambda_max_after", "knn_distance_before", "knn_distance_after")


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def runs(default_lm):
    """France -> Rome with FT-L+SSS and with plain FT-L, each with 8 background sentences."""
    case = case_for_request(FRANCE)
    background = background_sentences(8)
    return {name: analyse_edit(default_lm, name, {}, case, background) for name in ("ft-l+sss", "ft-l")}


# --- kNN distances, no model -------------------------------------------------------------------------

def test_knn_distance_is_the_mean_distance_to_the_k_nearest_others():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [10.0, 10.0]])
    d = knn_distances(points, k=2, metric="euclidean")
    assert d[0] == pytest.approx((1.0 + 2.0) / 2)
    assert d[3] == pytest.approx((np.hypot(9, 10) + np.hypot(10, 8)) / 2)


def test_cosine_and_euclidean_knn_differ_where_lengths_differ():
    points = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0]])  # 0 and 1 point the same way, at different lengths
    cos, euc = knn_distances(points, k=1, metric="cosine"), knn_distances(points, k=1, metric="euclidean")
    assert cos[0] == pytest.approx(0.0, abs=1e-12) and euc[0] == pytest.approx(np.sqrt(2))
    assert not np.allclose(cos, euc)


def test_knn_k_shrinks_to_the_set_and_one_point_has_no_neighbour():
    points = np.array([[0.0], [1.0], [3.0]])
    assert knn_distances(points, k=10, metric="euclidean")[0] == pytest.approx(2.0)  # both others
    assert np.isnan(knn_distances(points[:1], k=5)).all()


@pytest.mark.parametrize("k, metric, message", [(0, "cosine", "k"), (2, "manhattan", "metric")])
def test_bad_knn_settings_are_request_errors(k, metric, message):
    with pytest.raises(RequestError, match=message):
        knn_distances(np.zeros((3, 2)), k=k, metric=metric)


# --- per sentence, on the shipped model --------------------------------------------------------------

def test_every_sentence_has_four_finite_fields(runs):
    for run in runs.values():
        emb = run.embeddings[run.knn.pooling]
        assert [s.sentence for s in run.sparsity] == list(emb.sentences)
        assert [s.group for s in run.sparsity] == list(emb.groups)
        assert "background" in {s.group for s in run.sparsity}
        for s in run.sparsity:
            assert all(math.isfinite(v) and v >= 0 for v in s.probe_fields().values()), s
            assert 0 <= s.p_answer_before <= 1 and 0 <= s.p_answer_after <= 1
        assert all(run.sparsity_of(r.prompt) is not None for r in run.rows)


def test_the_edit_lowers_lambda_max_against_the_new_target_and_raises_it_against_the_old(runs):
    for run in runs.values():
        assert run.result.metrics["reliability"] == 1.0  # the edit took: the relations below must hold
        lam, rewrite = run.edit_lambda, run.rows[0]
        assert lam.new_before == run.result.lambda_max_before and lam.new_after == run.result.lambda_max_after
        assert lam.new_after < lam.new_before  # the new target became likely
        assert lam.old_target == rewrite.old and rewrite.p_old_after < rewrite.p_old_before
        assert lam.old_after > lam.old_before  # the old answer lost its probability
        # the edit prompt against its own top answer (the old one's first token) behaves as the old target
        mine = run.sparsity_of(FRANCE.prompt)
        assert mine.answer == rewrite.top1_before and mine.p_answer_after < mine.p_answer_before
        assert mine.lambda_max_after > mine.lambda_max_before


def test_lambda_max_is_the_closed_form_of_the_output_layers_gradient(default_lm, runs):
    # J = -log softmax(W h)[answer] at the last sentence token; dJ/dh = W^T (softmax - onehot) there and
    # 0 elsewhere, so lambda_max = ||W^T (p - e_answer)||^2 / m, m = sentence tokens + 1 answer token
    run = runs["ft-l"]
    s = next(x for x in run.sparsity if x.group == "neighbour")
    tok, model = default_lm.tok, default_lm.model
    ids = torch.tensor([tok(s.sentence)["input_ids"]])
    with torch.no_grad():
        p = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1)
    assert tok.decode([int(p.argmax())]) == s.answer  # the answer is the top next token
    w = model.get_output_embeddings().weight.double()  # (vocab, d_model)
    grad = w.T @ (p - torch.nn.functional.one_hot(p.argmax(), p.shape[0]).double())
    expected = float(grad.pow(2).sum()) / (ids.shape[1] + 1)
    assert s.lambda_max_before == pytest.approx(expected, rel=1e-3)
    assert s.p_answer_before == pytest.approx(float(p.max()), rel=1e-4)


def test_knn_distance_equals_a_direct_computation_on_the_embeddings(runs):
    run = runs["ft-l+sss"]
    emb = run.embeddings[run.knn.pooling]
    i = 0  # the edit prompt
    for x, value in ((emb.before, run.sparsity[i].knn_distance_before), (emb.after, run.sparsity[i].knn_distance_after)):
        x = x.astype(np.float64)
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        dist = np.delete(1 - unit @ unit[i], i)
        assert value == pytest.approx(np.sort(dist)[:run.knn.k].mean(), rel=1e-9)
    euclid = run.with_knn(metric="euclidean", k=3)
    direct = np.sort(np.delete(np.linalg.norm(emb.before - emb.before[i], axis=1), i))[:3].mean()
    assert euclid.sparsity[i].knn_distance_before == pytest.approx(direct, rel=1e-6)
    assert euclid.knn == KnnSettings(3, "euclidean", run.knn.pooling)
    assert euclid.sparsity[i].knn_distance_before != pytest.approx(run.sparsity[i].knn_distance_before)
    assert [s.lambda_max_before for s in euclid.sparsity] == [s.lambda_max_before for s in run.sparsity]
    mean = run.with_knn(pooling="mean")
    assert mean.sparsity[i].knn_distance_before == pytest.approx(knn_distances(run.embeddings["mean"].before)[i])
    with pytest.raises(RequestError, match="no 'x' embeddings"):
        run.with_knn(pooling="x")


def test_knn_pooling_must_be_embedded(default_lm):
    with pytest.raises(RequestError, match="not among"):
        analyse_edit(default_lm, "ft-l", {"steps": 1}, case_for_request(FRANCE), poolings=("mean",))


def test_weight_deltas_cosine_and_trajectory(runs):
    sss, plain = runs["ft-l+sss"], runs["ft-l"]
    for run in (sss, plain):
        assert run.weight_deltas.keys() == run.delta_norms.keys()
        for name, delta in run.weight_deltas.items():
            assert delta.dtype == np.float32 and delta.ndim == 1
            assert float(np.linalg.norm(delta.astype(np.float64))) == pytest.approx(run.delta_norms[name], rel=1e-3)  # fp32 sums
        assert len(run.trajectory) == run.result.extra["steps"] and run.trajectory[0]["step"] == 0
        assert all(math.isfinite(t["loss"]) for t in run.trajectory)
        assert delta_cosine(run, run) == pytest.approx({n: 1.0 for n in run.weight_deltas})
        assert same_weight_edit(run, run) is True
        known = {r.prompt for r in run.rows if r.old is not None}  # P(old) is NaN where the old answer is unknown
        assert all(d["difference"] == 0 if d["prompt"] in known else math.isnan(d["difference"])
                   for d in paired_probe_differences(run, run))
    assert all(math.isfinite(t["sss"]) for t in sss.trajectory)  # C > 0: the SSS term is computed
    assert all(math.isnan(t["sss"]) for t in plain.trajectory)  # C = 0: it is not
    cos = delta_cosine(sss, plain)
    assert cos.keys() == sss.weight_deltas.keys() and all(-1 <= v <= 1 for v in cos.values())
    no_weights = dataclasses.replace(plain, weight_deltas=None)
    assert all(math.isnan(v) for v in delta_cosine(sss, no_weights).values())
    assert delta_cosine(no_weights, no_weights) == {} and same_weight_edit(sss, no_weights) is None
    pairs = paired_probe_differences(sss, plain)
    assert [(d["group"], d["prompt"]) for d in pairs] == [(r.group, r.prompt) for r in sss.rows]


def test_json_of_a_run_is_strict_and_has_the_four_fields_per_probe(runs):
    payload = _strict(to_json(runs["ft-l+sss"].to_json_dict()))["results"]
    for probe in payload["probes"]:
        assert all(isinstance(probe[k], float) and math.isfinite(probe[k]) for k in FOUR), probe
    assert payload["edit_lambda"]["lambda_max_after_against_new_target"] < \
        payload["edit_lambda"]["lambda_max_before_against_new_target"]
    assert len(payload["sparsity"]) == len(runs["ft-l+sss"].sparsity)
    assert payload["knn"] == {"k": 5, "metric": "cosine", "pooling": "last"}
    assert [t["step"] for t in payload["trajectory"]] == list(range(len(payload["trajectory"])))


def test_runs_without_embeddings_have_no_sparsity_but_the_edits_lambda(default_lm):
    case = case_for_request(FRANCE)
    run = analyse_edit(default_lm, "ft-l", {"steps": 2}, case, with_embeddings=False)
    assert run.sparsity == () and run.embeddings == {}
    assert math.isfinite(run.edit_lambda.old_before) and run.edit_lambda.old_target == case.request.ground_truth

"""The hypothesis measures: k-NN density, target NLL, (partial) Spearman with cluster-bootstrap CIs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sss_core.evaluation.hypothesis import (
    EditMeasures,
    KnnReference,
    correlations,
    knn_density,
    partial_spearman,
    reference_prompts,
    spearman_ci,
    target_nll_of,
)
from sss_core.evaluation.presets import presets
from sss_core.types import EditRequest


def test_partial_spearman_removes_a_shared_cause():
    rng = np.random.default_rng(0)
    z = rng.normal(size=400)
    x, y = z + 0.3 * rng.normal(size=400), np.exp(z) + 0.3 * rng.normal(size=400)
    assert partial_spearman(x, y) > 0.7
    assert abs(partial_spearman(x, y, z)) < 0.15
    rho, lo, hi, p = spearman_ci(x, y, np.arange(400), n_boot=200)
    assert lo < rho < hi and lo > 0.6 and p < 1e-10
    assert math.isnan(spearman_ci(np.ones(10), np.arange(10.0), np.arange(10), n_boot=10)[0])


def test_cluster_bootstrap_is_wider_than_it_would_be_for_copies():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=50), rng.normal(size=50)
    _, lo1, hi1, _ = spearman_ci(x, y, np.arange(50), n_boot=300)
    x3, y3, ids = np.tile(x, 3), np.tile(y, 3), np.tile(np.arange(50), 3)  # each point seen 3 times
    _, lo3, hi3, _ = spearman_ci(x3, y3, ids, n_boot=300)
    assert abs((hi3 - lo3) - (hi1 - lo1)) < 0.1  # copies of a prompt are one cluster, not more evidence


def test_density_and_nll_on_a_model(bench_lm):
    prompts = ["France is a country", "The capital of France is", "Paris is a city", "A B C D", "one two three"]
    dens = knn_density(bench_lm.model, bench_lm.tok, prompts[:2], prompts, k=10)
    assert set(dens) == set(prompts[:2]) and all(v > 0 for v in dens.values())  # k shrank to 4; self excluded
    too_long = "word " * 200
    dens = knn_density(bench_lm.model, bench_lm.tok, [prompts[0], too_long], prompts + [too_long], k=3)
    assert dens[prompts[0]] > 0 and math.isnan(dens[too_long])  # beyond the context: left out, NaN
    nll = target_nll_of(bench_lm.model, bench_lm.tok, prompts[:2], ["Paris", "Rome"])
    assert len(nll) == 2 and all(v > 0 for v in nll)


def test_correlations_per_editor_and_verdicts():
    rng = np.random.default_rng(2)
    n = 120
    lam = rng.gamma(2.0, size=n)
    frame = pd.DataFrame({"editor": ["a"] * n, "prompt": [f"p{i}" for i in range(n)], "lambda_max_before": lam,
                          "locality": 1 - lam / lam.max() * 0.5, "knn_distance": rng.normal(size=n)})
    corrs = {(c.x, c.y, c.control): c for c in correlations(frame, n_boot=100)}
    assert ("lambda_max_before", "locality_drop", "target_nll") not in corrs  # no target_nll column
    strong = corrs[("lambda_max_before", "locality_drop", None)]
    assert strong.rho > 0.99 and strong.verdict == "supports"
    assert corrs[("lambda_max_before", "knn_distance", None)].verdict == "inconclusive"


def test_edit_measures_are_taken_alone_cached_and_nan_beyond_the_context(bench_lm):
    reference = ["France is a country", "The capital of France is", "Paris is a city", "A B C D", "one two three"]
    measures = EditMeasures(bench_lm.model, bench_lm.tok, reference, k=3)
    requests = [EditRequest("The capital of France is", "Rome", "France"),
                EditRequest("Paris is a city", "big", "Paris"), EditRequest("word " * 200, "x", "word")]
    first = measures(requests)
    alone = KnnReference(bench_lm.model, bench_lm.tok, reference, k=3).distances([requests[1].prompt], batch_size=1)
    assert first[1]["knn_distance"] == alone[requests[1].prompt]  # a batch of one: the same value in any job
    assert first[0]["target_nll"] == target_nll_of(bench_lm.model, bench_lm.tok, [requests[0].prompt], ["Rome"])[0]
    assert math.isnan(first[2]["knn_distance"]) and math.isnan(first[2]["target_nll"])  # too long: not measurable
    assert measures(requests[:2]) == first[:2]
    assert math.isnan(EditMeasures(bench_lm.model, bench_lm.tok, ["one"], k=3)(requests[:1])[0]["knn_distance"])


def test_reference_prompts_of_the_world_and_of_a_file():
    world = reference_prompts("world", [])
    assert len(world) > 100 and len(set(world)) == len(world)
    cases = presets("test", 2)
    assert reference_prompts("data.json", cases)[0] == cases[0].request.prompt
    assert len(reference_prompts("data.json", cases)) == sum(1 + len(c.probes) for c in cases)

"""The hypothesis measures: k-NN density, target NLL, (partial) Spearman with cluster-bootstrap CIs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sss_core.evaluation.hypothesis import (
    EditMeasures,
    KnnReference,
    correlations,
    how_many_tests,
    knn_density,
    partial_spearman,
    reference_prompts,
    spearman_ci,
    target_nll_of,
)
from sss_core.embeddings import embed_prompts
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
                          "locality": 1 - lam / lam.max() * 0.5 + rng.normal(scale=0.02, size=n),
                          "knn_distance": rng.normal(size=n)})
    corrs = {(c.x, c.y, c.control): c for c in correlations(frame, n_boot=100)}
    assert ("lambda_max_before", "locality_drop", "target_nll") not in corrs  # no target_nll column
    strong = corrs[("lambda_max_before", "locality_drop", None)]
    assert strong.rho > 0.8 and strong.verdict == "supports" and strong.p_adjusted < 0.05
    assert corrs[("lambda_max_before", "knn_distance", None)].verdict == "inconclusive"


def test_two_editors_with_identical_measurements_are_one_test_for_bh():
    """Editors that made identical edits give the same correlations: BH counts each once, and the repeat says whose
    numbers it repeats; an editor with other numbers is a test of its own."""
    from scipy import stats
    rng = np.random.default_rng(3)
    n = 60
    lam = rng.gamma(2.0, size=n)
    one = pd.DataFrame({"prompt": [f"p{i}" for i in range(n)], "lambda_max_before": lam,
                        "locality": 1 - lam / lam.max() * 0.3 + rng.normal(scale=0.1, size=n),
                        "knn_distance": rng.normal(size=n)})
    other = one.assign(locality=rng.uniform(size=n))
    frame = pd.concat([one.assign(editor="ft-l"), one.assign(editor="ft-l+sss"), other.assign(editor="mend")])
    corrs = correlations(frame, n_boot=100)
    tests = [c for c in corrs if c.expected_sign != 0]
    by = {(c.editor, c.x, c.y, c.control): c for c in tests}
    for (editor, x, y, control), c in by.items():
        twin = by[("ft-l", x, y, control)]
        # ft-l+sss repeats every ft-l test; mend only those that do not read its own locality
        repeat = editor == "ft-l+sss" or (editor == "mend" and "locality_drop" not in (x, y))
        assert c.same_as == ("ft-l" if repeat else None), (editor, x, y)
        if repeat:
            assert c.p == twin.p and c.p_adjusted == twin.p_adjusted
    assert {c.tests for c in corrs} == {sum(c.same_as is None for c in tests)} and 0 < corrs[0].tests < len(tests)
    n_tests = corrs[0].tests
    assert how_many_tests(corrs) == (f"{n_tests + 4} rows with a predicted sign, which are {n_tests} tests: ft-l+sss's 3 "
                                   "rows and mend's 1 row repeat ft-l's numbers exactly (the same measurements, e.g. "
                                   "identical edits)")
    alone = correlations(one.assign(editor="ft-l"), n_boot=100)
    assert how_many_tests(alone) == f"{alone[0].tests} tests (the rows with a predicted sign)"
    twins = correlations(frame[frame["editor"] != "mend"], n_boot=100)
    assert twins[0].tests == alone[0].tests and how_many_tests(twins) == (
        f"{2 * alone[0].tests} rows with a predicted sign, which are {alone[0].tests} tests: ft-l+sss's "
        f"{alone[0].tests} rows repeat ft-l's numbers exactly (the same measurements, e.g. identical edits)")
    distinct = [c for c in tests if c.same_as is None]
    assert [c.p_adjusted for c in distinct] == pytest.approx(
        list(stats.false_discovery_control([c.p for c in distinct], method="bh")))


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


def test_knn_reference_distances_worked_out_in_numpy(bench_lm):
    """Mean Euclidean distance to the k nearest reference embeddings, the prompt itself excluded."""
    model, tok = bench_lm.model, bench_lm.tok
    fitting = ["France is a country", "The capital of France is", "Paris is a city", "A B C D", "one two three"]
    too_long = "word " * 200
    ref = KnnReference(model, tok, fitting + ["Paris is a city", too_long, ""], k=2)
    assert ref.reference == fitting and ref.k == 2  # duplicates once; too long and empty left out
    assert (ref.fits(fitting[0]), ref.fits(too_long), ref.fits("")) == (True, False, False)
    emb = embed_prompts(model, tok, fitting, "mean")  # (5, d)
    assert np.allclose(ref.embeddings.numpy(), emb, atol=1e-6)
    queries = ["The capital of France is", "Rome is a city"]
    got = ref.distances(queries + [too_long], batch_size=1)
    q = np.stack([embed_prompts(model, tok, [p], "mean")[0] for p in queries])  # each alone
    d = np.linalg.norm(q[:, None, :] - emb[None, :, :], axis=-1)  # (2, 5)
    d[0, 1] = np.inf  # the first query is reference prompt 1: not its own neighbour
    expected = np.sort(d, axis=1)[:, :2].mean(1)
    assert [got[p] for p in queries] == pytest.approx(expected.tolist(), rel=1e-5)
    assert math.isnan(got[too_long]) and list(got) == queries + [too_long]
    assert ref.distances([too_long]) == {too_long: pytest.approx(math.nan, nan_ok=True)}
    assert KnnReference(model, tok, fitting, k=10).k == 4  # shrunk to the other prompts there are
    last = KnnReference(model, tok, fitting, k=2, pooling="last")
    assert np.allclose(last.embeddings.numpy(), embed_prompts(model, tok, fitting, "last"), atol=1e-6)
    assert knn_density(model, tok, queries, fitting + [too_long], k=2) == pytest.approx(
        ref.distances(queries), rel=1e-5)
    with pytest.raises(ValueError, match="the reference set has 1 prompts; the density needs at least 2"):
        KnnReference(model, tok, ["one two three", too_long], k=3)


def test_edit_measures_measure_each_prompt_once(bench_lm, monkeypatch, caplog):
    import sss_core.evaluation.hypothesis as hyp
    calls = []
    real = hyp.target_nll_of
    monkeypatch.setattr(hyp, "target_nll_of", lambda *a, **kw: calls.append(a[2:4]) or real(*a, **kw))
    reference = ["France is a country", "The capital of France is", "Paris is a city", "A B C D"]
    measures = EditMeasures(bench_lm.model, bench_lm.tok, reference, k=2)
    assert measures._knn is None  # the reference is embedded on first use
    requests = [EditRequest("The capital of France is", "Rome"), EditRequest("The capital of France is", "Oslo")]
    first = measures(requests + requests[:1])
    assert calls == [(["The capital of France is"], ["Rome"]), (["The capital of France is"], ["Oslo"])]
    assert first[0]["knn_distance"] == first[1]["knn_distance"] == first[2]["knn_distance"]
    assert first[0]["target_nll"] != first[1]["target_nll"] and first[2] == first[0]
    assert measures._knn.k == 2 and measures._knn.reference == reference
    with caplog.at_level("WARNING", logger="sss_core.evaluation.hypothesis"):
        small = EditMeasures(bench_lm.model, bench_lm.tok, ["one"], k=2)
        values = small(requests) + small([EditRequest("Paris is a city", "big")])  # a new prompt: not tried again
    assert [r.getMessage() for r in caplog.records] == [
        "no k-NN density: the reference set has 1 prompts; the density needs at least 2"]  # tried once
    assert all(math.isnan(v["knn_distance"]) and v["target_nll"] > 0 for v in values)


def test_knn_defaults_and_edges(bench_lm, caplog):
    """k defaults to 10; two reference prompts are enough (k = 1); a one-token prompt fits, and so does one
    exactly as long as the context; the pooling reaches the embedding; a target past the context gets a
    NaN NLL with a warning that names the prompt."""
    model, tok = bench_lm.model, bench_lm.tok
    many = [f"Subject {i} lives in" for i in range(15)]
    assert KnnReference(model, tok, many).k == 10
    assert EditMeasures(model, tok, many)._knn_reference().k == 10
    assert KnnReference(model, tok, many[:2], k=5).k == 1
    limit = model.config.n_positions
    longest = next(text for k in range(limit, 0, -1) for end in ("", " is", " a city", " is a")
                   if len(tok(text := "France " * k + end.strip() if end else ("France " * k).strip())["input_ids"])
                   == limit)
    ref = KnnReference(model, tok, many)
    one_token = next(t for t in ("a", "is", "the", "of", "A", "I") if len(tok(t)["input_ids"]) == 1)
    assert ref.fits(longest) and ref.fits(one_token) and not ref.fits(longest + " is")
    assert knn_density(model, tok, many[:2], many, pooling="last") == pytest.approx(
        KnnReference(model, tok, many, pooling="last").distances(many[:2]))
    assert knn_density(model, tok, many[:2], many) == pytest.approx(KnnReference(model, tok, many).distances(many[:2]))
    measures = EditMeasures(model, tok, many)
    with caplog.at_level("WARNING", logger="sss_core.evaluation.hypothesis"):
        value = measures([EditRequest(many[0], "x " * limit)])[0]
    assert math.isnan(value["target_nll"]) and value["knn_distance"] > 0
    assert [r.getMessage().split(": ")[0] for r in caplog.records] == [f"no target NLL for {many[0]!r}"]
    assert "longer than" in caplog.records[0].getMessage() or "tokens" in caplog.records[0].getMessage()


def test_rows_at_once_equal_the_one_sample_statistic():
    """spearman_rows (every bootstrap resample in one call) gives partial_spearman of each row: ties, a
    constant control and a constant variable (NaN) included."""
    import numpy as np

    from sss_core.evaluation.hypothesis import partial_spearman, spearman_rows
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(40, 12)), 1)
    y = x + rng.normal(size=(40, 12))
    z = rng.normal(size=(40, 12))
    z[5] = 1.0  # a constant control: the residual on the mean alone
    y[7] = 2.0  # a constant variable: undefined
    for control in (None, z):
        rows = spearman_rows(x, y, control)
        one = [partial_spearman(x[i], y[i], None if control is None else control[i]) for i in range(40)]
        assert np.isnan(rows[7]) and np.isnan(one[7])
        assert np.allclose(rows, one, atol=1e-12, equal_nan=True)

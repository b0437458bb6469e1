"""The report's tables on a small hand-made results file with known means and stds.

Every cell is mean ± std over seeds of the per-seed mean over cases (sample std, ddof 1); failed
edits are left out. The numbers below were worked out by hand from ``RECORDS``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sss_core.evaluation import report
from sss_core.evaluation.hypothesis import correlations, partial_spearman, spearman_ci
from sss_core.evaluation.store import BenchStore


def _record(editor, seed, case, mode="single", C=None, error=None, lam=(0.5, 0.1), **metrics):
    rec = {"editor": editor, "seed": seed, "case_id": case, "mode": mode, "C": C, "error": error,
           "request": {"prompt": f"prompt {case}", "target_new": "x"}}
    if error is None:
        rec.update(metrics=metrics, lambda_max_before=lam[0], lambda_max_after=lam[1], seconds=1.0,
                   probes=[{"group": "rewrite", "post": [f"{editor}{metrics['reliability']}"]}])
    return rec


# ft-l, per seed (cases a, b):  reliability  locality    generality  portability (case a only)
#   seed 0                      1.0, 0.5     0.5, 1.0    0.0, 1.0    1.0
#   seed 1                      1.0, 1.0     1.0, 0.8    0.5, 0.5    0.0     (+ a failed edit, left out)
#   seed 2                      0.5, 0.5     0.0, 0.6    1.0, 1.0    0.5
# per-seed means: reliability .75 1 .5 -> 75.00 ± 25.00; locality .75 .9 .3 -> 65.00 ± 31.22;
# generality .5 .5 1 -> 66.67 ± 28.87; portability 1 0 .5 -> 50.00 ± 50.00 (1 case per seed)
FTL = [("0", "a", 1.0, 0.5, 0.0, 1.0), ("0", "b", 0.5, 1.0, 1.0, None),
       ("1", "a", 1.0, 1.0, 0.5, 0.0), ("1", "b", 1.0, 0.8, 0.5, None),
       ("2", "a", 0.5, 0.0, 1.0, 0.5), ("2", "b", 0.5, 0.6, 1.0, None)]
RECORDS = [_record("ft-l", int(s), c, reliability=r, locality=loc, generality=g, portability=p, neighbour=loc,
                   lam=(0.5, 0.1 if c == "a" else 0.9))
           for s, c, r, loc, g, p in FTL]
RECORDS.append(_record("ft-l", 1, "c", error="EditFailed: the loss became nan"))
# ft-l+sss, seed 0 only: one seed shows no std
RECORDS += [_record("ft-l+sss", 0, "a", reliability=1.0, locality=1.0, generality=1.0, portability=None),
            _record("ft-l+sss", 0, "b", reliability=0.0, locality=0.5, generality=0.0, portability=None)]
# a C sweep of ft-l+sss, 2 seeds x 2 cases: C = 0 reliability 1 1 | 1 .5 ; C = 0.5 reliability .5 0 | 1 1
for seed, C, rels in ((0, 0.0, (1.0, 1.0)), (1, 0.0, (1.0, 0.5)), (0, 0.5, (0.5, 0.0)), (1, 0.5, (1.0, 1.0))):
    RECORDS += [_record("ft-l+sss", seed, case, mode=f"sweep@C={C:g}", C=C, reliability=r, locality=1.0, generality=r)
                for case, r in zip("ab", rels)]


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    store = BenchStore(tmp_path_factory.mktemp("bench"))
    with store.open() as results:
        for rec in RECORDS:
            results.write(rec)
    return store.frame()


def test_seed_stats_mean_and_std_over_seed_means(frame):
    s = report.seed_stats(report.single(frame), ["editor"], ["reliability", "locality", "portability"])
    assert s.loc["ft-l", "reliability:mean"] == pytest.approx(0.75)
    assert s.loc["ft-l", "reliability:std"] == pytest.approx(0.25)
    assert s.loc["ft-l", "locality:mean"] == pytest.approx(0.65)
    assert s.loc["ft-l", "locality:std"] == pytest.approx(np.std([0.75, 0.9, 0.3], ddof=1))
    assert s.loc["ft-l", "portability:cases"] == 1 and s.loc["ft-l", "reliability:cases"] == 2
    assert s.loc["ft-l", "seeds"] == 3 and s.loc["ft-l+sss", "seeds"] == 1
    assert math.isnan(s.loc["ft-l+sss", "reliability:std"])


def test_table1_cells(frame):
    md, rows = report.table1(frame)
    assert md.splitlines() == [
        "| Metric | ft-l | ft-l+sss |",
        "|---|---|---|",
        "| Reliability | 75.00 ± 25.00 | 50.00 |",
        "| Locality | 65.00 ± 31.22 | 75.00 |",
        "| Generality | 66.67 ± 28.87 | 50.00 |",
        "| Portability | 50.00 ± 50.00 | – |",
        "| cases / seed | 2 | 2 |"]
    assert {r["table"] for r in rows} == {"table1"}
    cells = {(r["editor"], r["metric"]): (r["mean"], r["std"], r["seeds"], r["cases_per_seed"]) for r in rows}
    assert cells[("ft-l", "generality")] == pytest.approx((2 / 3, np.std([0.5, 0.5, 1.0], ddof=1), 3, 2))
    assert cells[("ft-l", "portability")] == pytest.approx((0.5, 0.5, 3, 1))
    assert report.portability_note(frame) == (
        "Portability: the mean over the 1 of 2 cases per seed that have a portability probe (the other columns: "
        "all 2); Table 5 gives each portability group.")


def test_table3_and_c_sweep_cells(frame):
    md, _ = report.table3(frame)
    assert "| Neighbor | 65.00 ± 31.22 | – |" in md.splitlines()
    md, rows, stats_ = report.c_sweep(frame)
    assert md.splitlines()[0] == "| C | ft-l+sss: Reliability | ft-l+sss: Generality | ft-l+sss: Locality |"
    assert {r["table"] for r in rows} == {"c_sweep"} and {r["table"] for r in report.table3(frame)[1]} == {"table3"}
    assert report.c_sweep(frame[frame["mode"] == "single"])[:2] == ("_no C sweep_", [])
    # C = 0: seed means 1, .75 -> 87.50 ± 17.68; C = 0.5: seed means .25, 1 -> 62.50 ± 53.03
    assert md.splitlines()[2:] == ["| 0.00 | 87.50 ± 17.68 | 87.50 ± 17.68 | 100.00 ± 0.00 |",
                                   "| 0.50 | 62.50 ± 53.03 | 62.50 ± 53.03 | 100.00 ± 0.00 |"]
    assert list(stats_.index) == [("ft-l+sss", 0.0), ("ft-l+sss", 0.5)]


def test_sss_effect_and_lambda_tables(frame):
    md, rows = report.sss_effect_table(frame, n_boot=200)
    # seed 0: a 1.0 -> 1.0, b 0.5 -> 0.0: mean difference -0.25 over 2 paired cases
    rel = next(r for r in rows if r["metric"] == "reliability")
    assert (rel["editor"], rel["baseline"], rel["pairs"]) == ("ft-l+sss", "ft-l", 2)
    assert rel["mean_diff"] == pytest.approx(-0.25) and rel["lo"] == pytest.approx(-0.5) and rel["hi"] == 0
    # generality +1 / -1 and locality +.5 / -.5 average to 0; ft-l+sss has no portability probe; the
    # two editors' predictions differ in both cases (the hand-made "post" names the editor)
    assert md.splitlines() == [
        "| Pair | Δ Reliability | Δ Generality | Δ Locality | Δ Portability | % cases with any prediction changed "
        "| paired cases |",
        "|---|---|---|---|---|---|---|",
        "| ft-l+sss - ft-l | -25.00 [-50.00, +0.00] | +0.00 [-100.00, +100.00] | +0.00 [-50.00, +50.00] | – "
        "| 100.0 | 2 |"]
    assert {r["table"] for r in rows} == {"sss_effect"} and len(rows) == 3  # no portability pairs
    assert report.sss_effect_table(frame[frame["editor"] == "ft-l"])[0] == "_no editor ran both with and without SSS_"
    lam = report.lambda_table(frame).splitlines()[2]
    # ft-l: 6 edits, lambda 0.5 -> 0.1 (3) or 0.9 (3): median after 0.5, fell in half of them
    assert lam == "| ft-l | 0.5 | 0.5 | 50.0 | 6 |"
    assert report.lambda_table(frame).splitlines()[0] == (
        "| Editor | median lambda_max before | median after | % edits where it fell | edits |")


def test_spearman_and_partial_spearman_known_values():
    x, y = np.array([1, 2, 3, 4, 5.0]), np.array([2, 1, 4, 3, 5.0])
    assert partial_spearman(x, y) == pytest.approx(0.8)
    assert partial_spearman(x, -y) == pytest.approx(-0.8)
    assert math.isnan(partial_spearman(x, np.ones(5)))
    rng = np.random.default_rng(1)
    a, b, z = rng.normal(size=40), rng.normal(size=40), rng.normal(size=40)
    ra, rb, rz = (stats.rankdata(v) for v in (a, b, z))
    res = [r - np.polyval(np.polyfit(rz, r, 1), rz) for r in (ra, rb)]
    assert partial_spearman(a, b, z) == pytest.approx(np.corrcoef(*res)[0, 1])
    rho, lo, hi, p = spearman_ci(a, b, np.arange(40))
    assert rho == pytest.approx(stats.spearmanr(a, b).statistic) and lo < rho < hi
    # p from the same bootstrap as the CI (not scipy's t-approximation): in (0, 1], and on the CI's side
    assert 0 < p <= 1 and (lo > 0 or hi < 0) == (p < 0.05)


def test_correlations_on_a_monotone_frame():
    """locality falls as lambda_max grows: rho(lambda_max, locality_drop) = +1, the paper's side; but every
    resample of a perfectly monotone sample gives +1 too, so the bootstrap has no spread, no CI and no p: the
    verdict claims nothing ('inconclusive'), it does not call 8 points a certainty."""
    n = 8
    frame = pd.DataFrame({"editor": "ft-l", "prompt": [f"p{i}" for i in range(n)],
                          "lambda_max_before": np.arange(n, dtype=float), "locality": 1 - np.arange(n) / n,
                          "knn_distance": -np.arange(n, dtype=float), "target_nll": np.arange(n)[::-1] * 1.0})
    corrs = {(c.x, c.y, c.control): c for c in correlations(frame, n_boot=100)}
    lam = corrs[("lambda_max_before", "locality_drop", None)]
    assert lam.rho == pytest.approx(1.0) and lam.verdict == "inconclusive" and (lam.points, lam.clusters) == (n, n)
    assert math.isnan(lam.lo) and math.isnan(lam.p) and lam.tests == 0  # no p: not among the table's tests
    knn = corrs[("knn_distance", "locality_drop", None)]
    assert knn.rho == pytest.approx(-1.0) and knn.verdict == "inconclusive"
    assert corrs[("lambda_max_before", "knn_distance", None)].rho == pytest.approx(-1.0)
    assert corrs[("target_nll", "locality_drop", None)].verdict == "no prediction"


def test_sss_effect_is_a_paired_percentile_bootstrap_over_cases(tmp_path):
    """The CI is the 2.5 / 97.5 percentile of 1000 case-resampled mean differences (numpy seed 0), taken
    per pair of editors that share cases; a pair without shared cases is skipped, a metric no pair has
    shows "–" and the next metrics are still filled. lambda_max "fell" means strictly below."""
    rng = np.random.default_rng(5)
    n = 40
    base, diff = rng.uniform(0, 1, n), rng.normal(0.1, 0.2, n)
    records = [_record("ft-l", 0, f"x{i}", reliability=1.0, locality=1.0, generality=1.0) for i in range(3)]
    records += [_record("ft-l+sss", 0, f"y{i}", reliability=1.0, locality=1.0, generality=1.0) for i in range(3)]
    for i in range(n):  # MEND pairs: generality unknown (no paraphrase probe), reliability and locality differ
        records.append(_record("mend", 0, f"c{i:02d}", reliability=base[i], locality=base[i], generality=None,
                               lam=(0.5, 0.5 if i == 0 else 0.25)))
        sss = _record("mend+sss", 0, f"c{i:02d}", reliability=base[i] + diff[i], locality=base[i],
                      generality=None)
        if i % 4:  # a quarter of the cases predict alike
            sss["probes"] = records[-1]["probes"]
        records.append(sss)
    store = BenchStore(tmp_path)
    with store.open() as results:
        for rec in records:
            results.write(rec)
    frame = store.frame()
    md, rows = report.sss_effect_table(frame)
    assert md.splitlines()[2].startswith("| mend+sss - mend | ") and len(md.splitlines()) == 3
    cells = md.splitlines()[2].split(" | ")
    assert cells[2] == "–" and cells[3] == "+0.00 [+0.00, +0.00]" and cells[5:] == ["25.0", "40 |"]
    reference = np.random.default_rng(0)
    boots = [diff[reference.integers(0, n, n)].mean() for _ in range(1000)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    rel = rows[0]
    assert (rel["metric"], rel["pairs"]) == ("reliability", n)
    assert (rel["mean_diff"], rel["lo"], rel["hi"]) == pytest.approx((diff.mean(), lo, hi), rel=1e-9)
    assert report.sss_effect_table(frame)[1] == rows  # the same CI every time
    lam = report.lambda_table(frame).splitlines()
    assert "| mend | 0.5 | 0.25 | 97.5 | 40 |" in lam  # the edit whose lambda_max stayed at 0.5 did not fall


def test_partial_spearman_of_a_constant_is_undefined():
    """A constant y has no rank correlation with anything, also after z is partialled out (the residual
    ranks are then floating-point noise, which must not be read as a correlation)."""
    x, z = np.array([0.1, 0.4, 0.2, 0.3, 0.9]), np.array([1.0, 2.0, 3.0, 4.0, 0.5])
    assert math.isnan(partial_spearman(x, np.full(5, 0.5), z))
    assert math.isnan(partial_spearman(np.full(5, 0.5), x, z))
    assert math.isnan(partial_spearman(x, 2 * z + 1, z))  # y's ranks are z's: nothing left
    assert partial_spearman(x, np.array([2.0, 1.0, 4.0, 3.0, 5.0]), z) == pytest.approx(
        np.corrcoef(*[r - np.polyval(np.polyfit(stats.rankdata(z), r, 1), stats.rankdata(z))
                      for r in (stats.rankdata(x), stats.rankdata([2.0, 1.0, 4.0, 3.0, 5.0]))])[0, 1])


def test_spearman_ci_takes_ci_and_p_from_one_cluster_bootstrap():
    """rho on the finite points only; from 1000 resamples of whole clusters (numpy seed 0, undefined
    resamples left out), se = half the 15.9-84.1 percentile spread of atanh(rho*); CI = tanh(atanh(rho) ± q se)
    and p = 2 (1 - Phi(|atanh(rho)| / se)), so the CI excludes 0 exactly when p < 1 - level; four points
    at least."""
    rng = np.random.default_rng(4)
    x, y, z = rng.normal(size=30), rng.normal(size=30), rng.normal(size=30)
    y = y + x
    clusters = np.repeat(np.arange(10), 3)
    x[0], y[4], z[7] = np.nan, np.inf, np.nan  # left out, with their points
    rho, lo, hi, p = spearman_ci(x, y, clusters, z)
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    assert rho == pytest.approx(partial_spearman(x[ok], y[ok], z[ok]))
    xs, ys, zs, cs = x[ok], y[ok], z[ok], clusters[ok]
    ids, inverse = np.unique(cs, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
    reference, boots = np.random.default_rng(0), []
    for _ in range(1000):
        idx = np.concatenate([members[i] for i in reference.integers(0, len(ids), len(ids))])
        value = partial_spearman(xs[idx], ys[idx], zs[idx])
        if not math.isnan(value):
            boots.append(value)
    zb = np.arctanh(np.clip(boots, -1 + 1e-6, 1 - 1e-6))
    se = (np.percentile(zb, 84.134) - np.percentile(zb, 15.866)) / 2
    z0 = math.atanh(rho)
    assert (lo, hi) == pytest.approx((math.tanh(z0 - 1.959964 * se), math.tanh(z0 + 1.959964 * se)), rel=1e-5)
    assert p == pytest.approx(2 * stats.norm.sf(abs(z0) / se), rel=1e-9)
    half = spearman_ci(x, y, clusters, z, level=0.5)
    assert half[1:3] == pytest.approx((math.tanh(z0 - 0.6744898 * se), math.tanh(z0 + 0.6744898 * se)), rel=1e-5)
    finite = np.isfinite(x) & np.isfinite(y)  # without a control, only x and y decide
    assert spearman_ci(x, y, clusters)[0] == pytest.approx(partial_spearman(x[finite], y[finite]))
    three = spearman_ci(np.array([1.0, 2, 3, np.nan]), np.array([1.0, 2, 3, 4]), np.arange(4))
    assert all(math.isnan(v) for v in three)  # three finite points: no rho
    four = spearman_ci(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4]), np.arange(4))
    assert four[0] == pytest.approx(0.8) and all(math.isnan(v) for v in four[1:])  # rho, but 4 < 5 clusters
    five = spearman_ci(np.array([1.0, 2, 3, 4, 5]), np.array([1.0, 3, 2, 5, 4]), np.arange(5))
    assert five[0] == pytest.approx(0.8) and not math.isnan(five[1]) and not math.isnan(five[3])


@pytest.mark.parametrize("seed", range(40))
def test_a_verdicts_ci_and_its_p_never_disagree(seed):
    """Over samples from no to strong correlation, the 95% CI excludes 0 exactly when p < 0.05 (the
    pair that used to disagree: a percentile CI beside a t-test p, e.g. CI [-0.286, -0.066], p = 0.077)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 60))
    x = rng.normal(size=n)
    y = rng.uniform(0, 0.6) * x + rng.normal(size=n)
    rho, lo, hi, p = spearman_ci(x, y, np.repeat(np.arange(n), 1), n_boot=300, seed=seed)
    assert (lo > 0 or hi < 0) == (p < 0.05), (rho, lo, hi, p)


def test_benjamini_hochberg_over_the_table_decides_the_verdicts():
    """Every test of a predicted sign is adjusted together (scipy's BH); the verdict follows the adjusted p,
    so a lone p of 0.03 among six tests is not 'supports'; 'no prediction' rows are not tests."""
    from sss_core.evaluation.hypothesis import Correlation, adjust

    def corr(p: float, sign: int = 1, rho: float = 0.3) -> Correlation:
        return Correlation("ft-l", "x", "y", None, rho, -0.1, 0.5, p, 100, 100, sign)

    raw = [corr(0.03), corr(0.6), corr(0.4), corr(0.9), corr(0.001, -1), corr(0.7), corr(0.0001, 0)]
    adjusted = adjust(raw)
    assert [c.tests for c in adjusted] == [6] * 7
    assert [c.p_adjusted for c in adjusted[:6]] == pytest.approx(
        list(stats.false_discovery_control([0.03, 0.6, 0.4, 0.9, 0.001, 0.7], method="bh")))
    assert adjusted[0].p_adjusted == pytest.approx(0.09) and adjusted[0].verdict == "inconclusive"
    assert adjusted[4].p_adjusted == pytest.approx(0.006) and adjusted[4].verdict == "contradicts"  # rho > 0, < 0 predicted
    assert math.isnan(adjusted[6].p_adjusted) and adjusted[6].verdict == "no prediction"
    assert raw[0].verdict == "supports"  # unadjusted, the same p would have been called a finding


def test_correlations_pass_their_bootstrap_size_on():
    n = 12
    frame = pd.DataFrame({"editor": "ft-l", "prompt": [f"p{i}" for i in range(n)],
                          "lambda_max_before": np.arange(n, dtype=float), "locality": np.sin(np.arange(n)),
                          "knn_distance": np.cos(np.arange(n)), "target_nll": np.arange(n)[::-1] % 5 * 1.0})
    default = {(c.x, c.y, c.control): (c.lo, c.hi) for c in correlations(frame)}
    x, y = frame["lambda_max_before"].to_numpy(), 1 - frame["locality"].to_numpy()
    assert default[("lambda_max_before", "locality_drop", None)] == pytest.approx(
        spearman_ci(x, y, frame["prompt"].to_numpy(), n_boot=1000)[1:3])
    few = {(c.x, c.y, c.control): (c.lo, c.hi) for c in correlations(frame, n_boot=50)}
    assert few[("lambda_max_before", "locality_drop", None)] == pytest.approx(
        spearman_ci(x, y, frame["prompt"].to_numpy(), n_boot=50)[1:3])

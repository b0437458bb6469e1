"""The whole bench report (report.md, summary.csv, cases.csv, hypothesis.csv, the plots) written from a
small hand-made results folder with known numbers: no model, no bench run.

The folder holds single edits of rome and memit (registry order rome, memit; alphabetical order memit,
rome: the tables must keep the registry's), sequential edits of ft-l and ft-l+sss, batch edits of
memit and a C sweep of ft-l+sss. Every expected cell was worked out by hand from ``RECORDS``
(mean ± sample std over seeds of the per-seed mean over cases, in percent).
"""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest
from scipy import stats

from sss_core.errors import RequestError
from sss_core.evaluation import report
from sss_core.evaluation.bench import BenchConfig
from sss_core.evaluation.hypothesis import PAIRS, Correlation, EditMeasures, adjust, reference_prompts
from sss_core.evaluation.store import BenchStore
from sss_core.types import EditCase, EditRequest, Probe


def _rec(editor, seed, case, mode="single", n=None, C=None, seconds=1.0, error=None, lam=(0.5, 0.1),
         measures=None, **metrics):
    rec = {"editor": editor, "seed": seed, "case_id": case, "mode": mode, "n": n, "position": None, "C": C,
           "error": error, "seconds": seconds, "request": {"prompt": f"prompt {case}", "target_new": "x"},
           "lambda_max_before": lam[0], "lambda_max_after": lam[1],
           "probes": [{"group": "rewrite", "post": [f"{editor}-{case}"]}], "metrics": metrics}
    if measures is not None:
        rec["knn_distance"], rec["target_nll"] = measures
    return rec


# Single edits. rome, cases a (subject_replace probe) and b (one_hop probe), seeds 0 and 1:
#   seed 0   a: rel 1  gen 1   loc 1    subject_replace 1     b: rel 1  gen 0    loc .5  one_hop 0
#   seed 1   a: rel 0  gen 1   loc 1    subject_replace 0     b: rel 1  gen .5   loc 1   one_hop 1
#   (+ a failed edit of case c in seed 1, left out of every mean; its seconds are unknown)
# per-seed means: rel 1, .5 -> 75.00 ± 35.36; gen .5, .75 -> 62.50 ± 17.68; loc .75, 1 -> 87.50 ± 17.68;
# portability (each case's pooled group) .5, .5 -> 50.00 ± 0.00. Table 5, subject_replace (case a only):
# rel 1, 0 -> 50.00 ± 70.71; gen 1, 1 -> 100.00 ± 0.00; subject_replace 1, 0 -> 50.00 ± 70.71.
# one_hop (case b only): rel 100.00 ± 0.00; gen 0, .5 -> 25.00 ± 35.36; one_hop 0, 1 -> 50.00 ± 70.71.
# lambda_max before (a, b): seed 0 .1, .4; seed 1 .2, .3; knn_distance 3, 1, 2, 4; target_nll 1, 2, 3, 4.
ROME = [(0, "a", 1.0, 1.0, 1.0, "subject_replace", 1.0, 0.1, 3.0, 1.0),
        (0, "b", 1.0, 0.0, 0.5, "one_hop", 0.0, 0.4, 1.0, 2.0),
        (1, "a", 0.0, 1.0, 1.0, "subject_replace", 0.0, 0.2, 2.0, 3.0),
        (1, "b", 1.0, 0.5, 1.0, "one_hop", 1.0, 0.3, 4.0, 4.0)]
RECORDS = [_rec("rome", s, c, seconds=1.0 + i, lam=(lam, lam / 2), measures=(knn, nll), reliability=r, generality=g,
                locality=loc, neighbour=loc, portability=p, **{group: p})
           for i, (s, c, r, g, loc, group, p, lam, knn, nll) in enumerate(ROME)]
RECORDS.append(_rec("rome", 1, "c", seconds=None, error="EditFailed: the loss became nan"))
# memit: every score 1 (locality constant: its correlations are undefined), no portability probe
RECORDS += [_rec("memit", s, c, lam=(0.5, 0.6), measures=(1.0, 1.0), reliability=1.0, generality=1.0,
                 locality=1.0, neighbour=1.0, portability=None) for s in (0, 1) for c in "ab"]
# Sequential, ft-l, seeds 0 and 1, cases a and b. n = 1: rel 1 everywhere, 0.5 s each. n = 2: rel s0 (1, .5),
# s1 (1, 1) -> 87.50 ± 17.68; scored after both edits ("/final"): s0 (0, .5), s1 (.5, .5) -> 37.50 ± 17.68.
# Locality is 1 and generality .5 throughout. ft-l+sss: n = 2, seed 0 only: rel 0, 1 -> 50.00 (one seed).
SEQ = {("ft-l", "sequential@1"): {0: (1.0, 1.0), 1: (1.0, 1.0)},
       ("ft-l", "sequential@2"): {0: (1.0, 0.5), 1: (1.0, 1.0)},
       ("ft-l", "sequential@2/final"): {0: (0.0, 0.5), 1: (0.5, 0.5)},
       ("ft-l+sss", "sequential@2"): {0: (0.0, 1.0)}}
for (editor, mode), by_seed in SEQ.items():
    n = int(mode.split("@")[1].split("/")[0])
    RECORDS += [_rec(editor, s, c, mode=mode, n=n, seconds=0.5 if n == 1 else 1.0, reliability=r, locality=1.0,
                     generality=0.5)
                for s, rels in by_seed.items() for c, r in zip("ab", rels)]
# Batch, memit: n = 2, rel s0 (1, 1), s1 (0, 1) -> 75.00 ± 35.36; a last batch of one (case c, seed 0): rel 0.
RECORDS += [_rec("memit", s, c, mode="batch@2", n=2, reliability=r, locality=1.0, generality=0.5)
            for s, rels in {0: (1.0, 1.0), 1: (0.0, 1.0)}.items() for c, r in zip("ab", rels)]
RECORDS.append(_rec("memit", 0, "c", mode="batch@1", n=1, reliability=0.0, locality=1.0, generality=0.5))
# C sweep, ft-l+sss, seed 0: C = 0: rel (1, 1) gen (1, 0) loc (.5, .5); C = 1: rel (0, 1) gen (0, 0) loc (1, 1)
for C, rel, gen, loc in ((0.0, (1.0, 1.0), (1.0, 0.0), 0.5), (1.0, (0.0, 1.0), (0.0, 0.0), 1.0)):
    RECORDS += [_rec("ft-l+sss", 0, c, mode=f"sweep@C={C:g}", C=C, reliability=r, generality=g, locality=loc)
                for c, r, g in zip("ab", rel, gen)]

CASES = [EditCase(EditRequest("prompt a", "x", case_id="a"),
                  (Probe("prompt a", "x", "rewrite"), Probe("other a", "x", "paraphrase"),
                   Probe("near a", "y", "neighbour"), Probe("swap a", "x", "subject_replace"))),
         EditCase(EditRequest("prompt b", "x", case_id="b"),
                  (Probe("prompt b", "x", "rewrite"), Probe("other b", "x", "paraphrase"),
                   Probe("near b", "y", "neighbour"), Probe("hop b", "z", "one_hop")))]


def _store(folder, records=RECORDS) -> BenchStore:
    store = BenchStore(folder)
    with store.open() as results:
        for rec in records:
            results.write(rec)
    store.log.append({"command": "sss-lab bench --editors rome,memit", "config": {"knn": 5}, "started": "then",
                      "wall_seconds": 12.5, "cpu_seconds": 20, "results_made": len(records), "results_skipped": 0,
                      "model_name": "tiny-world", "model_device": "cpu"})
    return store


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    return _store(tmp_path_factory.mktemp("bench")).frame()


def test_registry_order_not_the_alphabet(frame):
    md, rows = report.table1(frame)
    assert md.splitlines() == [
        "| Metric | rome | memit |",
        "|---|---|---|",
        "| Reliability | 75.00 ± 35.36 | 100.00 ± 0.00 |",
        "| Locality | 87.50 ± 17.68 | 100.00 ± 0.00 |",
        "| Generality | 62.50 ± 17.68 | 100.00 ± 0.00 |",
        "| Portability | 50.00 ± 0.00 | – |",
        "| cases / seed | 2 | 2 |"]
    assert [r["editor"] for r in rows[::4]] == ["rome", "memit"]
    no_locality = frame.assign(locality=frame["locality"].where(frame["case_id"] != "b"))
    assert report.table1(no_locality)[0].splitlines()[-1] == "| cases / seed | 2 | 2 |"  # reliability's count


def test_table5_one_block_per_portability_group(frame):
    md, rows = report.table5(frame)
    blocks = md.split("\n\n")
    assert blocks[0] == "**Subject Replace**" and blocks[2] == "**One-Hop**" and len(blocks) == 4
    assert blocks[1].splitlines() == ["| Metric | rome |", "|---|---|", "| Reliability | 50.00 ± 70.71 |",
                                      "| Generality | 100.00 ± 0.00 |", "| Subject Replace | 50.00 ± 70.71 |",
                                      "| cases / seed | 1 |"]
    assert blocks[3].splitlines()[2:] == ["| Reliability | 100.00 ± 0.00 |", "| Generality | 25.00 ± 35.36 |",
                                          "| One-Hop | 50.00 ± 70.71 |", "| cases / seed | 1 |"]
    assert [(r["table"], r["metric"]) for r in rows] == [
        ("table5:subject_replace", "reliability"), ("table5:subject_replace", "generality"),
        ("table5:subject_replace", "subject_replace"), ("table5:one_hop", "reliability"),
        ("table5:one_hop", "generality"), ("table5:one_hop", "one_hop")]
    assert report.table5(frame[frame["editor"] == "memit"]) == ("_no case has a portability probe_", [])


def test_table2_sequential_right_after_and_final(frame):
    md, rows = report.table2(frame, final=False)
    assert md.splitlines() == [
        "| Editor | Reliability n=1 | Reliability n=2 | Locality n=1 | Locality n=2 | Generality n=1 | Generality n=2 |",
        "|---|---|---|---|---|---|---|",
        "| ft-l | 100.00 ± 0.00 | 87.50 ± 17.68 | 100.00 ± 0.00 | 100.00 ± 0.00 | 50.00 ± 0.00 | 50.00 ± 0.00 |",
        "| ft-l+sss | – | 50.00 | – | 100.00 | – | 50.00 |"]
    assert {r["table"] for r in rows} == {"table2"} and len(rows) == 3 * 3  # (ft-l, 1), (ft-l, 2), (ft-l+sss, 2)
    md, rows = report.table2(frame, final=True)
    assert md.splitlines()[0] == "| Editor | Reliability n=2 | Locality n=2 | Generality n=2 |"
    assert md.splitlines()[2:] == ["| ft-l | 37.50 ± 17.68 | 100.00 ± 0.00 | 50.00 ± 0.00 |"]
    assert {r["table"] for r in rows} == {"table2:final"}
    assert report.table2(report.single(frame), final=False) == ("_no sequential runs_", [])


def test_batch_table(frame):
    md, rows = report.batch_table(frame)
    assert md.splitlines() == [
        "| Editor | Reliability n=1 | Reliability n=2 | Locality n=1 | Locality n=2 | Generality n=1 | Generality n=2 |",
        "|---|---|---|---|---|---|---|",
        "| memit | 0.00 | 75.00 ± 35.36 | 100.00 | 100.00 ± 0.00 | 50.00 | 50.00 ± 0.00 |"]
    cell = next(r for r in rows if (r["n"], r["metric"]) == (2, "reliability"))
    assert (cell["table"], cell["editor"], cell["mean"], cell["seeds"], cell["cases_per_seed"]) == (
        "batch", "memit", 0.75, 2, 2)
    assert report.batch_table(report.single(frame)) == ("_no batch runs_", [])


def test_timing_table_orders_modes_and_counts_failures(frame):
    assert report.timing_table(frame).splitlines() == [
        "| Editor | Mode | results | failed edits | mean edit time (s) |",
        "|---|---|---|---|---|",
        "| ft-l | sequential@1 | 4 | 0 | 0.500 |",
        "| ft-l | sequential@2 | 4 | 0 | 1.000 |",
        "| ft-l+sss | sequential@2 | 2 | 0 | 1.000 |",
        "| ft-l+sss | sweep@C=0 | 2 | 0 | 1.000 |",
        "| ft-l+sss | sweep@C=1 | 2 | 0 | 1.000 |",
        "| rome | single | 5 | 1 | 2.500 |",  # seconds 1, 2, 3, 4 and the failed edit's unknown
        "| memit | single | 4 | 0 | 1.000 |",
        "| memit | batch@1 | 1 | 0 | 1.000 |",
        "| memit | batch@2 | 4 | 0 | 1.000 |"]
    no_time = frame[(frame["editor"] == "rome") & frame["error"].notna()]
    assert report.timing_table(no_time).splitlines()[2] == "| rome | single | 1 | 1 | – |"


def test_timing_order_of_modes():
    """single, sequential, batch, sweep (then anything else), each by its number."""
    modes = ["sweep@C=0.5", "batch@10", "other", "sequential@100", "sequential@10", "single", "sweep@C=0"]
    frame = pd.DataFrame({"editor": "ft-l", "mode": modes, "error": None, "seconds": 1.0})
    assert [line.split(" | ")[1] for line in report.timing_table(frame).splitlines()[2:]] == [
        "single", "sequential@10", "sequential@100", "batch@10", "sweep@C=0", "sweep@C=0.5", "other"]


def test_hypothesis_table_rows():
    corrs = [Correlation("ft-l", "lambda_max_before", "locality_drop", None, 0.5, 0.1, 0.8, 0.01234, 40, 20, 1),
             Correlation("ft-l", "knn_distance", "locality_drop", "target_nll", 0.25, -0.1, 0.5, 0.5, 40, 20, -1),
             Correlation("rome", "target_nll", "locality_drop", None, math.nan, math.nan, math.nan, math.nan, 3, 3, 0)]
    md, rows = report.hypothesis_table(adjust(corrs))  # two tests: the rows with a sign and a p
    assert md.splitlines() == [
        "| Editor | Pair | Spearman rho | 95% CI (bootstrap) | p | p (BH) | edits | prompts | paper predicts | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
        "| ft-l | lambda_max_before ~ locality_drop | +0.500 | [+0.100, +0.800] | 0.012 | 0.025 | 40 | 20 | > 0 "
        "| supports |",
        "| ft-l | knn_distance ~ locality_drop given target_nll | +0.250 | [-0.100, +0.500] | 0.5 | 0.5 | 40 | 20 "
        "| < 0 | inconclusive |",
        "| rome | target_nll ~ locality_drop | +nan | [+nan, +nan] | – | – | 3 | 3 | – | undefined |"]
    assert rows[1] == {"table": "hypothesis", "editor": "ft-l", "x": "knn_distance", "y": "locality_drop",
                       "control": "target_nll", "rho": 0.25, "lo": -0.1, "hi": 0.5, "p": 0.5, "points": 40,
                       "clusters": 20, "expected_sign": -1, "p_adjusted": 0.5, "tests": 2, "same_as": None,
                       "verdict": "inconclusive"}


def test_figures_hold_the_tables_numbers(frame):
    _, _, sweep_stats = report.c_sweep(frame)
    fig = report.c_sweep_figure(sweep_stats)
    traces = {t.name: t for t in fig.data}
    assert list(traces) == ["ft-l+sss: Reliability", "ft-l+sss: Generality", "ft-l+sss: Locality"]
    assert list(traces["ft-l+sss: Reliability"].x) == [0.0, 1.0]
    assert list(traces["ft-l+sss: Reliability"].y) == [100.0, 50.0]
    assert list(traces["ft-l+sss: Generality"].y) == [50.0, 0.0] and list(traces["ft-l+sss: Locality"].y) == [50, 100]
    assert list(traces["ft-l+sss: Locality"].error_y.array) == [0, 0]  # one seed: no std, drawn as 0
    assert (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text) == ("C", "accuracy (%)")
    assert fig.layout.title.text == "Ablation on C (paper Fig. 3)"
    assert {(t.mode, t.error_y.type) for t in fig.data} == {("lines+markers", "data")}
    index = pd.MultiIndex.from_tuples([("ft-l+sss", 0.0), ("ft-l+sss", 0.5)], names=["editor", "C"])
    by_hand = pd.DataFrame({f"{m}:{s}": v for m in ("reliability", "generality", "locality")
                            for s, v in (("mean", [0.9, 0.6]), ("std", [0.1, 0.25]))}, index=index)
    trace = report.c_sweep_figure(by_hand).data[0]
    assert list(trace.x) == [0.0, 0.5] and list(trace.y) == pytest.approx([90, 60])
    assert list(trace.error_y.array) == pytest.approx([10, 25])  # std in percentage points

    fig = report.sequential_figure(frame)
    assert [a.text for a in fig.layout.annotations] == ["Reliability", "Locality", "Generality"]
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.title.text == "n edits"
    rel = [t for t in fig.data if t.xaxis == "x"]  # the Reliability panel
    assert [(t.name, t.line.dash, t.showlegend) for t in rel] == [
        ("ft-l (right after each)", "solid", True), ("ft-l+sss (right after each)", "solid", True),
        ("ft-l (after all n)", "dash", True)]
    assert (list(rel[0].x), list(rel[0].y)) == ([1, 2], [100.0, 87.5])
    assert list(rel[0].error_y.array) == pytest.approx([0.0, 17.6777], abs=1e-4)
    assert (list(rel[2].x), list(rel[2].y)) == ([2], [37.5])
    loc = [t for t in fig.data if t.xaxis == "x2"]
    assert [t.showlegend for t in loc] == [False, False, False] and list(loc[0].y) == [100.0, 100.0]
    assert {t.error_y.type for t in fig.data} == {"data"} and list(rel[1].error_y.array) == [0]  # one seed
    assert fig.layout.title.text == "Sequential editing (paper Table 2)"
    assert (fig.layout.yaxis.title.text, fig.layout.yaxis2.title.text) == ("accuracy (%)", None)
    assert "yaxis4" not in fig.layout.to_plotly_json()  # one row of three panels
    only_final = report.sequential_figure(frame[frame["mode"].str.endswith("/final")])
    assert [(t.name, t.line.dash) for t in only_final.data if t.xaxis == "x"] == [("ft-l (after all n)", "dash")]


def test_write_bench_report_from_the_results_alone(tmp_path, caplog):
    store = _store(tmp_path)
    store.log.append({"command": "sss-lab bench --resume", "config": {"knn": 3}})
    cfg = BenchConfig(editors=("ft-l", "ft-l+sss", "rome", "memit"), data="world", seeds=2, knn=10)
    with caplog.at_level(logging.WARNING, logger="sss_core.evaluation.report"):
        path = report.write_bench_report(tmp_path, cfg, {0: CASES, 1: CASES})
    assert [r.getMessage() for r in caplog.records] == [
        f"the runs into {tmp_path} measured the k-NN density with k = 3, 5, but the report says k = 10"]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# Bench report: ft-l, ft-l+sss, rome, memit on world"
    assert lines[4:9] == ["```", "sss-lab bench --editors rome,memit",
                          f"    # started then, wall 12.5 s, CPU 20 s, {len(RECORDS)} results made, 0 resumed",
                          "sss-lab bench --resume", "    # started None, wall ? s, CPU ? s, ? results made, ? resumed"]
    lines = lines[:5] + lines[7:]  # as with one run, below
    assert lines[9].startswith("- model: `tiny-world`; device cpu; torch ")
    assert lines[10] == "- data: `world`, 2 cases per seed, seeds 0..1"
    assert lines[11] == "- probes per seed: rewrite 2, paraphrase 2, neighbour 2, subject_replace 1, one_hop 1"
    assert lines[12].startswith("- editor settings: ft-l: ") and "; rome: " in lines[12]
    assert lines[13] == f"- seeds: {report.seed_note('world')}"
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == ["## Table 1: overall performance (single edits, reverted after each)",
                        "## Table 3: locality levels",
                        "## Table 5: portability (each block over the cases that have that probe)",
                        "## The paper's hypothesis, measured",
                        "## What SSS changes, paired",
                        "## Table 2: sequential editing, each scored right after it is applied",
                        "## Table 2: sequential editing, after all n edits (EasyEdit's protocol)",
                        "## Batch editing: the n edits of a batch written at once, each scored with all applied",
                        "## Fig. 3: ablation on C",
                        "## Runs, failures and timing"]

    def section(title):  # the lines under a heading, up to the next one
        start = lines.index(title) + 1
        return lines[start:next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))]

    assert "| Reliability | 75.00 ± 35.36 | 100.00 ± 0.00 |" in section(headings[0])
    assert "| Neighbor | 87.50 ± 17.68 | 100.00 ± 0.00 |" in section(headings[1])
    assert "| Subject Replace | 50.00 ± 70.71 |" in section(headings[2])
    assert "_no editor ran both with and without SSS_" in section(headings[4])
    assert "| ft-l | 37.50 ± 17.68 | 100.00 ± 0.00 | 50.00 ± 0.00 |" in section(headings[6])
    assert "| memit | 0.00 | 75.00 ± 35.36 | 100.00 | 100.00 ± 0.00 | 50.00 | 50.00 ± 0.00 |" in section(headings[7])
    assert {"| 0.00 | 100.00 | 50.00 | 50.00 |", "| 1.00 | 50.00 | 0.00 | 100.00 |",
            "Plot: [c_sweep.html](c_sweep.html)", "Plot of sequential editing: [sequential.html](sequential.html)"
            } <= set(section(headings[8]))
    assert "| rome | single | 5 | 1 | 2.500 |" in section(headings[9])
    # lambda_max before and after (after = before / 2 for rome: it fell in every edit)
    assert "| rome | 0.25 | 0.125 | 100.0 | 4 |" in section(headings[3])

    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary.groupby("table", sort=False).size().to_dict() == {
        "table1": 8, "table3": 4, "table5:subject_replace": 3, "table5:one_hop": 3, "table2": 9,
        "table2:final": 3, "batch": 6, "c_sweep": 6}
    sweep = summary[(summary["table"] == "c_sweep") & (summary["metric"] == "generality")]
    assert list(sweep["C"]) == [0.0, 1.0] and list(sweep["mean"]) == [0.5, 0.0]

    cases = pd.read_csv(tmp_path / "cases.csv")
    assert len(cases) == len(RECORDS) and {"post", "knn_distance", "target_nll", "measured"}.isdisjoint(cases)
    assert {"editor", "seed", "case_id", "mode", "prompt", "reliability", "one_hop"} <= set(cases.columns)

    hyp = pd.read_csv(tmp_path / "hypothesis.csv")
    assert list(zip(hyp["editor"], hyp["x"], hyp["y"]))[:len(PAIRS)] == [("rome", x, y) for x, y, _, _ in PAIRS]
    lam = hyp[(hyp["editor"] == "rome") & (hyp["x"] == "lambda_max_before") & hyp["control"].isna()].iloc[0]
    drop = [1 - r[4] for r in ROME]  # the failed edit is left out: 4 edits over 2 prompts
    assert lam["rho"] == pytest.approx(stats.spearmanr([r[7] for r in ROME], drop).statistic)
    assert (lam["points"], lam["clusters"]) == (4, 2)
    knn = hyp[(hyp["editor"] == "rome") & (hyp["x"] == "knn_distance") & hyp["control"].isna()].iloc[0]
    assert knn["rho"] == pytest.approx(stats.spearmanr([r[8] for r in ROME], drop).statistic)
    assert set(hyp.loc[hyp["editor"] == "memit", "verdict"]) == {"undefined"}
    assert (tmp_path / "c_sweep.html").exists() and (tmp_path / "sequential.html").exists()
    assert (tmp_path / "plotly.min.js").stat().st_size > 1_000_000
    assert "<title>SSS bench: ablation on C (world)</title>" in (tmp_path / "c_sweep.html").read_text()


def test_report_without_stored_measures_asks_for_the_model_and_writes_nothing(tmp_path):
    old = [{k: v for k, v in rec.items() if k not in ("knn_distance", "target_nll")} for rec in RECORDS]
    _store(tmp_path, old)
    cfg = BenchConfig(editors=("rome", "memit"), data="world", seeds=2)
    assert report.missing_measures(BenchStore(tmp_path).frame()) == 8  # rome's 4 and memit's 4 single edits
    with pytest.raises(RequestError, match=r"^8 results were written before the k-NN density and target NLL were "
                                           r"stored with each result; give the model they were made with to compute "
                                           r"them \(bench --report-only --model NAME, the same --data, --n and "
                                           r"--seeds\), or rerun the bench$"):
        report.write_bench_report(tmp_path, cfg, {0: CASES})
    assert not any((tmp_path / name).exists() for name in ("report.md", "summary.csv", "cases.csv", "hypothesis.csv"))


def test_seed_note_says_what_a_seed_changes():
    assert "a new target for every fact" in report.seed_note("world:test")
    assert report.seed_note("data/zsre.json").startswith("The cases are the file's first n records for every seed")
    assert "(std 0)" in report.seed_note("counterfact.json")


def test_older_results_get_the_measures_a_new_run_stores(tmp_path, bench_lm, caplog):
    """Results written before the measures were stored get them computed on the model, equal to what
    ``EditMeasures`` stores with each new result; stored ones are kept; the results file is not changed."""
    records = [{k: v for k, v in rec.items() if not (rec["editor"] == "rome" and k in ("knn_distance", "target_nll"))}
               for rec in RECORDS]
    store = _store(tmp_path, records)
    before = store.results_path.read_bytes()
    cfg = BenchConfig(editors=("rome", "memit"), data="world", seeds=2, knn=3)
    with caplog.at_level(logging.INFO, logger="sss_core.evaluation.report"):
        rows = report._hypothesis_frame(store.frame(), cfg, bench_lm, {0: CASES})
    assert [r.getMessage() for r in caplog.records] == [
        f"computing the k-NN density and target NLL of 4 older results on {bench_lm.name}"]
    assert list(zip(rows["editor"], rows["seed"], rows["case_id"])) == [
        ("rome", 0, "a"), ("rome", 0, "b"), ("rome", 1, "a"), ("rome", 1, "b"),  # the failed edit left out
        ("memit", 0, "a"), ("memit", 0, "b"), ("memit", 1, "a"), ("memit", 1, "b")]
    fresh = EditMeasures(bench_lm.model, bench_lm.tok, reference_prompts("world", CASES), k=3)
    for _, row in rows[rows["editor"] == "rome"].iterrows():
        stored = fresh([EditRequest(row["prompt"], row["target_new"])])[0]
        assert row["knn_distance"] == pytest.approx(stored["knn_distance"], rel=1e-4)
        assert row["target_nll"] == pytest.approx(stored["target_nll"], rel=1e-4)
    assert rows.loc[rows["editor"] == "memit", ["knn_distance", "target_nll"]].to_numpy().tolist() == [[1.0, 1.0]] * 4
    assert store.results_path.read_bytes() == before
    measured = _store(tmp_path / "new").frame()
    assert report._hypothesis_frame(measured, cfg, None, {0: CASES}).equals(report._hypothesis_rows(measured))


def _normalised(text: str) -> str:
    """report.md with what depends on this machine and on editors' defaults replaced by placeholders."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("- model: "):
            lines[i] = "- model: <name>; device <device>; torch <version>, <n> threads"
        elif line.startswith("- editor settings: "):
            lines[i] = "- editor settings: <each editor's config>"
    return "\n".join(lines) + "\n"


def test_report_md_whole_on_the_world(tmp_path, file_regression):
    """Every line of report.md (tests/evaluation/test_report_write/; regenerate with --force-regen after
    a deliberate change, and read the diff)."""
    _store(tmp_path)
    cfg = BenchConfig(editors=("ft-l", "ft-l+sss", "rome", "memit"), data="world", seeds=2, knn=10)
    path = report.write_bench_report(tmp_path, cfg, {0: CASES, 1: CASES[:1]})
    assert path == tmp_path / "report.md"
    file_regression.check(_normalised(path.read_text(encoding="utf-8")), extension=".md")
    assert list(pd.read_csv(tmp_path / "summary.csv").columns[:2]) == ["table", "editor"]  # no index column
    assert pd.read_csv(tmp_path / "cases.csv").columns[0] == "editor"
    assert pd.read_csv(tmp_path / "hypothesis.csv").columns[0] == "table"


def test_report_md_whole_on_a_data_file(tmp_path, file_regression, bench_lm):
    """A data file's wording; the model named by ``lm`` when the run log does not say; settings passed on;
    the plots with plotly.js inline (no plotly.min.js written)."""
    records = [rec for rec in RECORDS if rec["editor"] in ("ft-l", "ft-l+sss")]
    # single edits of ft-l (rome's numbers above) and ft-l+sss: reliability 1 everywhere, locality .5, the
    # rest as ft-l; ft-l+sss predicts as ft-l on case a (its "post" equal), not on b: 50% of cases changed
    for s, c, r, g, loc, group, p, lam, knn, nll in ROME:
        records.append(_rec("ft-l", s, c, lam=(lam, lam / 2), measures=(knn, nll), reliability=r, generality=g,
                            locality=loc, neighbour=loc, portability=p, **{group: p}))
        sss = _rec("ft-l+sss", s, c, lam=(lam, lam / 4), measures=(knn, nll), reliability=1.0, generality=g,
                   locality=0.5, neighbour=0.5, portability=p, **{group: p})
        if c == "a":
            sss["probes"] = records[-1]["probes"]
        records.append(sss)
    del records[-2]["knn_distance"], records[-2]["target_nll"]  # one older result: measured on ``lm`` here
    store = BenchStore(tmp_path)
    with store.open() as results:
        for rec in records:
            results.write(rec)
    store.log.append({"command": "sss-lab bench --data data/zsre.json"})
    cfg = BenchConfig(editors=("ft-l", "ft-l+sss"), data="data/zsre.json", seeds=2, settings={"steps": 7},
                      plotly_js="inline")
    text = report.write_bench_report(tmp_path, cfg, {0: CASES}, lm=bench_lm).read_text(encoding="utf-8")
    assert f"- model: `{bench_lm.name}`; device {bench_lm.device}; torch " in text
    assert "among the data set's prompts (requests and probes; large = sparse)" in text
    settings = next(line for line in text.splitlines() if line.startswith("- editor settings: "))
    assert settings.count("steps=7") == 2
    file_regression.check(_normalised(text), extension=".md")
    assert not (tmp_path / "plotly.min.js").exists()
    assert (tmp_path / "c_sweep.html").stat().st_size > 1_000_000  # plotly.js in the page
    assert "<title>SSS bench: sequential editing (zsre.json)</title>" in (tmp_path / "sequential.html").read_text()
    with pytest.raises(RequestError, match="^1 results were written before"):
        report.write_bench_report(tmp_path, cfg, {0: CASES})  # the older result needs the model


def test_a_model_nobody_recorded_is_said_so(tmp_path):
    store = BenchStore(tmp_path)
    with store.open() as results:
        for rec in RECORDS:
            results.write(rec)
    store.log.append({"command": "sss-lab bench"})
    cfg = BenchConfig(editors=("rome", "memit"), data="world", seeds=2)
    text = report.write_bench_report(tmp_path, cfg, {0: CASES}).read_text(encoding="utf-8")
    assert "- model: `not recorded`; device not recorded; torch " in text

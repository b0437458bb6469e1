"""World locality in the bench (issue 26.1): ``--world-locality`` puts it and a damage summary on each
single-edit result line, the results frame has a column for it, and the report shows a table of it
beside the sampled locality only when the results have it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sss_core.cli import build_parser
from sss_core.evaluation import report
from sss_core.evaluation.bench import BenchConfig, run_bench
from sss_core.evaluation.presets import default_world
from sss_core.evaluation.store import BenchStore
from sss_core.types import EditCase, EditRequest, Probe

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _lines(out: Path) -> list[dict]:
    return [json.loads(x, parse_constant=lambda c: pytest.fail(f"{c} in strict JSON"))
            for x in (out / "results.jsonl").read_text().splitlines()]


def test_bench_with_world_locality_on_the_tiny_model(tmp_path, tiny_model_dir):
    data = tmp_path / "data.json"
    data.write_text((FIXTURES / "rome_counterfact.json").read_text())
    cfg = BenchConfig(editors=("ft-l",), data=str(data), seeds=1, settings={"steps": 1}, model=str(tiny_model_dir),
                      device="cpu", world_locality=True)
    run_bench(cfg, tmp_path / "run", progress=False)
    lines = _lines(tmp_path / "run")
    n_world = len(default_world().facts)
    assert len(lines) == 2
    for line in lines:
        damage = line["world_damage"]
        assert line["world_locality"] == damage["world_locality"]
        # a CounterFact prompt is no world fact: nothing should change, every world fact counts
        assert (damage["facts"], damage["should_change"], damage["others"]) == (n_world, 0, n_world)
        assert line["world_locality"] == pytest.approx(1 - damage["damaged"] / n_world)
        assert sum(v["total"] for v in damage["by_relation"].values()) == n_world
        assert sum(v["damaged"] for v in damage["by_relation"].values()) == damage["damaged"]
        assert damage["damaged_listed"] == len(damage["damaged_facts"]) == min(20, damage["damaged"])
    frame = BenchStore(tmp_path / "run").frame()
    assert list(frame["world_damaged"]) == [line["world_damage"]["damaged"] for line in lines]
    text = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert "## World locality" in text and "| Editor | World locality | Sampled locality |" in text
    assert {"world_locality", "world_damaged"} <= set(pd.read_csv(tmp_path / "run" / "cases.csv").columns)


def test_the_cli_flag_sets_the_config():
    args = build_parser().parse_args(["bench", "--editors", "ft-l", "--out", "x", "--world-locality"])
    assert args.world_locality is True
    assert build_parser().parse_args(["bench", "--editors", "ft-l", "--out", "x"]).world_locality is False


def _rec(editor, seed, case, loc, world=None):
    rec = {"editor": editor, "seed": seed, "case_id": case, "mode": "single", "n": None, "position": None, "C": None,
           "error": None, "seconds": 1.0, "request": {"prompt": f"prompt {case}", "target_new": "x"},
           "lambda_max_before": 0.5, "lambda_max_after": 0.1, "knn_distance": 1.0 + seed, "target_nll": 2.0,
           "probes": [{"group": "rewrite", "post": [case]}],
           "metrics": {"reliability": 1.0, "generality": 1.0, "locality": loc, "neighbour": loc}}
    if world is not None:
        rec["world_locality"], rec["world_damage"] = world[0], {"world_locality": world[0], "damaged": world[1]}
    return rec


# rome with world locality (world locality, damaged facts), sampled locality:
#   seed 0: a (.9, 10) 1.0, b (.8, 20) .5  -> per-seed means .85, 15, .75
#   seed 1: a (1., 0) 1.0,  b (.9, 10) 1.0 -> .95, 5, 1.0
# world locality 90.00 ± 7.07, sampled 87.50 ± 17.68, damaged (15 + 5) / 2 = 10.0. memit ran without it.
ROME = [(0, "a", 1.0, (0.9, 10)), (0, "b", 0.5, (0.8, 20)), (1, "a", 1.0, (1.0, 0)), (1, "b", 1.0, (0.9, 10))]
CASES = [EditCase(EditRequest(f"prompt {c}", "x", case_id=c), (Probe(f"near {c}", "y", "neighbour"),)) for c in "ab"]


def _write(folder: Path, records: list[dict]) -> Path:
    store = BenchStore(folder)
    with store.open() as results:
        for rec in records:
            results.write(rec)
    store.log.append({"command": "sss-lab bench", "config": {"knn": 10}, "model_name": "tiny", "model_device": "cpu"})
    return report.write_bench_report(folder, BenchConfig(editors=("rome", "memit"), data="world", seeds=2),
                                     {0: CASES, 1: CASES})


def test_report_table_of_world_locality_beside_sampled_locality(tmp_path):
    records = [_rec("rome", s, c, loc, w) for s, c, loc, w in ROME]
    records += [_rec("memit", s, c, 1.0) for s in (0, 1) for c in "ab"]
    lines = _write(tmp_path, records).read_text(encoding="utf-8").splitlines()
    start = lines.index("## World locality")
    assert lines[start + 4:start + 8] == [
        "| Editor | World locality | Sampled locality | Facts damaged / edit | cases / seed |",
        "|---|---|---|---|---|",
        "| rome | 90.00 ± 7.07 | 87.50 ± 17.68 | 10.0 | 2 |",
        ""]
    summary = pd.read_csv(tmp_path / "summary.csv")
    rows = summary[summary["table"] == "world_locality"].set_index("metric")["mean"]
    assert rows.to_dict() == pytest.approx({"world_locality": 0.9, "locality": 0.875, "world_damaged": 10.0})
    cases = pd.read_csv(tmp_path / "cases.csv")
    assert list(cases["world_damaged"].dropna()) == [10, 20, 0, 10]


def test_report_without_world_locality_has_no_trace_of_it(tmp_path):
    records = [_rec("rome", s, c, loc) for s, c, loc, _ in ROME]
    text = _write(tmp_path, records).read_text(encoding="utf-8")
    assert "World locality" not in text and "world" not in pd.read_csv(tmp_path / "summary.csv")["table"].str.cat()
    assert {"world_locality", "world_damaged"}.isdisjoint(pd.read_csv(tmp_path / "cases.csv").columns)

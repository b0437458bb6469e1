"""The results store: append and resume, worker part files merged, results read back, the run log."""

from __future__ import annotations

import json
import logging
import math

import pytest

from sss_core.errors import DataError, RequestError
from sss_core.evaluation.runners import Outcome, RunKey
from sss_core.evaluation.store import BenchStore, ResultFile, RunLog, complete_lines, keys_of, read_records
from sss_core.types import EditCase, EditRequest

GOOD = '{"editor": "ft-l", "seed": 0, "case_id": "%s", "mode": "single"}\n'


def record(case_id: str, editor: str = "ft-l", **extra) -> dict:
    """A result line as the bench writes it (without probes)."""
    return {"editor": editor, "seed": 0, "case_id": case_id, "mode": "single", "n": None, "position": None, "C": None,
            "error": None, "request": {"prompt": f"prompt {case_id}", "target_new": "x"},
            "metrics": {"reliability": 1.0, "locality": None}, "lambda_max_before": 0.5, **extra}


def test_result_file_drops_a_torn_line_and_refuses_a_corrupt_one(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(GOOD % "1" + '{"editor": "ft-l", "se')
    with ResultFile(path, resume=True) as results:
        assert results.done(RunKey("ft-l", 0, "1", "single")) and len(results.keys) == 1
    assert path.read_text() == GOOD % "1"
    path.write_text("garbage\n" + GOOD % "1")
    with pytest.raises(DataError, match="line 1 is corrupt"):
        ResultFile(path, resume=True)


def test_write_then_resume_then_read_back(tmp_path):
    store = BenchStore(tmp_path / "run")
    with store.open() as results:
        results.write(record("a"), knn_distance=0.5, target_nll=math.nan)  # NaN is stored as null
        assert results.done(RunKey("ft-l", 0, "a", "single"))
    with pytest.raises(RequestError, match="--resume"):
        store.open()
    with store.open(resume=True) as results:
        assert results.keys == {RunKey("ft-l", 0, "a", "single")}
        results.write(record("b", editor="ft-l+sss"), knn_distance=0.7, target_nll=2.0)
        results.write(record("c"))  # an older line: no measures
    line = json.loads(store.results_path.read_text().splitlines()[0])
    assert line["knn_distance"] == 0.5 and line["target_nll"] is None
    frame = store.frame()
    assert list(frame["case_id"]) == ["a", "c", "b"]  # editors in registry order, then file order
    assert list(frame["measured"]) == [True, False, True]
    assert frame["knn_distance"].iloc[0] == 0.5 and math.isnan(frame["target_nll"].iloc[0])
    assert frame["reliability"].tolist() == [1.0] * 3 and frame["locality"].isna().all()
    assert frame["one_hop"].isna().all()  # every metric column is there, even one no result has
    assert store.keys() == keys_of(store.results_path) and len(store.keys()) == 3


def test_merge_parts_moves_what_workers_of_a_killed_run_left(tmp_path):
    (tmp_path / "results.jsonl").write_text(GOOD % "a")
    (tmp_path / "results.part0.jsonl").write_text(GOOD % "b" + '{"editor": "ft-l", "se')
    (tmp_path / "results.part1.jsonl").write_text(GOOD % "c")
    store = BenchStore(tmp_path)
    assert store.has_parts() and store.part_lines() == 2
    part = store.open_part(2)
    assert part.done(RunKey("ft-l", 0, "a", "single"))  # the main file's keys count as done for a worker
    part.close()
    store.merge_parts()
    assert {k.case_id for k in store.keys()} == {"a", "b", "c"}
    assert not store.has_parts()


def test_read_records_strict_and_lenient(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(GOOD % "a" + "[1, 2]\n" + GOOD % "b" + '{"torn')
    with pytest.raises(DataError, match="line 2 is corrupt"):
        read_records(path)
    records, bad = read_records(path, strict=False)
    assert [r["case_id"] for r in records] == ["a", "b"] and bad == 2  # the list and the torn line
    assert read_records(path, strict=False, max_rows=1)[0] == records[:1]
    path.write_text(GOOD % "a" + '{"torn')
    assert read_records(path) == ([json.loads(GOOD % "a")], 0)  # strict: the torn line left out, file unchanged
    assert path.read_text().endswith('{"torn')
    with pytest.raises(RequestError, match="no results.jsonl"):
        BenchStore(tmp_path / "empty").frame()


def test_run_log_appends_and_updates_entries(tmp_path):
    log = RunLog(tmp_path / "config.json")
    assert log.runs() == [] and log.latest("model_name") is None
    first = log.append({"command": "bench A", "model_name": "m1"})
    second = log.append({"command": "bench A --resume"})
    log.update(first, finished="now")
    assert log.runs() == [{"command": "bench A", "model_name": "m1", "finished": "now"},
                          {"command": "bench A --resume"}]
    assert second == 1 and log.latest("model_name") == "m1"
    (tmp_path / "config.json").write_text("[]")
    with pytest.raises(DataError, match="not a bench run log"):
        log.runs()


def test_torn_lines_are_reported_by_file_and_complete_files_not(tmp_path, caplog):
    path = tmp_path / "results.jsonl"
    path.write_text(GOOD % "a")
    with caplog.at_level(logging.WARNING, logger="sss_core.evaluation.store"):
        assert complete_lines(path) == [GOOD.strip() % "a"] and read_records(path)[1] == 0
    assert caplog.records == []  # a file that ends with its newline is complete
    path.write_text(GOOD % "a" + '{"torn')
    with caplog.at_level(logging.WARNING, logger="sss_core.evaluation.store"):
        read_records(path)
        complete_lines(path)
    assert [r.getMessage() for r in caplog.records] == [f"leaving out an unfinished last line of {path}",
                                                        f"dropping an unfinished last line of {path}"]
    path.write_text(GOOD % "a" + GOOD % "b" + "[1, 2]\n")
    with pytest.raises(DataError, match=r"results.jsonl line 3 is corrupt \(not a JSON object\); move the file away"):
        BenchStore(tmp_path).records()  # strict unless told otherwise
    assert BenchStore(tmp_path).records(strict=False, max_rows=1) == ([json.loads(GOOD % "a")], 0)
    assert BenchStore(tmp_path).records(strict=False) == ([json.loads(GOOD % c) for c in "ab"], 1)


def test_result_file_refuses_results_unless_resumed_and_makes_its_folder(tmp_path):
    path = tmp_path / "a" / "b" / "results.jsonl"
    with ResultFile(path) as results:  # folders made as needed
        results.write(record("x"))
    assert ResultFile(path, resume=True).path == path
    with pytest.raises(RequestError, match=r"b already has results; pass --resume to continue that run, or choose "
                                           r"another --out$"):
        ResultFile(path)  # not resumed unless asked


def test_an_outcome_is_written_as_its_json_record(tmp_path):
    case = EditCase(EditRequest("The capital of France is", "Rome", subject="France", case_id="c1"))
    outcome = Outcome(RunKey("rome", 2, "c1", "single"), case, None, error="EditFailed: nan loss")
    with ResultFile(tmp_path / "results.jsonl") as results:
        results.write(outcome, knn_distance=math.inf)
    def not_json(constant):
        raise AssertionError(f"{constant} is not strict JSON")

    line = json.loads((tmp_path / "results.jsonl").read_text(), parse_constant=not_json)  # no NaN / Infinity
    assert line == {**outcome.to_json(), "knn_distance": None}
    assert (line["editor"], line["seed"], line["error"], line["request"]["target_new"]) == (
        "rome", 2, "EditFailed: nan loss", "Rome")


def test_worker_parts_resume_and_merge_every_line(tmp_path):
    store = BenchStore(tmp_path)
    assert store.log.path == tmp_path / "config.json"
    with store.open_part(0) as part:
        part.write(record("a"))
    with store.open_part(0) as part:  # a worker of a resumed run reopens its part file
        assert part.done(RunKey("ft-l", 0, "a", "single"))
        part.write(record("b"))
    with store.open_part(1) as part:
        part.write(record("c"))
    assert store.part_lines() == 3
    store.merge_parts()
    assert [r["case_id"] for r in store.records()[0]] == ["a", "b", "c"]


def test_run_log_is_indented_json_in_a_new_folder(tmp_path):
    log = RunLog(tmp_path / "new" / "folder" / "config.json")
    log.append({"command": "bench"})
    assert log.path.read_text(encoding="utf-8").splitlines() == [
        "{", '  "runs": [', "    {", '      "command": "bench"', "    }", "  ]", "}"]

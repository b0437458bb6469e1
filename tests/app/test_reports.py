"""The Results view's reader: a bench folder's run log and results read through the bench's store."""

from __future__ import annotations

import json

from app.reports import read_report
from sss_core.evaluation.store import RunLog


def test_run_log_becomes_a_table_of_invocations(tmp_path):
    log = RunLog(tmp_path / "config.json")
    entry = log.append({"command": "python -m sss_core bench --editors ft-l", "config": {"n": 5},
                        "started": "2026-01-01T00:00:00+00:00", "model_name": "default-model"})
    log.update(entry, finished="2026-01-01T00:01:00+00:00", wall_seconds=60.0, results_made=5)
    (tmp_path / "results.jsonl").write_text(json.dumps({"editor": "ft-l", "knn_distance": 0.5}) + "\n")
    rep = read_report(tmp_path)
    assert list(rep.runs.columns) == ["command", "started", "finished", "wall_seconds", "results_made", "model_name"]
    assert rep.runs["results_made"].tolist() == [5] and "config.json" in rep.json and not rep.problems
    assert rep.results["results.jsonl"]["knn_distance"].tolist() == [0.5]


def test_other_json_is_not_a_run_log(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": "x"}))
    rep = read_report(tmp_path)
    assert rep.runs is None and rep.json["config.json"] == {"model": "x"} and not rep.problems

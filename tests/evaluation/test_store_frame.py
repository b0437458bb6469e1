"""``results_frame`` and ``read_records`` column by column, on hand-made result lines."""

from __future__ import annotations

import json
import math

from sss_core.evaluation.store import METRICS, read_records, results_frame


def _rec(editor, case, **extra):
    return {"editor": editor, "seed": 0, "case_id": case, "mode": "single", "error": None,
            "request": {"prompt": f"p {case}", "target_new": f"t {case}"},
            "metrics": {"reliability": 1.0, "locality": None}, "lambda_max_before": 0.5,
            "probes": [{"post": ["a"]}, {"post": ["b", "c"]}], **extra}


def test_results_frame_columns():
    records = [_rec("rome", "1"), _rec("ft-l+sss", "2", knn_distance=0.8, target_nll=None),
               _rec("my-editor", "3"), _rec("ft-l", "4", knn_distance=1.5, target_nll=2.0)]
    frame = results_frame(records)
    # registry order (ft-l, ft-l+sss, ..., rome), editors outside the registry last
    assert list(frame["editor"]) == ["ft-l", "ft-l+sss", "rome", "my-editor"]
    row = frame.iloc[0]
    assert (row["prompt"], row["target_new"]) == ("p 4", "t 4")
    assert json.loads(row["post"]) == [["a"], ["b", "c"]]
    assert row["reliability"] == 1.0 and math.isnan(row["locality"])  # null -> NaN
    assert all(col in frame for col in METRICS) and math.isnan(row["portability"])
    assert (row["knn_distance"], row["target_nll"], bool(row["measured"])) == (1.5, 2.0, True)
    sss = frame.iloc[1]
    assert sss["knn_distance"] == 0.8 and math.isnan(sss["target_nll"]) and bool(sss["measured"])
    assert not frame.iloc[2]["measured"] and math.isnan(frame.iloc[2]["knn_distance"])
    assert math.isnan(row["C"]) and row["lambda_max_before"] == 0.5 and math.isnan(row["seconds"])
    empty = results_frame([])
    assert len(empty) == 0 and {"prompt", "target_new", "post", "measured", *METRICS} <= set(empty.columns)


def test_read_records_skips_and_counts(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"a": 1}\n\n[1, 2]\n{"b": \xff}\n{"c": 3}\n{"torn"')
    records, bad = read_records(path, strict=False)
    assert records == [{"a": 1}, {"c": 3}] and bad == 3  # a list, a broken line, the torn end
    assert read_records(path, strict=False, max_rows=1) == ([{"a": 1}], 0)
    path.write_text('{"a": 1}\n\n{"b": 2}\n{"torn')
    assert read_records(path) == ([{"a": 1}, {"b": 2}], 0)  # strict: the torn end left out, blank lines too


def test_results_frame_order_does_not_depend_on_the_write_order():
    keys = [("sequential@2", 1, "b"), ("single", 0, "b"), ("sequential@2", 0, "a"), ("single", 1, "a"),
            ("single", 0, "a"), ("sequential@2", 1, "a")]
    records = [{**_rec("ft-l", case), "mode": mode, "seed": seed} for mode, seed, case in keys]
    frame = results_frame(records)
    assert list(zip(frame["mode"], frame["seed"], frame["case_id"])) == sorted(keys)
    assert list(results_frame(records[::-1])["case_id"]) == list(frame["case_id"])


def test_a_value_that_is_not_a_number_becomes_nan():
    frame = results_frame([{**_rec("ft-l", "1"), "seconds": "unknown", "C": "0.5"}])
    assert math.isnan(frame["seconds"].iloc[0]) and frame["C"].iloc[0] == 0.5

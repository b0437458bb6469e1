"""benchmarks/gpu_check.py on the CPU's tiny shape: the table the GPU run will print, checked row by row.

The script is imported and its ``main`` run in this process with ``--tiny``, as on a machine
without CUDA; the figures are not judged here, only that every check ran, or says why not.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from sss_core.editors import EDITORS

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def _load_script():
    """The benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _strict_json(path: Path) -> dict:
    """The file parsed as JSON that refuses NaN and Infinity tokens."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(returned report, report read back from --json, printed table) of one full tiny run."""
    gpu_check = _load_script()
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    report = gpu_check.main(["--tiny", "--json", str(out), "--edits", "2", "--repeat", "1", "--memit-batch", "20"])
    return report, _strict_json(out), gpu_check.format_table(report)


def test_header_names_the_machine_and_versions(tiny_run):
    _, written, table = tiny_run
    header = written["header"]
    for key in ("device", "torch", "cuda", "transformers", "shape", "config"):
        assert key in header
    assert header["shape"] == "tiny" and header["targets_judged"] is False
    assert header["torch"] in table and header["transformers"] in table


def test_every_editor_has_a_row_per_dtype_that_ran_and_reverted(tiny_run):
    _, written, _ = tiny_run
    rows = {(r["name"], r["dtype"]): r for r in written["rows"]}
    for name in EDITORS:
        for dtype in ("float32", "bfloat16"):
            row = rows[(name, dtype)]
            assert row["status"] == "ok", f"{name} {dtype}: {row['note']}"
            assert row["seconds"] > 0 and row["n"] == 2
            assert row["weights_ok"] is True and row["revert_exact"] is True and row["nan_free"] is True


def test_every_row_has_a_number_or_a_reason(tiny_run):
    _, written, _ = tiny_run
    for row in written["rows"]:
        measured = isinstance(row["seconds"], (int, float)) and math.isfinite(row["seconds"])
        if row["name"] == "bf16-vs-fp32":
            measured = 0 <= row["extra"]["match_fraction"] <= 1
        assert measured or (row["status"] in ("skipped", "error") and row["note"]), row


def test_sss_double_backward_and_the_other_rows(tiny_run):
    _, written, _ = tiny_run
    rows = {(r["name"], r["dtype"]): r for r in written["rows"]}
    for dtype in ("float32", "bfloat16"):
        assert rows[("sss-double-backward", dtype)]["status"] == "ok"
        assert rows[("sss-double-backward", dtype)]["nan_free"] is True
        assert rows[("lambda-256", dtype)]["nan_free"] is True
    assert rows[("memit-100", "float32")]["status"] == "ok"
    assert rows[("memit-100", "float32")]["revert_exact"] is True
    agreement = rows[("bf16-vs-fp32", "bfloat16")]
    assert set(agreement["extra"]["per_editor"]) == set(EDITORS)
    assert agreement["met"] == "not judged (tiny shape)"
    batched = rows[("batched-vs-single", "float32")]
    assert batched["status"] == "ok" and batched["revert_exact"] is True and batched["nan_free"] is True
    assert set(batched["extra"]) == {"ft-l", "ft-l+sss", "rome"}
    for name, figures in batched["extra"].items():
        assert figures["failed"] == 0 and figures["one_at_a_time_s"] > 0 and figures["side_by_side_s"] > 0, name
        assert figures["max_rel_delta_norm_diff"] < 1e-2, name  # the same edits, within float tolerance


def test_the_returned_report_is_what_was_written(tiny_run):
    report, written, _ = tiny_run
    assert [r["name"] for r in report["rows"]] == [r["name"] for r in written["rows"]]


def test_a_failing_check_is_recorded_and_the_run_goes_on(tmp_path):
    gpu_check = _load_script()
    out = tmp_path / "g.json"
    # zero text samples: ROME refuses its key statistics; FT-L must still run after it
    report = gpu_check.main(["--tiny", "--only", "rome,ft-l", "--mom2-samples", "0", "--edits", "1",
                             "--json", str(out)])
    rows = {(r["name"], r["dtype"]): r for r in _strict_json(out)["rows"]}
    assert rows[("rome", "float32")]["status"] == "error" and rows[("rome", "float32")]["note"]
    assert rows[("ft-l", "bfloat16")]["status"] == "ok"
    assert {r["name"] for r in report["rows"]} == {"build", "rome", "ft-l"}


def test_a_spent_budget_skips_rows_with_the_reason(tmp_path):
    gpu_check = _load_script()
    report = gpu_check.main(["--tiny", "--budget", "0", "--only", "ft-l"])
    assert report["rows"] and all(r["status"] == "skipped" and "budget" in r["note"] for r in report["rows"])

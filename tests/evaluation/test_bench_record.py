"""The results store knows what it holds: each result carries a digest of its case and its editor's
config, so a resume never mixes two versions of a data file, two settings or two models; duplicate
case ids are refused before any work; a C sweep of a trained editor names the checkpoint of each row."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sss_core.errors import RequestError
from sss_core.evaluation.bench import BenchConfig, run_bench
from sss_core.evaluation.store import BenchStore

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _data(tmp_path: Path, records: list[dict]) -> Path:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records))
    return path


def _records() -> list[dict]:
    return json.loads((FIXTURES / "rome_counterfact.json").read_text())


def _cfg(data: Path, model_dir: Path, **kw) -> BenchConfig:
    return BenchConfig(**{"editors": ("ft-l",), "data": str(data), "seeds": 1, "settings": {"steps": 1},
                          "model": str(model_dir), "device": "cpu", **kw})


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def test_resume_after_a_data_record_changed_is_refused_naming_it(tmp_path, tiny_model_dir):
    records = _records()
    data, out = _data(tmp_path, records), tmp_path / "run"
    run_bench(_cfg(data, tiny_model_dir), out, progress=False)
    written = (out / "results.jsonl").read_bytes()
    assert all(len(r["digest"]) == 16 for r in _lines(out))
    records[1]["requested_rewrite"]["target_new"]["str"] = "Lima"  # a corrected target ...
    records.append({**records[0], "case_id": 977})  # ... and a new record
    _data(tmp_path, records)
    with pytest.raises(RequestError, match=re.escape(
            f"1 results in {out} were made from other data or settings than this run's (case ids "
            f"{records[1]['case_id']}: the data record or the editor's config changed since)")):
        run_bench(_cfg(data, tiny_model_dir), out, resume=True, progress=False)
    assert (out / "results.jsonl").read_bytes() == written  # nothing mixed in, nothing lost


def test_resume_with_other_editor_settings_is_refused(tmp_path, tiny_model_dir):
    data, out = _data(tmp_path, _records()), tmp_path / "run"
    run_bench(_cfg(data, tiny_model_dir), out, progress=False)
    with pytest.raises(RequestError, match=r"^2 results in .* were made from other data or settings"):
        run_bench(_cfg(data, tiny_model_dir, settings={"steps": 2}), out, resume=True, progress=False)


def test_resume_with_the_same_data_makes_only_what_is_missing(tmp_path, tiny_model_dir):
    records = _records()
    data, out = _data(tmp_path, records[:1]), tmp_path / "run"
    run_bench(_cfg(data, tiny_model_dir), out, progress=False)
    _data(tmp_path, records)  # one record added, the first unchanged
    summary = run_bench(_cfg(data, tiny_model_dir), out, resume=True, progress=False)
    assert (summary["results_made"], summary["results_skipped"]) == (1, 1)
    assert [r["case_id"] for r in _lines(out)] == [str(records[0]["case_id"]), str(records[1]["case_id"])]


def test_duplicate_case_ids_are_refused_before_any_work(tmp_path, tiny_model_dir):
    records = _records()
    records[1]["case_id"] = records[0]["case_id"]
    data, out = _data(tmp_path, records), tmp_path / "run"
    with pytest.raises(RequestError, match=re.escape(
            f"{data}: 1 case id(s) occur more than once ({records[0]['case_id']}); results are stored by case id")):
        run_bench(_cfg(data, tiny_model_dir), out, progress=False)
    assert not (out / "results.jsonl").exists()


def test_old_results_folder_without_digests_still_reads_and_resumes(tmp_path, tiny_model_dir):
    data, out = _data(tmp_path, _records()), tmp_path / "run"
    run_bench(_cfg(data, tiny_model_dir), out, progress=False)
    old = [{k: v for k, v in r.items() if k not in ("digest", "checkpoint")} for r in _lines(out)]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    assert set(BenchStore(out).digests().values()) == {None}
    summary = run_bench(_cfg(data, tiny_model_dir), out, resume=True, progress=False)
    assert (summary["results_made"], summary["results_skipped"]) == (0, 2)
    assert len(BenchStore(out).frame()) == 2 and (out / "report.md").exists()


def test_sweep_of_a_trained_editor_runs_only_checkpoint_cs_and_names_them(tmp_path):
    cfg = BenchConfig(editors=("ft-l+sss", "mend+sss"), data="world", n=1, seeds=1, modes=("sweep",),
                      sweep_values=(0.0, 0.5, 0.9), sweep_n=1, settings={}, device="cpu")
    run_bench(cfg, tmp_path, progress=False)
    rows = _lines(tmp_path)
    assert sorted((r["editor"], r["mode"], r["checkpoint"]) for r in rows) == [
        ("ft-l+sss", "sweep@C=0", None), ("ft-l+sss", "sweep@C=0.5", None), ("ft-l+sss", "sweep@C=0.9", None),
        ("mend+sss", "sweep@C=0", "mend"), ("mend+sss", "sweep@C=0.9", "mend-sss")]
    report = (tmp_path / "report.md").read_text()
    assert "- mend+sss, C = 0.00: checkpoint `mend`\n- mend+sss, C = 0.90: checkpoint `mend-sss`" in report
    row_05 = next(line for line in report.splitlines() if line.startswith("| 0.50 |"))
    assert row_05.count("–") == 3  # mend+sss has no checkpoint at C = 0.5: its three cells are empty


def test_sweep_of_a_trained_editor_without_any_checkpoint_c_is_refused():
    cfg = BenchConfig(editors=("serac+sss",), modes=("sweep",), sweep_values=(0.5, 0.7))
    with pytest.raises(RequestError, match=re.escape(
            "serac+sss is a trained editor whose C is its checkpoint's: none of the sweep's C values has a "
            "checkpoint (shipped: C = 0, 0.9); add one of them to --sweep-values")):
        cfg.validate()


def test_resume_on_another_model_is_refused_naming_both_fingerprints(tmp_path, tiny_model_dir):
    data, out = _data(tmp_path, _records()), tmp_path / "run"
    run_bench(_cfg(data, tiny_model_dir), out, progress=False)
    written = (out / "results.jsonl").read_bytes()
    with pytest.raises(RequestError, match=rf"^the results in {re.escape(str(out))} were made on another model "
                                           r"\(weights [0-9a-f]{16}; sss_core/assets/default-model is [0-9a-f]{16}\)"):
        run_bench(_cfg(data, tiny_model_dir, model=None), out, resume=True, progress=False)
    assert (out / "results.jsonl").read_bytes() == written


def test_resume_with_world_locality_switched_on_is_refused_not_mixed(tmp_path, tiny_model_dir):
    data, out = _data(tmp_path, _records()), tmp_path / "run"
    run_bench(_cfg(data, tiny_model_dir), out, progress=False)
    with pytest.raises(RequestError, match=r"^2 results in .* were made from other data or settings"):
        run_bench(_cfg(data, tiny_model_dir, world_locality=True), out, resume=True, progress=False)

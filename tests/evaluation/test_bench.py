"""The bench command: results streamed, an interrupted run resumed without redoing work, the report."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import sss_core
import sss_core.errors
from sss_core.cli import main
from sss_core.errors import RequestError
from sss_core.evaluation import bench
from sss_core.evaluation.bench import BenchConfig, run_bench
from sss_core.evaluation.hypothesis import knn_density, reference_prompts, target_nll_of
from sss_core.evaluation.report import write_bench_report
from sss_core.evaluation.store import MEASURES, BenchStore

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REPO = Path(sss_core.__file__).resolve().parents[1]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_bench_all_modes_and_report(tmp_path, tiny_model_dir, monkeypatch):
    cfg = BenchConfig(editors=("ft-l", "ft-l+sss"), data=str(FIXTURES / "rome_counterfact.json"), seeds=2,
                      modes=("single", "sequential", "sweep"), seq_sizes=(1, 2), sweep_values=(0.0, 1.0), sweep_n=1,
                      settings={"steps": 2}, model=str(tiny_model_dir), device="cpu", plotly_js="directory")
    summary = run_bench(cfg, tmp_path, command="python -m sss_core bench ...", progress=False)
    # single 2 editors x 2 seeds x 2 cases; sequential 2 x 2 x (1 + 2) x 2 phases; sweep 1 x 2 x 2 C x 1
    assert summary["results_made"] == 8 + 24 + 4 == len(lines(tmp_path / "results.jsonl"))
    rows = [json.loads(x) for x in lines(tmp_path / "results.jsonl")]
    assert len({(r["editor"], r["seed"], r["case_id"], r["mode"]) for r in rows}) == len(rows)
    assert {r["mode"] for r in rows} == {"single", "sequential@1", "sequential@1/final", "sequential@2",
                                         "sequential@2/final", "sweep@C=0", "sweep@C=1"}
    assert all(r["probes"][0]["post"] for r in rows)  # raw predictions kept for every case
    report = (tmp_path / "report.md").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Table 5", "Fig. 3", "hypothesis", "What SSS changes",
                  "python -m sss_core bench"):
        assert title in report
    assert "Pre-Neighbor" in report and "One-Hop" in report and "Subject Replace" in report
    summary_csv = pd.read_csv(tmp_path / "summary.csv")
    assert {"table1", "table2", "table2:final", "table3", "c_sweep"} <= set(summary_csv["table"])
    t1 = summary_csv[(summary_csv["table"] == "table1") & (summary_csv["metric"] == "reliability")]
    assert list(t1["seeds"]) == [2, 2]
    assert (tmp_path / "c_sweep.html").exists() and (tmp_path / "sequential.html").exists()
    assert len(pd.read_csv(tmp_path / "hypothesis.csv")) == 12  # 6 pairs x 2 editors
    assert json.loads((tmp_path / "config.json").read_text())["runs"][0]["wall_seconds"] > 0
    # the hypothesis' measures are stored with each single edit (only those: the report uses only them)
    assert all((set(MEASURES) <= set(r)) == (r["mode"] == "single") for r in rows)
    assert f"- model: `{tiny_model_dir.name}`; device cpu;" in report  # from the run log: a name, not a path
    (tmp_path / "report.md").unlink()
    hypothesis = (tmp_path / "hypothesis.csv").read_text()

    def no_model(cfg):
        raise AssertionError("--report-only loaded a model")
    monkeypatch.setattr(bench, "_load_model", no_model)
    assert main(["bench", "--editors", "ft-l", "--data", cfg.data, "--seeds", "2", "--out", str(tmp_path),
                 "--model", cfg.model, "--set", "steps=2", "--report-only"]) == 0
    assert (tmp_path / "report.md").read_text() == report  # same report, no model
    assert (tmp_path / "hypothesis.csv").read_text() == hypothesis
    assert len(json.loads((tmp_path / "config.json").read_text())["runs"]) == 1  # not an invocation


def test_measures_are_stored_as_a_batched_report_would_compute_them(tmp_path, tiny_model_dir, bench_lm):
    cfg = BenchConfig(editors=("ft-l",), data=str(FIXTURES / "rome_counterfact.json"), seeds=1,
                      settings={"steps": 2}, model=str(tiny_model_dir), device="cpu", plotly_js="directory", knn=3)
    run_bench(cfg, tmp_path, progress=False)
    frame = BenchStore(tmp_path).frame()
    assert frame["measured"].all() and frame[list(MEASURES)].notna().all().all()
    cases = bench._cases_by_seed(cfg)
    density = knn_density(bench_lm.model, bench_lm.tok, list(frame["prompt"]), reference_prompts(cfg.data, cases[0]),
                          k=3)
    nll = target_nll_of(bench_lm.model, bench_lm.tok, list(frame["prompt"]), list(frame["target_new"]))
    assert frame["knn_distance"].tolist() == pytest.approx(frame["prompt"].map(density).tolist(), rel=1e-5)
    assert frame["target_nll"].tolist() == pytest.approx(nll, rel=1e-5)


def test_results_written_before_measures_were_stored(tmp_path, tiny_model_dir, bench_lm):
    """An older results folder (no measures in it) is reported with a model, and refused without one."""
    cfg = BenchConfig(editors=("ft-l", "ft-l+sss"), data=str(FIXTURES / "rome_counterfact.json"), seeds=2,
                      settings={"steps": 2}, model=str(tiny_model_dir), device="cpu", plotly_js="directory")
    run_bench(cfg, tmp_path, progress=False)
    results, log = tmp_path / "results.jsonl", tmp_path / "config.json"
    old = [{k: v for k, v in json.loads(x).items() if k not in MEASURES} for x in lines(results)]
    results.write_text("".join(json.dumps(r) + "\n" for r in old))
    runs = json.loads(log.read_text())
    runs["runs"][0] = {k: v for k, v in runs["runs"][0].items() if k not in ("model_name", "model_device")}
    log.write_text(json.dumps(runs))
    cases = bench._cases_by_seed(cfg)
    with pytest.raises(RequestError, match="--report-only --model"):
        write_bench_report(tmp_path, cfg, cases)
    write_bench_report(tmp_path, cfg, cases, bench_lm)
    assert len(pd.read_csv(tmp_path / "hypothesis.csv")) == 12
    assert f"- model: `{bench_lm.name}`; device cpu;" in (tmp_path / "report.md").read_text()
    assert [json.loads(x) for x in lines(results)] == old  # the results file is left as it was
    (tmp_path / "report.md").unlink()
    assert main(["bench", "--editors", "ft-l", "--data", cfg.data, "--seeds", "2", "--out", str(tmp_path),
                 "--model", cfg.model, "--report-only"]) == 0  # loads the model to compute them
    assert "hypothesis" in (tmp_path / "report.md").read_text()


def test_batch_mode_splits_cases_into_batches_and_reports_them(tmp_path, tiny_model_dir):
    cfg = BenchConfig(editors=("memit",), data=str(FIXTURES / "rome_counterfact.json"), seeds=1, modes=("batch",),
                      batch_size=2, settings={"v_steps": 2, "mom2_n_samples": 20, "mom2_text": "world",
                                              "stats_dir": str(tmp_path / "stats")},
                      model=str(tiny_model_dir), device="cpu", plotly_js="directory")
    summary = run_bench(cfg, tmp_path / "run", command="python -m sss_core bench ...", progress=False)
    rows = [json.loads(x) for x in lines(tmp_path / "run" / "results.jsonl")]
    assert summary["results_made"] == 2 and {r["mode"] for r in rows} == {"batch@2"}
    assert all(r["error"] is None and r["n"] == 2 for r in rows)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Batch editing" in report and "| memit |" in report
    assert "batch" in set(pd.read_csv(tmp_path / "run" / "summary.csv")["table"])


def test_existing_results_need_resume(tmp_path, tiny_model_dir):
    (tmp_path / "results.jsonl").write_text('{"editor": "ft-l", "seed": 0, "case_id": "1", "mode": "single"}\n')
    cfg = BenchConfig(editors=("ft-l",), data=str(FIXTURES / "counterfact.json"), seeds=1, model=str(tiny_model_dir))
    with pytest.raises(RequestError, match="--resume"):
        run_bench(cfg, tmp_path, progress=False)


@pytest.mark.parametrize("argv, message", [
    (["--editors", "nope"], "unknown editor 'nope'"),
    (["--editors", "ft-l", "--set", "warp=9"], "has no setting 'warp'"),
    (["--editors", "ft-l", "--mode", "sweep"], "needs an editor with SSS"),
    (["--editors", "ft-l", "--mode", "parallel"], "unknown mode 'parallel'"),
    (["--editors", "ft-l", "--data", "/no/such.json"], "no data file"),
])
def test_bad_bench_arguments_exit_2(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--out", str(tmp_path), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_killed_run_resumes_without_redoing_finished_cases(tmp_path, tiny_model_dir):
    out, n = tmp_path / "run", 120
    argv = ["bench", "--editors", "ft-l+sss", "--data", "world", "--n", str(n), "--seeds", "1", "--out", str(out),
            "--model", str(tiny_model_dir), "--set", "steps=3", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "sss_core", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.time() + 600  # generous: the machine may be shared and busy
    while time.time() < deadline and proc.poll() is None:
        if results.exists() and results.read_text().count("\n") >= 5:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # a real interruption, as a crash or a power cut would be
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    before = results.read_bytes()
    kept = before[:before.rfind(b"\n") + 1].decode().splitlines()
    assert 5 <= len(kept) < n

    assert main([*argv, "--resume"]) == 0
    after = lines(results)
    assert after[:len(kept)] == kept  # finished cases untouched, not redone
    keys = [tuple(json.loads(x)[k] for k in ("editor", "seed", "case_id", "mode")) for x in after]
    assert len(after) == n == len(set(keys))
    runs = json.loads((out / "config.json").read_text())["runs"]
    assert runs[-1]["results_skipped"] == len(kept) and runs[-1]["results_made"] == n - len(kept)
    assert runs[-1]["command"].endswith("--resume")


def test_workers_share_the_jobs_and_agree_with_one_process(tmp_path, tiny_model_dir):
    cfg = BenchConfig(editors=("ft-l", "ft-l+sss"), data=str(FIXTURES / "rome_counterfact.json"), seeds=2,
                      settings={"steps": 2}, model=str(tiny_model_dir), device="cpu", plotly_js="directory")
    run_bench(cfg, tmp_path / "one", progress=False)
    summary = run_bench(dataclasses.replace(cfg, workers=2), tmp_path / "two", progress=False)
    assert summary["results_made"] == 8 and not list((tmp_path / "two").glob("results.part*"))

    def scores(folder):
        rows = [json.loads(x) for x in lines(folder / "results.jsonl")]
        return {(r["editor"], r["seed"], r["case_id"], r["mode"]): (r["metrics"], [r[m] for m in MEASURES])
                for r in rows}
    assert scores(tmp_path / "one") == scores(tmp_path / "two")  # measures too: each taken alone, not batched


def test_ctrl_c_keeps_results_logs_the_run_and_resume_finishes(tmp_path, tiny_model_dir, monkeypatch):
    real = bench.single_edits

    def interrupted_after_two(*args, **kwargs):
        for i, outcome in enumerate(real(*args, **kwargs)):
            if i == 2:
                raise KeyboardInterrupt  # what Ctrl-C (or SIGTERM, via the CLI's handler) does mid-run
            yield outcome
    monkeypatch.setattr(bench, "single_edits", interrupted_after_two)
    cfg = BenchConfig(editors=("ft-l",), data=str(FIXTURES / "counterfact.json"), seeds=1, settings={"steps": 2},
                      model=str(tiny_model_dir), device="cpu")
    with pytest.raises(sss_core.errors.SSSError, match="interrupted after 2 new results"):
        run_bench(cfg, tmp_path, progress=False)
    assert len(lines(tmp_path / "results.jsonl")) == 2
    assert json.loads((tmp_path / "config.json").read_text())["runs"][-1]["interrupted"] is True
    monkeypatch.setattr(bench, "single_edits", real)
    assert run_bench(cfg, tmp_path, resume=True, progress=False)["results_made"] == 1

"""The bench on a real local Ray cluster (2 CPUs): the same rows as the local bench, a killed actor
loses only its job, interrupted runs resume with either executor, and --ray without Ray says how to
install it. Select them with ``-m ray``; they skip only where Ray is not installed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import sss_core
from sss_core.cli import main
from sss_core.evaluation.bench import BenchConfig, _cases_by_seed, plan, run_bench
from sss_core.evaluation.ray_bench import RayExecutor, failed_outcome

pytestmark = pytest.mark.ray

REPO = Path(sss_core.__file__).resolve().parents[1]
KEY = ("editor", "seed", "case_id", "mode")
N = 50  # cases per seed: two single-edit jobs of 25 (bench.BLOCK), one per actor


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster of 2 CPUs for the module (each executor joins it and leaves it running)."""
    ray = pytest.importorskip("ray")
    sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    signal.signal(signal.SIGTERM, sigterm)  # ray.init replaces it
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def cfg(tiny_model_dir) -> BenchConfig:
    """Single edits of the world (two jobs) and a sequential run of 3 (one job) with FT-L on the tiny model.

    10 steps make a job of 25 edits last long enough (about a second) for a kill to land inside it.
    """
    return BenchConfig(editors=("ft-l",), data="world", n=N, seeds=1, modes=("single", "sequential"),
                       seq_sizes=(3,), settings={"steps": 10}, model=str(tiny_model_dir), device="cpu")


def rows(folder: Path) -> list[dict]:
    """Every stored result of ``folder``, as written."""
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def by_key(records: list[dict]) -> dict[tuple, dict]:
    """Results keyed by (editor, seed, case_id, mode), without the edit's wall time; fails on a key stored twice."""
    out = {tuple(r[k] for k in KEY): {k: v for k, v in r.items() if k != "seconds"} for r in records}
    assert len(out) == len(records), "a result was stored twice"
    return out


@pytest.fixture(scope="module")
def local_rows(cfg, tmp_path_factory) -> dict[tuple, dict]:
    """The rows of the local bench (one process) for ``cfg``: what every Ray run must store."""
    out = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each actor (RayExecutor's threads=1): the same sums in the same order
    try:
        run_bench(cfg, out, progress=False)
    finally:
        torch.set_num_threads(threads)
    return by_key(rows(out))


def run_log(folder: Path) -> list[dict]:
    """The run log's entries of ``folder``."""
    return json.loads((folder / "config.json").read_text())["runs"]


class Killer(threading.Thread):
    """Kills a busy actor's process (SIGKILL) once ``after`` results are stored, choosing an actor whose job still
    has at least two results to store: a job whose results had all been streamed when its actor died has nothing
    left to retry or to record as failed (that race once left the failed-job test without a failed row)."""

    def __init__(self, executor: RayExecutor, results: Path, after: int = 1):
        super().__init__(daemon=True)
        self.executor, self.results, self.after = executor, results, after
        self.killed: int | None = None

    def stored(self) -> int:
        return self.results.read_bytes().count(b"\n") if self.results.exists() else 0

    def run(self) -> None:
        deadline = time.time() + 300
        while time.time() < deadline and self.killed is None:
            mid_job = [i for i, job in self.executor.busy().items() if self.executor.unstored(job) >= 2]
            if self.stored() >= self.after and mid_job:
                self.killed = self.executor.pids()[mid_job[0]]
                os.kill(self.killed, signal.SIGKILL)
            time.sleep(0.01)


def test_a_ray_run_stores_the_same_rows_as_the_local_bench(ray_cluster, cfg, local_rows, tmp_path):
    executor = RayExecutor(actors=2)
    summary = run_bench(cfg, tmp_path, progress=False, executor=executor)
    assert summary["results_made"] == len(local_rows) == 2 * 3 + N
    assert by_key(rows(tmp_path)) == local_rows  # scores, predictions and measures, line for line
    log = run_log(tmp_path)[-1]
    assert len(log["ray"]["actors"]) == 2 and {a["device"] for a in log["ray"]["actors"]} == {"cpu"}
    assert log["ray"]["actor_deaths"] == 0 and log["model_name"] == Path(cfg.model).name
    assert (tmp_path / "report.md").exists()


def test_a_killed_actor_loses_only_its_job_which_is_retried(ray_cluster, cfg, local_rows, tmp_path):
    executor = RayExecutor(actors=2)
    killer = Killer(executor, tmp_path / "results.jsonl")
    killer.start()
    summary = run_bench(cfg, tmp_path, progress=False, executor=executor)
    killer.join()
    assert killer.killed is not None
    assert summary["results_made"] == len(local_rows)
    assert by_key(rows(tmp_path)) == local_rows  # nothing lost, nothing stored twice, nothing failed
    ray_log = run_log(tmp_path)[-1]["ray"]
    assert ray_log["actor_deaths"] == 1 and len(ray_log["retried_jobs"]) == 1 and not ray_log["failed_jobs"]
    assert {a["pid"]: a["deaths"] for a in ray_log["actors"]}[killer.killed] == 1


def test_a_job_whose_tries_run_out_is_recorded_as_failed_with_the_reason(ray_cluster, cfg, local_rows, tmp_path):
    executor = RayExecutor(actors=2, max_tries=1)
    killer = Killer(executor, tmp_path / "results.jsonl")
    killer.start()
    summary = run_bench(cfg, tmp_path, progress=False, executor=executor)
    killer.join()
    stored = by_key(rows(tmp_path))
    assert summary["results_made"] == len(stored) == len(local_rows)
    failed = {k: r for k, r in stored.items() if r["error"]}
    assert failed and all("after 1 tries on Ray actors" in r["error"] for r in failed.values())
    assert all("metrics" not in r for r in failed.values())
    assert {k: r for k, r in stored.items() if k not in failed} == {k: local_rows[k] for k in stored if k not in failed}
    assert run_log(tmp_path)[-1]["ray"]["failed_jobs"][0]["reason"] in next(iter(failed.values()))["error"]


def test_ctrl_c_on_a_ray_run_keeps_its_results_stops_its_actors_and_the_local_bench_resumes(
        ray_cluster, cfg, local_rows, tmp_path):
    """A real Ctrl-C (SIGINT) to the command, as a user presses it: the command runs in its own process
    and joins this module's cluster."""
    address = ray_cluster.get_runtime_context().gcs_address
    argv = [sys.executable, "-m", "sss_core", "bench", "--editors", "ft-l", "--data", "world", "--n", str(N),
            "--seeds", "1", "--mode", "single,sequential", "--seq-sizes", "3", "--set", "steps=10",
            "--model", cfg.model, "--device", "cpu", "--out", str(tmp_path), "--no-progress",
            "--ray", address, "--actors", "2"]
    # A suite started in the background by a shell without job control runs with SIGINT ignored, and
    # a child inherits that: give the command the default disposition a terminal's Ctrl-C meets.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    results = tmp_path / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if results.exists() and results.read_bytes().count(b"\n") >= 10:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode != 0 and "interrupted after" in err, err[-2000:]
    kept = rows(tmp_path)
    log = run_log(tmp_path)[-1]
    assert 10 <= len(kept) < len(local_rows) and log["interrupted"] is True
    pids = [a["pid"] for a in log["ray"]["actors"] if a.get("pid")]
    assert pids
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "Ctrl-C left an actor running"

    summary = run_bench(cfg, tmp_path, resume=True, progress=False)  # the local bench finishes it
    assert summary["results_skipped"] == len(kept) and summary["results_made"] == len(local_rows) - len(kept)
    assert rows(tmp_path)[:len(kept)] == kept
    assert by_key(rows(tmp_path)) == local_rows


def test_a_local_run_resumes_on_ray_through_the_cli(ray_cluster, cfg, local_rows, tmp_path, capsys):
    first = sorted(local_rows)[:7]  # what an interrupted local run had stored
    (tmp_path / "results.jsonl").write_text("".join(json.dumps({**local_rows[k], "seconds": 0.1}) + "\n"
                                                    for k in first))
    argv = ["bench", "--editors", "ft-l", "--data", "world", "--n", str(N), "--seeds", "1", "--mode",
            "single,sequential", "--seq-sizes", "3", "--set", "steps=10", "--model", cfg.model, "--device", "cpu",
            "--out", str(tmp_path), "--no-progress", "--resume", "--ray", "--actors", "2"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["results_skipped"] == 7 and summary["results_made"] == len(local_rows) - 7
    assert by_key(rows(tmp_path)) == local_rows
    assert "--ray --actors 2" in run_log(tmp_path)[-1]["command"]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("argv, message", [
    (["--actors", "2"], "--actors is for --ray"),
    (["--ray", "--workers", "2"], "--workers starts local processes; with --ray give --actors"),
])
def test_executor_flags_that_do_not_go_together_exit_2(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--editors", "ft-l", "--out", str(tmp_path), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_ray_not_installed_is_one_line_saying_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"  # what `import ray` meets where Ray is not installed
            "from sss_core.cli import main\n"
            "try:\n    main(sys.argv[1:])\n"
            "finally:\n    print('torch imported:', 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code, "bench", "--editors", "ft-l", "--out", str(tmp_path),
                           "--ray", "auto"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ['error: --ray needs Ray, which is not installed: '
                                                'pip install "sss-lab[ray]"']
    assert "torch imported: False" in proc.stdout  # checked before the bench's imports


def test_a_failed_key_carries_what_a_result_of_its_mode_carries(tiny_model_dir):
    cfg = BenchConfig(editors=("ft-l+sss",), data="world", n=4, seeds=1, modes=("sequential", "batch", "sweep"),
                      seq_sizes=(3,), batch_size=2, sweep_values=(0.5,), sweep_n=2, model=str(tiny_model_dir))
    jobs = plan(cfg, None, _cases_by_seed(cfg), lambda key: False)  # keys and cases only, as a Ray driver plans
    failed = {k.mode: failed_outcome(job, k, "ActorDiedError: gone").to_json() for job in jobs for k in job.keys}
    assert {m: (r["n"], r["position"], r["C"], r["error"]) for m, r in failed.items()} == {
        "sequential@3": (3, 3, None, "ActorDiedError: gone"),  # the last case of the run: position 3
        "sequential@3/final": (3, 3, None, "ActorDiedError: gone"),
        "batch@2": (2, None, None, "ActorDiedError: gone"),
        "sweep@C=0.5": (None, None, 0.5, "ActorDiedError: gone"),
    }
    first = jobs[0].keys[0]
    assert failed_outcome(jobs[0], first, "x").position == 1 and "metrics" not in failed["batch@2"]

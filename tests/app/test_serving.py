"""Serving a class (issue 29, items 2 and 3): a fair queue for the shared model that tells a waiting session
how many edits are ahead of it, long runs that let single edits through between their edits, and the
folders and models a served app refuses, with the message that names the setting that adds them."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from apptest_support import APP, _no_umap_warmup, _restore_torch_threads, assert_ok  # noqa: F401
from app import serving
from app.reports import read_report

REFUSED_ETC = ("/etc is not among the folders this server shows (runs/, docs/results/); the server's owner can "
               "add it with SSS_LAB_RESULTS_DIRS")
REFUSED_GPT2 = ("gpt2 is not among the models this server loads (default); the server's owner can add it with "
                "SSS_LAB_MODELS")


@pytest.fixture
def served(monkeypatch, tmp_path):
    """A server for a class (SSS_LAB_SERVING=class) working in ``tmp_path``, with runs/a and docs/results/v1
    holding a report, and a folder ``outside`` next to them that it must not show."""
    # Streamlit reads .streamlit/config.toml (server.address = "localhost") once per process, from the working
    # directory: read it here before leaving the repository, or the later test modules' servers would be served
    # on "every interface" (no config file in tmp_path) and protected.
    serving.server_address()
    monkeypatch.setenv(serving.SERVING_ENV, "class")
    for var in (serving.RESULTS_DIRS_ENV, serving.MODELS_ENV, *[lim.env for lim in serving.LIMITS.values()]):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    for d in ("runs/a", "docs/results/v1", "outside"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "report.md").write_text(f"# {d}\n")
    return tmp_path


# --- which folders a served app shows ------------------------------------------------------------------------------

def test_a_folder_outside_the_allowed_ones_is_refused_with_the_exact_message(served):
    with pytest.raises(serving.NotServed) as refused:
        serving.check_folder("/etc")
    assert str(refused.value) == REFUSED_ETC
    assert serving.check_folder("runs/a") == served / "runs" / "a"
    assert serving.check_folder(str(served / "docs" / "results" / "v1")) == served / "docs" / "results" / "v1"
    assert serving.check_folder("runs") == served / "runs"  # the root itself


def test_dot_dot_and_symlinks_out_of_an_allowed_folder_are_refused(served):
    with pytest.raises(serving.NotServed, match=r"^runs/\.\./outside is not among the folders"):
        serving.check_folder("runs/../outside")
    with pytest.raises(serving.NotServed, match=r"^runs/a/\.\./\.\./\.\./\.\./etc is not among"):
        serving.check_folder("runs/a/../../../../etc")
    assert serving.check_folder("runs/a/../a") == served / "runs" / "a"  # '..' that stays inside is fine
    (served / "runs" / "escape").symlink_to(served / "outside", target_is_directory=True)
    (served / "runs" / "inside").symlink_to(served / "docs" / "results" / "v1", target_is_directory=True)
    with pytest.raises(serving.NotServed, match=r"^runs/escape is not among the folders"):
        serving.check_folder("runs/escape")
    assert serving.check_folder("runs/inside") == served / "docs" / "results" / "v1"
    from app import resources
    assert "runs/escape" not in resources.list_report_dirs()  # not offered either
    assert {"runs/a", "docs/results/v1"} <= set(resources.list_report_dirs())


def test_a_report_file_linked_to_a_file_outside_is_named_and_not_read(served):
    (served / "outside" / "secret.md").write_text("the secret")
    (served / "runs" / "a" / "notes.md").symlink_to(served / "outside" / "secret.md")
    rep = read_report("runs/a", allowed=serving.allowed_folder)
    assert "notes.md" not in rep.markdown and rep.markdown["report.md"] == "# runs/a\n"
    assert rep.problems == ["notes.md: links outside the folders this server shows; not read"]


def test_the_owner_adds_folders_and_localhost_keeps_todays_freedom(served, monkeypatch):
    monkeypatch.setenv(serving.RESULTS_DIRS_ENV, f"{served / 'outside'}")
    assert serving.check_folder("outside") == served / "outside"
    with pytest.raises(serving.NotServed) as refused:
        serving.check_folder("/etc")
    assert str(refused.value) == (f"/etc is not among the folders this server shows (runs/, docs/results/, "
                                  f"{served / 'outside'}/); the server's owner can add it with SSS_LAB_RESULTS_DIRS")
    monkeypatch.setenv(serving.SERVING_ENV, "auto")
    monkeypatch.setattr(serving, "server_address", lambda: "localhost")
    assert not serving.protected() and serving.check_folder("/etc") == Path("/etc")
    monkeypatch.setattr(serving, "server_address", lambda: "0.0.0.0")
    assert serving.protected() and not serving.allowed_folder("/etc")
    monkeypatch.setenv(serving.SERVING_ENV, "local")  # the owner's explicit choice wins over the address
    assert not serving.protected()


@pytest.mark.parametrize("address, loopback", [("localhost", True), ("127.0.0.1", True), ("::1", True),
                                               ("[::1]", True), ("0.0.0.0", False), ("", False), (None, False),
                                               ("192.168.1.20", False), ("lab.example.org", False)])
def test_loopback_addresses(address, loopback):
    assert serving.is_loopback(address) is loopback


# --- which models a served app loads -------------------------------------------------------------------------------

def test_a_model_outside_the_allowed_list_is_refused_with_the_exact_message(served, monkeypatch):
    from app.resources import model_path
    with pytest.raises(serving.NotServed) as refused:
        serving.check_model("gpt2", model_path)
    assert str(refused.value) == REFUSED_GPT2
    assert serving.check_model("", model_path) == "default"
    assert serving.check_model(" default ", model_path) == "default"
    assert serving.check_model(model_path("default"), model_path) == model_path("default")  # the shipped folder
    monkeypatch.setenv(serving.MODELS_ENV, "gpt2")
    assert serving.check_model("gpt2", model_path) == "gpt2"
    with pytest.raises(serving.NotServed, match=r"^/etc is not among the models this server loads \(default, gpt2\)"):
        serving.check_model("/etc", model_path)


def test_limits_are_todays_on_localhost_smaller_when_served_and_set_by_the_owner(served, monkeypatch):
    assert [serving.limit(n) for n in ("hypothesis_n", "sweep_cs", "sequential")] == [100, 11, 20]
    monkeypatch.setenv(serving.SERVING_ENV, "local")
    assert [serving.limit(n) for n in ("hypothesis_n", "sweep_cs", "sequential")] == [200, 21, 50]
    monkeypatch.setenv("SSS_LAB_MAX_HYPOTHESIS_N", "40")
    monkeypatch.setenv("SSS_LAB_MAX_SWEEP_CS", "many")  # not a number: the default, and a warning in the log
    assert serving.limit("hypothesis_n") == 40 and serving.limit("sweep_cs") == 21
    assert serving.limit_note("hypothesis_n") == ("This server allows at most 40 world edits per Hypothesis run per "
                                                  "session (set by SSS_LAB_MAX_HYPOTHESIS_N).")


# --- the queue -------------------------------------------------------------------------------------------------------

def _until(condition, seconds: float = 30.0) -> None:
    """Wait until ``condition()`` holds (a test step, not a timing assertion)."""
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.01)


def test_a_waiting_session_is_told_how_many_edits_are_ahead_of_it():
    import torch
    model = torch.nn.Linear(2, 2)
    queue = serving.queue_for(model)
    release, done, notices = threading.Event(), [], {"B": [], "C": []}

    def holder() -> None:
        with queue.turn("A", "a Hypothesis edit"):
            assert serving.model_lock(model)._is_owned()  # the turn holds the model's lock
            release.wait(30)
        done.append("A")

    def session(name: str) -> None:
        with queue.turn(name, "ft-l edit", on_wait=lambda ahead: notices[name].append(serving.waiting_message(ahead))):
            if name == "B":  # B holds the model until C was told it moved up
                _until(lambda: len(notices["C"]) == 2)
            done.append(name)

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    _until(lambda: queue.ahead_of("A") == 0)
    threads.append(threading.Thread(target=session, args=("B",)))
    threads[1].start()
    _until(lambda: notices["B"])
    threads.append(threading.Thread(target=session, args=("C",)))
    threads[2].start()
    _until(lambda: notices["C"])
    assert [t.session for t in queue.snapshot()] == ["A", "B", "C"]
    assert notices == {"B": ["Waiting for the model: 1 edit ahead of yours"],
                       "C": ["Waiting for the model: 2 edits ahead of yours"]}
    assert not done  # nobody went past the holder
    release.set()
    for t in threads:
        t.join(30)
    assert done == ["A", "B", "C"]
    assert notices["C"] == ["Waiting for the model: 2 edits ahead of yours",
                            "Waiting for the model: 1 edit ahead of yours"]
    assert queue.snapshot() == []


def test_a_turn_nested_in_a_turn_or_in_the_models_lock_does_not_wait_for_itself():
    import torch
    model = torch.nn.Linear(2, 2)
    queue = serving.queue_for(model)
    with queue.turn("A", "outer") as outer, queue.turn("A", "inner") as inner:
        assert outer is not None and inner is None
    with serving.model_lock(model), queue.turn("A", "under the lock") as ticket:
        assert ticket is None
    assert queue.snapshot() == []


def _held_by_a(queue):
    """Session "A" holds its turn in a thread until the returned event is set: (release, thread)."""
    release = threading.Event()

    def holder() -> None:
        with queue.turn("A", "held"):
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    _until(lambda: queue.ahead_of("A") == 0)
    return release, t


def test_a_ticket_leaves_the_queue_when_the_waiting_session_is_interrupted():
    import torch
    model = torch.nn.Linear(2, 2)
    queue = serving.queue_for(model)
    failures = []

    def rerun(ahead: int) -> None:  # a Streamlit rerun raises out of the notice while the session waits
        raise RuntimeError("rerun")

    release, t = _held_by_a(queue)
    with pytest.raises(RuntimeError, match="rerun"):
        with queue.turn("B", "edit", on_wait=rerun):
            failures.append("ran")  # never: it was interrupted while waiting
    assert [x.session for x in queue.snapshot()] == ["A"] and not failures
    release.set()
    t.join(30)


def test_a_waiting_streamlit_session_redraws_its_notice_so_a_rerun_can_end_the_wait():
    import torch
    model = torch.nn.Linear(2, 2)
    queue = serving.queue_for(model)
    calls = []

    def redraw(ahead: int) -> None:  # the third redraw meets a rerun request (as Streamlit raises it)
        calls.append(ahead)
        if len(calls) == 3:
            raise RuntimeError("rerun")

    release, t = _held_by_a(queue)
    with pytest.raises(RuntimeError, match="rerun"):
        with queue.turn("B", "edit", on_wait=redraw, poll=0.01, refresh=0.02):
            pass
    assert calls == [1, 1, 1] and [x.session for x in queue.snapshot()] == ["A"]
    release.set()
    t.join(30)


def test_a_single_edit_is_not_stuck_behind_a_whole_hypothesis_run(default_lm):
    """A Hypothesis job of N edits in one thread (one turn per edit, as the view runs it) and a single edit in
    another: the single edit finishes after at most two of the job's edits, not after all of them."""
    from app.hypothesis import HypothesisJob, run_next
    from sss_core.analysis import analyse_edit
    from sss_core.evaluation.presets import presets

    n = 8
    job = HypothesisJob.start(presets("test", n), [("ft-l", {"steps": 3})], k=3)
    queue = serving.queue_for(default_lm.model)
    order: list[str] = []
    started_at: list[int] = []

    def hypothesis() -> None:
        while job.pending:
            with queue.turn("teacher", f"Hypothesis edit {len(job.records) + 1}"):
                run_next(default_lm, job)
            order.append(f"job {len(job.records)}")

    def single() -> None:
        started_at.append(len(job.records))
        with queue.turn("student", "ft-l edit"):
            analyse_edit(default_lm, "ft-l", {"steps": 3}, presets("test", n + 1)[n], with_embeddings=False)
        order.append("single")

    runner = threading.Thread(target=hypothesis)
    runner.start()
    _until(lambda: len(job.records) >= 1)
    student = threading.Thread(target=single)
    student.start()
    runner.join(300)
    student.join(300)
    assert len(job.records) == n and not any(r.get("error") for r in job.records)
    job_edits_before = order.index("single")  # the job's edits that finished before the single edit did
    assert job_edits_before <= started_at[0] + 2, order
    assert job_edits_before < n, order


# --- in the app (AppTest) --------------------------------------------------------------------------------------------

def _session(page: str | None = None, query: dict | None = None):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(APP), default_timeout=300)
    if page is not None:
        at.switch_page(page)
    at.query_params.update(query or {})
    return at.run()


def test_the_results_view_refuses_a_typed_path_and_a_linked_path_outside(served):
    at = _session("app/views/results.py")
    assert_ok(at)
    assert at.selectbox(key="results_pick").options == ["(type a path below)", "runs/a", "docs/results/v1"]
    at.text_input(key="results_dir").set_value("/etc").run()
    assert [e.value for e in at.error] == [REFUSED_ETC]
    assert not at.expander  # nothing of /etc was listed
    at.text_input(key="results_dir").set_value("runs/a").run()
    assert_ok(at)
    assert [m.value for m in at.markdown if m.value.startswith("# ")] == ["# runs/a"]
    linked = _session("app/views/results.py", {"dir": "/etc"})
    assert [e.value for e in linked.error] == [REFUSED_ETC]


def test_the_hypothesis_views_bench_folder_refuses_a_linked_path_outside(served):
    at = _session("app/views/hypothesis.py", {"hsrc": "A bench run's results", "hdir": "runs/../outside"})
    assert [e.value for e in at.error] == ["runs/../outside is not among the folders this server shows (runs/, "
                                           "docs/results/); the server's owner can add it with SSS_LAB_RESULTS_DIRS"]


def test_the_model_box_refuses_a_model_outside_the_list(served):
    at = _session()
    assert_ok(at)
    at.text_input(key="model_name").set_value("gpt2").run()
    assert [e.value for e in at.error] == [REFUSED_GPT2]
    assert at.button(key="run_edit").disabled


def test_an_edit_waits_for_a_held_turn_and_says_how_long(monkeypatch):
    """Another session holds the model (a held turn); this session's Run edit queues behind it, runs once the
    turn is given back, and its status box says it waited behind one edit."""
    from app.resources import get_model
    monkeypatch.setenv(serving.SERVING_ENV, "local")
    at = _session()
    at.session_state["cfg:ft-l:steps"] = 3
    at.selectbox(key="editor").set_value("ft-l").run()
    queue = serving.queue_for(get_model("default").model)
    held, release = threading.Event(), threading.Event()

    def other_session() -> None:
        with queue.turn("other", "a Hypothesis edit"):
            held.set()
            _until(lambda: len(queue.snapshot()) == 2)  # this session's edit is queued behind it
            release.set()

    t = threading.Thread(target=other_session)
    t.start()
    held.wait(30)
    at.button(key="run_edit").click().run()
    t.join(30)
    assert release.is_set()
    assert_ok(at)
    waited = [c.value for c in at.caption if c.value.startswith("Waited ")]
    assert len(waited) == 1 and re.fullmatch(r"Waited \d+\.\d s for the model \(1 edit was ahead of yours; other "
                                             r"sessions share it\)\.", waited[0]), waited
    assert "λ_max after (new target)" in {m.label for m in at.metric}  # the edit ran once its turn came


def test_a_served_session_has_the_smaller_limits_even_from_a_link(served):
    at = _session("app/views/hypothesis.py", {"hn": "500"})
    assert_ok(at)
    assert (at.number_input(key="hyp_n").max, at.number_input(key="hyp_n").value) == (100, 100)
    sweep = _session("app/views/sweep.py")
    assert sweep.multiselect(key="sweep_cs").max_selections == 11


def test_the_launcher_tells_the_owner_what_a_served_app_protects(monkeypatch, capsys):
    from app import launch
    for var in (serving.SERVING_ENV, serving.RESULTS_DIRS_ENV, serving.MODELS_ENV,
                *[lim.env for lim in serving.LIMITS.values()]):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SSS_LAB_MAX_SEQUENTIAL", "10")
    args = launch.streamlit_args(["--server.address", "0.0.0.0"])
    assert launch.address_of(args) == "0.0.0.0" and launch.address_of(launch.streamlit_args([])) == "localhost"
    assert launch.address_of(["--server.address=10.0.0.5"]) == "10.0.0.5"
    assert serving.served_summary("localhost") is None
    summary = serving.served_summary("0.0.0.0")
    assert summary.splitlines() == [
        "SSS Lab is served beyond this machine (0.0.0.0), without authentication: put a reverse proxy with basic "
        "auth (or a VPN) in front of it (docs/app.md, 'Serve a class').",
        "Folders shown: runs/, docs/results/ (more with SSS_LAB_RESULTS_DIRS); models loaded: default (more with "
        "SSS_LAB_MODELS).",
        "Per session at most: 100 world edits per Hypothesis run (SSS_LAB_MAX_HYPOTHESIS_N); 11 values of C per "
        "sweep (SSS_LAB_MAX_SWEEP_CS); 10 edits in a sequential history (SSS_LAB_MAX_SEQUENTIAL)."]

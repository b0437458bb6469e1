"""``sss-lab-app`` (app/launch.py): the router it finds, the settings it passes, and a real start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app import launch

ROOT = Path(__file__).resolve().parents[2]


def test_router_is_found_beside_the_app_package():
    router = launch.router_path()
    assert router.name == "streamlit_app.py" and router.is_file()
    assert (router.parent / "app" / "views" / "edit.py").is_file()  # its st.Page paths resolve


def test_settings_are_those_of_the_projects_streamlit_config():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    flat = {f"{section}.{key}": value for section, values in config.items() for key, value in values.items()}
    assert launch.STREAMLIT_SETTINGS == flat


def test_arguments_run_the_router_and_the_callers_flags_come_last():
    args = launch.streamlit_args(["--server.port", "8600"])
    assert args[:2] == ["run", str(launch.router_path())]
    assert args[args.index("--server.headless") + 1] == "true"  # booleans as streamlit spells them
    assert args[-2:] == ["--server.port", "8600"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_app_starts_and_answers(tmp_path):
    """Started from another folder (so no .streamlit/config.toml there), it serves the app."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app.launch", "--server.port", str(port)], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2) as r:
                    assert r.read() == b"ok"
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "the app did not answer within 60 s"
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://localhost:{port}/", timeout=5) as r:
            assert b"<html" in r.read().lower()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_first_pages_modules_leave_scipy_and_transformers_for_later():
    """The router's and the Edit page's modules import neither scipy (0.8 s) nor transformers (0.5 s, and
    2.5 s with GPT-2's module): a fresh server's first page paints before the model's imports are done."""
    modules = "app.panels, app.panels.edit, app.inputs, app.records, app.resources, app.state, sss_core.analysis"
    code = (f"import sys, {modules}, sss_core.editors, sss_core.projection\n"
            "print(sorted(m for m in ('scipy', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_the_warm_up_embeds_the_hypothesis_views_reference_so_its_first_run_does_not(default_lm):
    """``resources.warm_hypothesis`` (the launcher's background warm-up) leaves the k-NN reference the
    Hypothesis view builds on each Run embedded: building it then reads the model not once."""
    from app import resources
    from sss_core.evaluation import hypothesis
    from sss_core.evaluation.presets import default_world

    hypothesis._EMBEDDED_REFERENCES.clear()  # another test may have embedded it already
    calls = []
    handle = default_lm.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        resources.warm_hypothesis(default_lm)
        warm_up = len(calls)
        measures = hypothesis.EditMeasures(default_lm.model, default_lm.tok,
                                           hypothesis.reference_prompts("world", []), 10)
        knn = measures._knn_reference()
    finally:
        handle.remove()
    n_prompts = len({f.prompt() for f in default_world().facts})
    assert warm_up == -(-n_prompts // hypothesis.EMBED_BATCH)  # the warm-up embedded it, one pass per batch
    assert len(calls) == warm_up and len(knn.reference) == n_prompts  # the view's reference: not one pass more

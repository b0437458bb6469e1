import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sss_core.models import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sss_core", *args], cwd=ROOT, capture_output=True, check=False,
                          text=True, timeout=300)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_edit_json_france_to_rome_leaves_model_on_disk_unchanged():
    before = _digest(DEFAULT_MODEL / "model.safetensors")
    res = cli("edit", "--editor", "ft-l+sss", "--prompt", "The capital of France is", "--subject", "France",
              "--target", "Rome", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["metrics"]["reliability"] == 1.0
    assert {"lambda_max_before", "lambda_max_after", "pre", "post", "metrics", "seconds"} <= set(out)
    assert {"reliability", "generality", "locality"} <= set(out["metrics"])
    assert out["post"][0]["token"].strip() and out["pre"][0]["prob"] > 0
    rewrite = next(p for p in out["probes"] if p["group"] == "rewrite")
    assert rewrite["post"] == [" Rom", "e"]  # spelt as text, as the top-k is (not the tokenizer's "\u0120Rom")
    assert rewrite["pre"][0] == out["pre"][0]["token"]  # the first answer token before = the top-1 before
    assert _digest(DEFAULT_MODEL / "model.safetensors") == before


@pytest.mark.parametrize("args, message", [
    (["--editor", "nope"], "unknown editor"),
    (["--editor", "ft-l", "--prompt", " "], "empty"),
    (["--editor", "ft-l+sss", "--C", "1.5"], "C must be in"),
    (["--editor", "ft-l+sss", "--C", "nan"], "C must be in"),
])
def test_bad_edit_arguments_exit_2_with_one_line(args, message):
    base = {"--prompt": "The capital of France is", "--target": "Rome"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    res = cli("edit", *[x for kv in base.items() for x in kv])
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_lambda_and_world(tmp_path):
    res = cli("lambda", "--prompt", "The capital of France is", "--target", "Paris", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["lambda_max"] > 0
    res = cli("world", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert len(json.loads((tmp_path / "test.json").read_text())) >= 500
    assert len(json.loads((tmp_path / "facts.json").read_text())) >= 2000


def test_train_rejects_an_unknown_setting_before_loading_anything(tmp_path):
    res = cli("train", "serac", "--out", str(tmp_path / "x"), "--set", "swap_target=0.5")
    assert res.returncode == 2
    assert "no setting 'swap_target'" in res.stderr and "swap_targets" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()


def test_lambda_on_a_bfloat16_model():
    res = cli("lambda", "--prompt", "The capital of France is", "--target", "Paris", "--json", "--dtype", "bfloat16",
              "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["lambda_max"] > 0


# --- arguments are checked before torch is imported (issue 15.6) ------------------------------------

def _torch_after(argv: list[str], env: dict | None = None) -> tuple[bool, str]:
    """Run the CLI on ``argv`` in a fresh interpreter; (was torch imported?, stderr)."""
    code = ("import sys\nfrom sss_core.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
                         env=env)
    return res.stdout.split()[-2:] != ["False", "False"], res.stderr


@pytest.mark.parametrize("argv, message", [
    (["--help"], ""),
    (["edit", "--help"], ""),
    (["bench", "--help"], ""),
    (["train", "--help"], ""),
    (["edit", "--editor", "bogus", "--prompt", "p", "--target", "t"], "unknown editor 'bogus'"),
    (["edit", "--editor", "rome", "--prompt", "p", "--target", "t", "--top-k", "0"], "--top-k"),
    (["edit", "--editor", "rome", "--prompt", "p", "--target", "t", "--set", "lr=NaN"], "NaN is not a usable"),
    (["edit", "--editor", "rome", "--prompt", "p", "--target", "t", "--set", "steps=1e999"], "out of range"),
    (["edit", "--editor", "rome", "--prompt", "p", "--target", "t", "--set", "steps=99999999999999999999"],
     "out of range"),
    (["edit", "--editor", "rome", "--prompt", "p", "--target", "t", "--set", "=3"], "KEY=VALUE"),
    (["edit", "--editor", "rome", "--prompt", "The capital of France is", "--subject", "Spain", "--target", "t"],
     "subject"),
    (["lambda", "--prompt", "p", "--target", " "], "must not be empty"),
    (["lambda", "--prompt", "p", "--target", "t", "--model", ""], "must not be empty"),
    (["bench", "--editors", "ft-l,nope", "--out", "x"], "unknown editor 'nope'"),
    (["bench", "--editors", "ft-l", "--out", "x", "--mode", "parallel"], "unknown mode 'parallel'"),
    (["bench", "--editors", "ft-l", "--out", "x", "--threads", "0"], "--threads"),
    (["bench", "--editors", "ft-l", "--out", "x", "--seeds", "-1"], "--seeds"),
    (["bench", "--editors", "ft-l", "--out", "x", "--seq-sizes", "1,0"], "--seq-sizes"),
    (["bench", "--editors", "ft-l", "--out", "x", "--sweep-values", "0,1.5"], "--sweep-values"),
    (["train", "rome", "--out", "x"], "not a trained editor"),
    (["train", "mend", "--out", "x", "--sss-c", "2"], "C must be in"),
])
def test_bad_arguments_are_refused_before_torch_is_imported(argv, message):
    torch_loaded, err = _torch_after(argv)
    assert not torch_loaded, f"{argv} imported torch before refusing (or helping)"
    assert message in err
    assert "Traceback" not in err


def test_bad_editor_is_refused_with_one_line():
    # how fast: benchmarks/bench_cli_startup.py (a busy machine must not fail the suite)
    res = cli("edit", "--editor", "bogus", "--prompt", "The capital of France is", "--target", "Rome")
    assert res.returncode == 2 and "unknown editor 'bogus'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr  # no usage block: one line saying what to fix


@pytest.mark.parametrize("argv, message", [
    (["--set", "steps=abc"], "setting 'steps' must be int, got 'abc'"),
    (["--set", "steps=1.5"], "setting 'steps' must be int, got 1.5"),
    (["--set", "lr=abc"], "setting 'lr' must be float, got 'abc'"),
    (["--set", "objective=bogus"], "setting 'objective' must be one of 'target', 'prompt_last', got 'bogus'"),
])
def test_settings_of_the_wrong_type_are_one_line_errors(argv, message):
    res = cli("edit", "--editor", "ft-l", "--prompt", "The capital of France is", "--target", "Rome", *argv)
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1] == f"error: editor 'ft-l': {message}"
    assert "Traceback" not in res.stderr


def test_c_for_an_editor_without_the_sss_term_says_so():
    res = cli("edit", "--editor", "rome", "--C", "0.5", "--prompt", "The capital of France is", "--target", "Rome")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == ("error: --C is the weight of the SSS term, which rome does not have; "
                                                  "editors with it: ft-l, ft-l+sss, ft-l+sss-loose-sum, mend, mend+sss, serac, serac+sss")


def test_parser_names_mirror_the_registry_and_the_bench():
    from sss_core import editors
    from sss_core.cli import names
    from sss_core.evaluation.bench import MODES
    built_in = tuple(spec.name for spec in editors._BUILT_IN)
    assert names.built_in_entries() == tuple((n, editors.EDITORS[n].trainable) for n in built_in)
    assert names.BENCH_MODES == MODES


# --- no hub, no network: one line at once (issue 15.6) -----------------------------------------------

def _offline_env(cache: Path) -> dict:
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    # nothing listens on port 9 of this machine: the hub's endpoint refuses at once, as with no network
    return {**env, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(cache)}


def test_hub_name_without_network_fails_at_once_with_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "sss_core", "lambda", "--model", "gpt2", "--prompt", "a",
                          "--target", "b"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
                         env=_offline_env(tmp_path))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "'gpt2' is not a local folder" in lines[0] and "cannot be reached" in lines[0]
    assert "Retry" not in res.stderr
    torch_loaded, err = _torch_after(["lambda", "--model", "gpt2", "--prompt", "a", "--target", "b"],
                                     _offline_env(tmp_path))
    assert not torch_loaded and "cannot be reached" in err  # refused before torch's seconds of import


def test_hub_name_without_network_loads_from_the_cache(tmp_path):
    # the Hugging Face cache layout: models--ORG--NAME/{refs/main, snapshots/REVISION/files}
    repo = tmp_path / "models--sss-lab--default"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(DEFAULT_MODEL, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    res = subprocess.run([sys.executable, "-m", "sss_core", "lambda", "--model", "sss-lab/default", "--prompt",
                          "The capital of France is", "--target", "Paris", "--json"], cwd=ROOT, capture_output=True, check=False,
                         text=True, timeout=300, env=_offline_env(tmp_path))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["model"] == "sss-lab/default" and out["lambda_max"] > 0
    assert "Retry" not in res.stderr


def test_edit_prints_no_loading_bar_and_no_deprecation_warning():
    """stderr of an edit holds what the user needs (warnings about the request), not transformers' progress
    bar for loading weights nor its FutureWarning about a renamed keyword (ROME samples context prefixes)."""
    res = cli("edit", "--editor", "rome", "--prompt", "The capital of France is", "--subject", "France",
              "--target", "Rome")
    assert res.returncode == 0, res.stderr
    assert "Loading weights" not in res.stderr and "Warning" not in res.stderr and "deprecated" not in res.stderr

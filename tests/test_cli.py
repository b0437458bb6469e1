import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sss_core.models import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sss_core", *args], cwd=ROOT, capture_output=True,
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

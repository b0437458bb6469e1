"""Every JSON the project writes is strict JSON (no NaN, no Infinity) and names no path of the server (issue 15.5).

Each output is parsed with ``strict_loads``: Python's ``json.loads`` accepts ``NaN`` and
``Infinity`` (which browsers' ``JSON.parse``, jq and most libraries reject); here they raise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sss_core.cli import main
from sss_core.jsonio import to_json
from sss_core.models import DEFAULT_MODEL

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPO = Path(__file__).resolve().parents[2]


def _refuse(name: str):
    raise ValueError(f"{name} is not JSON")


def strict_loads(text: str):
    """``json.loads`` that refuses NaN, Infinity and -Infinity."""
    return json.loads(text, parse_constant=_refuse)


def _no_server_path(text: str) -> None:
    assert str(REPO) not in text and str(DEFAULT_MODEL) not in text, "a path of this machine in the output"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan"), np.float64("inf"),
                                   torch.tensor(float("nan"))])
def test_to_json_writes_non_finite_numbers_as_null(value):
    text = to_json({"x": value, "nested": [{"y": value}], "kept": 0.5}, indent=True)
    assert strict_loads(text) == {"x": None, "nested": [{"y": None}], "kept": 0.5}


def test_strict_loads_refuses_what_json_dumps_writes():
    with pytest.raises(ValueError, match="NaN is not JSON"):
        strict_loads(json.dumps({"generality": math.nan}))


def test_edit_json_with_no_paraphrase_is_strict_and_names_the_model(capsys):
    # no paraphrase probe: generality is undefined (NaN inside), written as null
    assert main(["edit", "--editor", "ft-l", "--prompt", "My favourite colour is", "--target", "green",
                 "--json", "--device", "cpu", "--set", "steps=2"]) == 0
    text = capsys.readouterr().out
    out = strict_loads(text)
    assert out["metrics"]["generality"] is None
    assert out["model"] == "sss_core/assets/default-model"
    _no_server_path(text)


def test_lambda_json_is_strict_and_names_the_model(capsys):
    assert main(["lambda", "--prompt", "The capital of France is", "--target", "Paris", "--json",
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert strict_loads(text)["model"] == "sss_core/assets/default-model"
    _no_server_path(text)


def test_bench_summary_results_and_run_log_are_strict(tmp_path, capsys, tiny_model_dir):
    out = tmp_path / "run"
    assert main(["bench", "--editors", "ft-l", "--data", str(FIXTURES / "counterfact.json"), "--n", "1",
                 "--seeds", "1", "--out", str(out), "--model", str(tiny_model_dir), "--device", "cpu",
                 "--set", "steps=1", "--no-progress"]) == 0
    strict_loads(capsys.readouterr().out)
    rows = [strict_loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert rows and any(v is None for r in rows for v in r["metrics"].values())  # undefined scores: null
    log = strict_loads((out / "config.json").read_text())
    assert log["runs"][0]["model_name"] == tiny_model_dir.name  # the model's name, not where it lies


def test_run_log_writes_a_non_finite_setting_as_null(tmp_path):
    from sss_core.evaluation.store import BenchStore
    store = BenchStore(tmp_path)
    entry = store.log.append({"settings": {"lr": math.nan}})
    store.log.update(entry, wall_seconds=math.inf)
    log = strict_loads((tmp_path / "config.json").read_text())
    assert log["runs"][0] == {"settings": {"lr": None}, "wall_seconds": None}


def test_train_summary_is_strict(tmp_path, capsys, tiny_model_dir):
    assert main(["train", "mend", "--data", str(FIXTURES / "counterfact.json"), "--out", str(tmp_path / "mend"),
                 "--steps", "1", "--validate", "0", "--model", str(tiny_model_dir), "--device", "cpu"]) == 0
    strict_loads(capsys.readouterr().out)


def test_world_output_is_strict(tmp_path, capsys):
    assert main(["world", "--out", str(tmp_path)]) == 0
    strict_loads(capsys.readouterr().out)
    strict_loads((tmp_path / "test.json").read_text())


def test_app_export_is_strict_and_names_the_model_without_a_path(default_lm):
    from app.panels import run_json
    from sss_core.analysis import analyse_edit
    from sss_core.types import EditCase, EditRequest
    case = EditCase(EditRequest("My favourite colour is", "green"), ())  # no probes: portability etc. undefined
    run = analyse_edit(default_lm, "ft-l", {"steps": 2}, case, with_embeddings=False)
    assert any(isinstance(v, float) and math.isnan(v) for v in run.result.metrics.values())
    text = run_json(run)
    payload = strict_loads(text)
    assert payload["config"]["model"] == "sss_core/assets/default-model"
    assert payload["results"]["metrics"]["portability"] is None
    _no_server_path(text)

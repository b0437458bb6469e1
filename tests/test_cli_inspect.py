"""The CLI's sparsity output: ``edit --json`` per probe, and ``inspect --html`` (one standalone page)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOUR = ("lambda_max_before", "lambda_max_after", "knn_distance_before", "knn_distance_after")
FRANCE = ("--prompt", "The capital of France is", "--subject", "France", "--target", "Rome")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sss_core", *args], cwd=ROOT, capture_output=True, check=False,
                          text=True, timeout=300)


def strict_json(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity (not JSON; browsers' JSON.parse rejects them)."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_edit_json_is_strict_and_every_probe_has_the_four_sparsity_fields():
    res = cli("edit", "--editor", "ft-l+sss", *FRANCE, "--json")
    assert res.returncode == 0, res.stderr
    out = strict_json(res.stdout)
    assert len(out["probes"]) > 1
    for probe in out["probes"]:
        for key in FOUR:
            assert isinstance(probe[key], float) and math.isfinite(probe[key]), (probe["prompt"], key, probe.get(key))
    lam = out["edit_lambda"]
    assert lam["lambda_max_before_against_new_target"] == out["lambda_max_before"]
    assert lam["lambda_max_after_against_new_target"] == out["lambda_max_after"]
    assert lam["old_target"] and math.isfinite(lam["lambda_max_after_against_old_target"])
    assert out["knn"] == {"k": 5, "metric": "cosine", "pooling": "last"}
    groups = {s["group"] for s in out["sparsity"]}
    assert "background" in groups and "rewrite" in groups
    assert out["trajectory"] and {"step", "loss", "sss"} <= set(out["trajectory"][0])


def test_inspect_writes_one_standalone_page(tmp_path):
    page = tmp_path / "case" / "france.html"
    res = cli("inspect", "--editor", "ft-l", *FRANCE, "--background", "5", "--k", "3", "--metric", "euclidean",
              "--html", str(page))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(page)
    html = page.read_text(encoding="utf-8")
    assert "Plotly.newPlot" in html and re.search(r"plotly\.js v\d", html)  # the plot, and plotly.js inside
    assert not re.search(r"<script[^>]+src=", html), "the page must not load any script from elsewhere"
    for text in ("The capital of France is", "against the new target", "against the old target", "kNN distance before",
                 "lambda_max after", "reliability", "euclidean distance to the 3 nearest"):
        assert text in html, text
    assert html.count('class="dataframe"') >= 3  # metrics, lambda_max of the edit, probes


@pytest.mark.parametrize("argv, message", [
    (["--html", "."], "is a folder"),
    (["--html", "x.html", "--k", "0"], "--k"),
    (["--html", "x.html", "--metric", "manhattan"], "--metric"),
    (["--html", "x.html", "--background", "-1"], "--background"),
    (["--html", "x.html", "--method", "mds"], "--method"),
    ([], "--html"),
])
def test_bad_inspect_arguments_are_one_line_before_torch(argv, message):
    code = ("import sys\nfrom sss_core.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, "inspect", "--editor", "ft-l", "--prompt", "p", "--target", "t",
                          *argv], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)
    assert res.stdout.split()[-1] == "False", f"{argv} imported torch before refusing"
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1

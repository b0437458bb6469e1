"""benchmarks/bench_serving.py: the load test runs end to end on 1 and 2 sessions (a real `streamlit run`,
headless chromium) and its table says what it measured; its cross-talk check catches another request's
caption or numbers (checked without a browser).

The figures themselves are not asserted (a shared machine must not fail the suite): only that every
row is there, with no errors, no cross-talk and numbers in its time and memory columns.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest

from browser_support import ROOT

SCRIPT = ROOT / "benchmarks" / "bench_serving.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_serving", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _expected(bench, prompt: str, target: str, lam_after: float, locality: float):
    numbers = {bench.LAMBDA_BEFORE: 0.0898, bench.LAMBDA_AFTER: lam_after, "reliability": 1.0,
               "generality": 0.25, "locality": locality, "portability": math.nan}
    return bench.Expected(prompt, None, target, {e: dict(numbers) for e in ("ft-l", "ft-l+sss")})


def test_cross_talk_check_flags_another_requests_caption_and_numbers():
    bench = _bench()
    own = _expected(bench, "Washington is the capital of", "Czech Republic", 7.771e-06, 0.7)
    other = _expected(bench, "Lisbon is a city in", "Ecuador", 5.528e-06, 0.6667)
    everyone = [own, other]
    mine = {bench.LAMBDA_BEFORE: "8.98e-02", bench.LAMBDA_AFTER: "7.77e-06", "reliability": "1.00",
            "generality": "0.25", "locality": "0.70", "portability": "n/a"}
    body = "ft-l+sss, C = 0.9 on default-model: 'Washington is the capital of' → Czech Republic (run abc, 2.1 s)"
    assert bench._captions(body) == [("Washington is the capital of", "Czech Republic")]

    ok = bench.SessionResult(0, own.prompt, own.target)
    bench._check(ok, "edit", "ft-l+sss", mine, bench._captions(body), 1, own, everyone)
    assert ok.cross_talk == [] and ok.errors == []

    theirs = dict(mine, **{bench.LAMBDA_AFTER: "5.53e-06", "locality": "0.67"})
    wrong = bench.SessionResult(0, own.prompt, own.target)
    bench._check(wrong, "edit", "ft-l+sss", theirs, [("Lisbon is a city in", "Ecuador")], 1, own, everyone)
    assert len(wrong.cross_talk) == 2, wrong.cross_talk
    assert "another request" in wrong.cross_talk[0] and "session(s) [1]'s numbers" in wrong.cross_talk[1]

    # a raw Compare cell is checked to 1e-4, a rounded card to its last digit
    assert bench._close("0.000007771048331051134", 7.771049240545835e-06, bench.LAMBDA_AFTER)
    assert not bench._close("7.80e-06", 7.771e-06, bench.LAMBDA_AFTER)
    assert not bench._close("0.71", 0.7, "locality")


@pytest.mark.e2e
@pytest.mark.slow
def test_bench_serving_runs_one_and_two_sessions(tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); browser tests skipped")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("the playwright Python package is not installed (pip install playwright); browser tests skipped")
    from sss_core.models import DEFAULT_MODEL
    if not os.environ.get("SSS_LAB_MODEL") and not (DEFAULT_MODEL / "config.json").exists():
        pytest.skip(f"no default model at {DEFAULT_MODEL} (train it: python -m sss_core train-default)")
    out = tmp_path / "serving.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--sessions", "1,2", "--json", str(out), "--timeout", "240",
                           "--time-limit", "600"], cwd=ROOT, capture_output=True, text=True, timeout=720)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].isdigit():
            rows[int(cells[0])] = cells
    assert sorted(rows) == [1, 2], proc.stdout
    for n, cells in rows.items():
        assert len(cells) == 15, cells
        for i in (1, 2, 3, 4, 5):  # p50/p95 of the edit and Compare, session p95: seconds
            assert re.fullmatch(r"\d+\.\d\d s", cells[i]) and float(cells[i][:-2]) > 0, (n, cells)
        assert cells[6] == "0" and cells[7] == "0", (n, cells)  # errors, cross-talk
        for i in (8, 9, 10):  # server RSS after warm-up, at peak, 10 s after
            assert re.fullmatch(r"\d+ MB", cells[i]) and int(cells[i][:-3]) > 100, (n, cells)
    data = json.loads(out.read_text())
    assert [lv["sessions"] for lv in data["levels"]] == [1, 2]
    for lv in data["levels"]:
        assert lv["status"] == "measured" and len(lv["session_results"]) == lv["sessions"]
        for r in lv["session_results"]:  # every session read its own request's caption and numbers
            assert r["errors"] == [] and r["cross_talk"] == []
            assert r["shown"]["edit"]["captions"] == [[r["prompt"], r["target"]]]
            assert [row["editor"] for row in r["shown"]["compare"]["rows"]] == ["ft-l", "ft-l+sss"]

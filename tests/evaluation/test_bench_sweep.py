"""The bench's C sweep must sweep C: each job's editor carries its C, and the edits differ."""

from __future__ import annotations

import json
from pathlib import Path

from sss_core.evaluation import bench
from sss_core.evaluation.bench import BenchConfig, run_bench

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_bench_sweep_builds_each_editor_with_its_c(tmp_path, tiny_model_dir, monkeypatch):
    """Every sweep job's editor carries the job's C in the registry's C field (sss_c for FT-L)."""
    seen = []
    real = bench.single_edits

    def recording(model, tok, editor, cases, seed, **kw):
        if kw.get("mode", "single").startswith("sweep@"):
            seen.append((kw["mode"], kw["C"], editor.config.sss_c))
        return real(model, tok, editor, cases, seed, **kw)

    monkeypatch.setattr(bench, "single_edits", recording)
    cfg = BenchConfig(editors=("ft-l+sss",), data=str(FIXTURES / "rome_counterfact.json"), seeds=1, modes=("sweep",),
                      sweep_values=(0.0, 0.3, 1.0), sweep_n=2, settings={"steps": 3, "lr": 0.05, "norm_constraint": None,
                                                                         "early_stop_loss": 0.0},
                      model=str(tiny_model_dir), device="cpu", plotly_js="directory")
    run_bench(cfg, tmp_path, progress=False)
    assert seen == [("sweep@C=0", 0.0, 0.0), ("sweep@C=0.3", 0.3, 0.3), ("sweep@C=1", 1.0, 1.0)]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    by_c: dict[float, list] = {}
    for r in rows:
        by_c.setdefault(r["C"], []).append([p["post"] for p in r["probes"]])
    assert sorted(by_c) == [0.0, 0.3, 1.0]
    # the edits differ: C = 0 and C = 1 leave different predictions on some probe
    assert by_c[0.0] != by_c[1.0]

"""Time the core's costly steps on the default model and print median / p95 / peak memory.

Each measurement runs in its own subprocess, so its peak resident memory is its own, and a
projection's "first call" really is the first in its process (UMAP's numba compile included).

    python benchmarks/bench_core.py                 # everything
    python benchmarks/bench_core.py --only lambda-1 --repeat 20
    python benchmarks/bench_core.py --only proj:umap-1000

A projection of N points fits N rows at once: N/2 world prompts embedded before and after one
FT-L edit, fitted jointly as the app does.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def p95(times: list[float]) -> float:
    """The 95th percentile by nearest rank (the largest value when there are fewer than 20)."""
    return sorted(times)[math.ceil(0.95 * len(times)) - 1]


def _timeit(fn, repeat: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _cases(n: int):
    from sss_core.evaluation.presets import presets
    return presets("test", n)


def _world_prompts(n: int) -> list[str]:
    from sss_core.evaluation.presets import default_world
    prompts = list(dict.fromkeys(f.prompt(t) for f in default_world().facts for t in range(3)))
    if len(prompts) < n:
        raise SystemExit(f"the world has only {len(prompts)} distinct prompts, {n} asked")
    return prompts[:n]


def _projection_inputs(lm, n_points: int):
    """(before, after) embeddings of n_points // 2 world prompts around one FT-L edit."""
    from sss_core.editors import make_editor
    from sss_core.embeddings import embed_prompts

    prompts = _world_prompts(n_points // 2)
    before = embed_prompts(lm.model, lm.tok, prompts)
    with make_editor("ft-l").edit(lm.model, lm.tok, [_cases(1)[0].request]):  # applied inside, reverted after
        after = embed_prompts(lm.model, lm.tok, prompts)
    if np.allclose(before, after):
        raise SystemExit("the edit did not move the embeddings")
    return before, after


def _measure_projection(lm, spec: str, repeat: int) -> tuple[list[float], dict]:
    from sss_core.projection import project

    method, n_points = spec.split("-")
    before, after = _projection_inputs(lm, int(n_points))
    start = time.perf_counter()
    used = project(before, after, method=method).method
    first = time.perf_counter() - start
    if used != method:
        raise SystemExit(f"{method} fell back to {used}")
    reps = repeat if int(n_points) <= 100 else max(3, repeat // 4) if int(n_points) <= 1000 else 3
    times = _timeit(lambda: project(before, after, method=method), reps, warmup=0)
    return times, {"first_call_s": first, "points": 2 * before.shape[0], "dims": before.shape[1]}


def measure(name: str, repeat: int) -> dict:
    """Run one named measurement in this process."""
    import torch
    from sss_core.editors import EDITORS, make_editor
    from sss_core.models import load_model
    from sss_core.sss import lambda_max
    from sss_core.text import encode_pairs

    lm = load_model(device="cpu")
    cases = _cases(max(repeat, 100))
    info: dict = {}
    if name == "lambda-1":
        c = cases[0].request
        times = _timeit(lambda: lambda_max(lm.model, lm.tok, [c.prompt], [c.target_new]), repeat)
    elif name == "lambda-1000":
        from sss_core.evaluation.presets import default_world
        facts = default_world().facts[:1000]
        prompts, targets = [f.prompt() for f in facts], [f.object for f in facts]
        times = _timeit(lambda: lambda_max(lm.model, lm.tok, prompts, targets, batch_size=250), max(1, repeat // 5))
    elif name.startswith("edit:"):
        editor_name = name.split(":", 1)[1]
        editor = make_editor(editor_name)
        reqs = iter([c.request for c in cases] * 2)
        times = _timeit(lambda: editor.edit(lm.model, lm.tok, [next(reqs)]), repeat)
        if editor_name.startswith("ft-l"):
            # compute floor: steps x one forward+backward of the same batch on the trained weight,
            # against the time of editing that same request (edits stop early, so steps vary by request)
            req = cases[0].request
            steps = editor.edit(lm.model, lm.tok, [req]).info["steps"]
            same = statistics.median(_timeit(lambda: editor.edit(lm.model, lm.tok, [req]), 10))
            w = lm.spec.mlp_out_module(lm.model, editor.config.layer).weight
            batch = encode_pairs(lm.tok, [req.prompt], [req.target_new])
            w.requires_grad_(True)

            def fwd_bwd():
                from sss_core.sss import forward_pairs
                nll, _ = forward_pairs(lm.model, batch, embeds_require_grad=False)
                nll.mean().backward()
                w.grad = None
            try:
                one = statistics.median(_timeit(fwd_bwd, 20, warmup=3))
            finally:
                w.requires_grad_(False)
            info = {"floor_request_seconds": same, "steps": steps, "fwd_bwd_seconds": one,
                    "floor_seconds": steps * one, "ratio_to_floor": same / (steps * one)}
    elif name == "embed-1000":
        from sss_core.embeddings import embed_prompts
        prompts = _world_prompts(1000)
        times = _timeit(lambda: embed_prompts(lm.model, lm.tok, prompts), max(3, repeat // 4))
    elif name.startswith("proj:"):
        times, info = _measure_projection(lm, name.split(":", 1)[1], repeat)
    elif name == "memit-100":
        editor = make_editor("memit")
        times = _timeit(lambda: editor.edit(lm.model, lm.tok, [c.request for c in cases[:100]]),
                        max(1, repeat // 10), warmup=0)
    else:
        raise SystemExit(f"unknown measurement {name!r}")
    info.update({"editors_available": list(EDITORS)} if name == "lambda-1" else {})
    return {"name": name, "n": len(times), "median_s": statistics.median(times),
            "p95_s": p95(times),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "torch_threads": torch.get_num_threads(), **info}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=None, help="one measurement name (runs in this process)")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--json", type=Path, default=None, help="also write all results to this file")
    args = p.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args.repeat)))
        return
    from sss_core.editors import EDITORS
    names = ["lambda-1", "lambda-1000", *(f"edit:{e}" for e in EDITORS)]
    if "memit" in EDITORS:
        names.append("memit-100")
    names += ["embed-1000", *(f"proj:{m}-{n}" for m in ("pca", "umap", "tsne") for n in (100, 1000, 5000))]
    results = []
    for name in names:
        proc = subprocess.run([sys.executable, __file__, "--only", name, "--repeat", str(args.repeat)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            row = {"name": name, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        else:
            row = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Time the core's costly steps on the default model and print median / p95 / peak memory.

Each measurement runs in its own subprocess, so its peak resident memory is its own.

    python benchmarks/bench_core.py                 # everything
    python benchmarks/bench_core.py --only lambda-1 --repeat 20
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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
            # compute floor: steps x one forward+backward of the same batch on the trained weight
            req = cases[0].request
            edit = editor.edit(lm.model, lm.tok, [req])
            steps = edit.info["steps"]
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
            info = {"steps": steps, "fwd_bwd_seconds": one, "floor_seconds": steps * one,
                    "ratio_to_floor": statistics.median(times) / (steps * one)}
    elif name == "memit-100":
        editor = make_editor("memit")
        times = _timeit(lambda: editor.edit(lm.model, lm.tok, [c.request for c in cases[:100]]),
                        max(1, repeat // 10), warmup=0)
    else:
        raise SystemExit(f"unknown measurement {name!r}")
    info.update({"editors_available": list(EDITORS)} if name == "lambda-1" else {})
    return {"name": name, "n": len(times), "median_s": statistics.median(times),
            "p95_s": sorted(times)[max(0, int(0.95 * len(times)) - 1)],
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

"""``bench``: editors x seeds x modes over a data set, streamed, resumable, with a report.

Example:
    python -m sss_core bench --editors ft-l,ft-l+sss --data world --n 500 --seeds 3 --out runs/world
"""

from __future__ import annotations

import importlib.util
import shlex
import signal
import sys
from pathlib import Path

from ..jsonio import to_json
from .common import add_model_args, csv_list, fail, parse_settings, positive_int, unit_interval_list
from .names import bench_modes, editor_names, known_editors


def register(sub) -> None:
    """Add ``bench`` to the CLI's subparsers (torch-free: the bench is imported only to run)."""
    p = sub.add_parser("bench", help="run editors over a data set and seeds; write results and a report")
    p.add_argument("--editors", required=True, type=editor_names,
                   help=f"comma-separated: {', '.join(known_editors())}")
    p.add_argument("--data", default="world", help="world, world:SPLIT (train/validation/test) or a JSON file")
    p.add_argument("--format", dest="fmt", default="auto", help="auto, zsre, counterfact, rome, knowedit, world")
    p.add_argument("--n", type=positive_int, default=None, help="cases per seed (default: all)")
    p.add_argument("--seeds", type=positive_int, default=3, help="number of seeds (0..K-1)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--mode", dest="modes", type=bench_modes, default=("single",),
                   help="single, sequential, batch, sweep, or a comma-separated list of them")
    p.add_argument("--seq-sizes", type=csv_list(positive_int), default=(1, 10, 100),
                   help="sequential n values")
    p.add_argument("--batch-size", type=positive_int, default=100,
                   help="edits written at once in the batch mode (the cases are split into batches of this size)")
    p.add_argument("--sweep-values", type=unit_interval_list, default=None,
                   help="C values (default 0, 0.1, ..., 1); the sweep sets sss_c of the +sss editors at edit time, so it is meaningful for "
                        "FT-L (MEND and SERAC fix C when they are trained: sweep them by training checkpoints)")
    p.add_argument("--sweep-n", type=positive_int, default=100, help="cases per seed in the C sweep")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished results")
    p.add_argument("--max-data-mb", type=float, default=100.0, help="refuse data files larger than this")
    p.add_argument("--skip-invalid", action="store_true", help="instead of failing: leave out the smallest unusable unit, each unusable probe (a "
                        "paraphrase, neighbour or portability item), else the record whose edit is unusable; what "
                        "was left out is counted and named in one warning line")
    p.add_argument("--world-locality", action="store_true",
                   help="single edits also read every fact of the built-in world before and after the edit and "
                        "store the share whose top answer did not change (world locality) with a damage summary; "
                        "about +2.4 s per edit on the shipped model on one thread (docs/performance.md)")
    p.add_argument("--edit-batch", type=positive_int, default=None,
                   help="single edits (and the C sweep's) made side by side, each on its own copy of the edited "
                        "weights, with results equal to one at a time within float tolerance (FT-L and ROME "
                        "train them together; every editor's probes are scored together); 1 = one at a time. "
                        "Default: each editor's, chosen by measurement (25 for FT-L, 5 for MEND, 1 for the others; "
                        "docs/performance.md)")
    p.add_argument("--knn", type=positive_int, default=10, help="k of the local-density measure")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="editor setting, every editor")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch CPU threads of each process, every worker included (default 1: small models edit "
                        "several times faster on one thread than on two busy ones; raise it for large models)")
    p.add_argument("--plotly-js", choices=("directory", "inline"), default="directory",
                   help="plots load plotly.js from plotly.min.js next to them, or hold it inline (4.6 MB each); both work offline")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="processes sharing the work (e.g. 2 on 2 cores); each loads its own model copy")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the jobs on Ray actors, each with its own model copy (one GPU each where there are "
                        "GPUs): 'auto' or HOST:PORT joins a running cluster (ray start --head), no address starts a "
                        'local one; needs pip install "sss-lab[ray]" (docs/ray.md)')
    p.add_argument("--actors", type=positive_int, default=None,
                   help="with --ray: how many actors (default: one per GPU of the cluster, else one per --threads CPUs)")
    p.add_argument("--report-only", action="store_true",
                   help="only rebuild the report of --out from its results (give the same --data, --n, --seeds); "
                        "no model is loaded, except for results written before the k-NN density and target NLL "
                        "were stored with each result: then --model (default the shipped one) computes them")
    p.add_argument("--no-progress", action="store_true")
    add_model_args(p)
    p.set_defaults(handler=run)


def _argv(cfg, args) -> list[str]:
    """An argument list equivalent to this invocation, for the run log when ``run`` is called in-process."""
    argv = ["bench", "--editors", ",".join(cfg.editors), "--data", cfg.data, "--seeds", str(cfg.seeds),
            "--out", str(args.out), "--mode", ",".join(cfg.modes)]
    argv += ["--n", str(cfg.n)] if cfg.n else []
    argv += ["--seq-sizes", ",".join(map(str, cfg.seq_sizes))] if "sequential" in cfg.modes else []
    argv += ["--batch-size", str(cfg.batch_size)] if "batch" in cfg.modes else []
    argv += (["--sweep-values", ",".join(f"{c:g}" for c in cfg.sweep_values), "--sweep-n", str(cfg.sweep_n)]
             if "sweep" in cfg.modes else [])
    argv += [a for k, v in cfg.settings.items() for a in ("--set", f"{k}={to_json(v)}")]
    argv += ["--model", cfg.model] if cfg.model else []
    argv += ["--dtype", cfg.dtype] if cfg.dtype else []
    argv += ["--device-map", cfg.device_map] if cfg.device_map else []
    argv += ["--workers", str(cfg.workers)] if cfg.workers > 1 else []
    argv += ["--world-locality"] if cfg.world_locality else []
    argv += ["--edit-batch", str(cfg.edit_batch)] if cfg.edit_batch is not None else []
    argv += ["--ray", *([args.ray] if args.ray else [])] if args.ray is not None else []
    argv += ["--actors", str(args.actors)] if args.actors else []
    return argv + (["--resume"] if args.resume else [])


def _interrupt(signum, frame) -> None:
    """SIGTERM handler: stop the bench as Ctrl-C does."""
    raise KeyboardInterrupt


def _ray_installed() -> bool:
    """Whether ``import ray`` can work, found without importing it (nor torch)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # ValueError: a blocked or half-imported ray (sys.modules["ray"] is None)
        return False


def _check_executor(args) -> None:
    """Exit 2 (one line) on executor flags that do not go together, or on --ray without Ray installed."""
    if args.ray is None and args.actors is not None:
        fail("--actors is for --ray; for local processes give --workers")
    if args.ray is not None and args.workers > 1:
        fail("--workers starts local processes; with --ray give --actors")
    if args.ray is not None and not args.report_only and not _ray_installed():
        fail('--ray needs Ray, which is not installed: pip install "sss-lab[ray]"')


def run(args) -> None:
    """Run (or with --report-only, re-report) a bench from parsed arguments; print its summary as JSON."""
    _check_executor(args)
    import torch  # here: the arguments were checked by the parser before torch and the bench are imported

    from ..evaluation.bench import BenchConfig, rebuild_report, run_bench

    signal.signal(signal.SIGTERM, _interrupt)  # a polite kill finishes like Ctrl-C: results logged, files closed
    torch.set_num_threads(args.threads)
    cfg = BenchConfig(editors=args.editors, data=args.data, n=args.n, seeds=args.seeds, modes=args.modes,
                      seq_sizes=args.seq_sizes, batch_size=args.batch_size,
                      **({"sweep_values": args.sweep_values} if args.sweep_values else {}),
                      sweep_n=args.sweep_n, fmt=args.fmt,
                      max_data_mb=args.max_data_mb, skip_invalid=args.skip_invalid,
                      settings=parse_settings(args.set), knn=args.knn, model=args.model, device=args.device,
                      dtype=args.dtype, device_map=args.device_map, plotly_js=args.plotly_js, workers=args.workers,
                      world_locality=args.world_locality,
                      **({"edit_batch": args.edit_batch} if args.edit_batch else {}))
    # the exact command line when run as ``python -m sss_core``; an equivalent one when called in-process
    argv = sys.argv[1:] if Path(sys.argv[0]).name == "__main__.py" and "bench" in sys.argv else _argv(cfg, args)
    command = "python -m sss_core " + shlex.join(argv)
    if args.report_only:
        print(to_json({"report": str(rebuild_report(cfg.validate(), args.out))}))
        return
    executor = None
    if args.ray is not None:
        from ..evaluation.ray_bench import RayExecutor
        executor = RayExecutor(address=args.ray or None, actors=args.actors, threads=args.threads)
    summary = run_bench(cfg, args.out, args.resume, command, progress=not args.no_progress, executor=executor)
    print(to_json(summary, indent=True))

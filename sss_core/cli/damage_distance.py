"""``damage-distance``: every world fact's damage against its distance from the edit prompt, per editor.

Edits the first ``--n`` world cases of ``--split`` with each editor, reads every world fact before and
after each edit (``world_locality``), measures each fact's distance from the edit prompt on the
unedited model (``--pooling``, ``--metric``, ``--layer``) and writes, in ``--out``:

- ``damage_distance.json``: settings, invocation, bin edges, curves, trends and SSS differences;
- ``bins.csv``, ``trends.csv``, ``differences.csv``: the same tables; ``tables.md``: them in Markdown;
- ``damage_distance.html``: the figure (plotly);
- ``readings-EDITOR.csv.gz``: one row per (edit, fact): what the tables are made from (``--resume``
  reads them back instead of editing again).

Example:
    python -m sss_core damage-distance --editors ft-l,ft-l+sss --n 30 --out runs/damage-distance
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

from .common import add_model_args, fail, load_model_from_args, parse_settings, positive_int
from .names import editor_names, known_editors

RUN_FILE = "run.json"


def register(sub) -> None:
    """Add ``damage-distance`` to the CLI's subparsers (torch-free until it runs)."""
    p = sub.add_parser("damage-distance",
                       help="world facts' damage against their distance from the edit prompt, binned, per editor")
    p.add_argument("--editors", required=True, type=editor_names, help=f"comma-separated: {', '.join(known_editors())}")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"), help="world split of the edits")
    p.add_argument("--n", type=positive_int, default=30, help="edits (the split's first N cases)")
    p.add_argument("--pooling", choices=("last", "mean"), default="mean",
                   help="sentence embedding: mean over tokens (default) or the last token's hidden state")
    p.add_argument("--metric", choices=("euclidean", "cosine"), default="euclidean",
                   help="distance: Euclidean (default) or cosine distance 1 - cos")
    p.add_argument("--layer", type=int, default=-1,
                   help="hidden-state layer of the embedding (-1: the last, after the final norm; 0: input embeddings)")
    p.add_argument("--bins", type=positive_int, default=5, help="distance bins (quantiles of the pooled distances)")
    p.add_argument("--n-boot", type=positive_int, default=2000, help="bootstrap resamples of each interval")
    p.add_argument("--seed", type=int, default=0, help="torch seed base of the edits and the bootstrap's seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="editor setting, every editor")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--resume", action="store_true",
                   help="read the editors already done from --out (same settings) instead of editing again")
    p.add_argument("--damage-from", type=Path, default=None, metavar="DIR",
                   help="take each fact's damage from the readings of an earlier run in DIR (same model, split, n, "
                        "seed and settings) and measure only the distances again: another --pooling, --metric or "
                        "--layer without editing again")
    p.add_argument("--plotly-js", default="directory", metavar="HOW",
                   help="'directory' (plotly.min.js next to the figure), 'inline', or a path/URL ending in .js")
    add_model_args(p)
    p.set_defaults(handler=run)


def _run_settings(args) -> dict:
    """What must match for ``--resume`` to reuse stored readings."""
    return {"model": args.model, "split": args.split, "n": args.n, "pooling": args.pooling, "metric": args.metric,
            "layer": args.layer, "seed": args.seed, "settings": parse_settings(args.set),
            **({"damage_from": str(args.damage_from)} if args.damage_from else {})}


def _check_resume(out: Path, settings: dict, resume: bool) -> None:
    """Write ``run.json``; with ``--resume`` first check that a stored one has the same settings."""
    path = out / RUN_FILE
    if path.exists():
        stored = json.loads(path.read_text())
        if not resume:
            fail(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
        if stored != settings:
            changed = sorted(k for k in settings if stored.get(k) != settings[k])
            fail(f"{out} was run with other settings ({', '.join(changed)}); use the same ones or another --out")
    path.write_text(json.dumps(settings, indent=1))


def _readings_path(out: Path, editor: str) -> Path:
    """The per-fact readings file of ``editor`` in ``out`` ("+" spelled "_")."""
    return out / f"readings-{editor.replace('+', '_')}.csv.gz"


def _save_readings(path: Path, damages) -> None:
    """One row per (edit, fact): case_id, fact (index in the world), distance, changed (0/1), drop; full
    precision, so ``--resume`` makes the same tables."""
    import pandas as pd

    frames = [pd.DataFrame({"case_id": d.case_id, "fact": d.fact_index, "distance": d.distance,
                            "changed": d.changed.astype(int), "drop": d.drop}) for d in damages]
    pd.concat(frames).to_csv(path, index=False)


def _load_readings(path: Path, editor: str, case_ids: list[str]):
    """The EditDamage list stored in ``path`` for ``case_ids`` (in that order); None if it lacks one."""
    import pandas as pd

    from ..evaluation.damage_distance import EditDamage

    frame = pd.read_csv(path, dtype={"case_id": str}, float_precision="round_trip")
    groups = dict(tuple(frame.groupby("case_id", sort=False)))
    if any(c not in groups for c in case_ids):
        return None
    return [EditDamage(editor, c, groups[c]["fact"].to_numpy(), groups[c]["distance"].to_numpy(float),
                       groups[c]["changed"].to_numpy().astype(bool), groups[c]["drop"].to_numpy(float))
            for c in case_ids]


EDIT_SETTINGS = ("model", "split", "n", "seed", "settings")  # what the damage depends on (not the distance)


def _damage_from(args, name: str, cases, space):
    """Editor ``name``'s EditDamage list from the readings in ``--damage-from``, with the distances measured
    again on ``space``. Exits 2 when that folder's run made other edits or lacks the editor."""
    import dataclasses

    path = _readings_path(args.damage_from, name)
    damages = _load_readings(path, name, [c.request.case_id for c in cases]) if path.exists() else None
    if damages is None:
        fail(f"{args.damage_from} has no readings of {name} for these edits; run it there first")
    prompts = {c.request.case_id: c.request.prompt for c in cases}
    return [dataclasses.replace(d, distance=space.distances(prompts[d.case_id])[d.fact_index]) for d in damages]


def _check_damage_from(args) -> None:
    """Exit 2 unless ``--damage-from`` is a run folder that made the same edits as this run would."""
    run_file = args.damage_from / RUN_FILE
    if not run_file.exists():
        fail(f"{args.damage_from} holds no {RUN_FILE}: not a damage-distance run folder")
    stored, mine = json.loads(run_file.read_text()), _run_settings(args)
    other = [k for k in EDIT_SETTINGS if stored.get(k) != mine[k]]
    if other:
        fail(f"{args.damage_from} made other edits ({', '.join(other)} differ); give the same ones")


def _edit_all(args, lm, cases, space) -> dict:
    """editor -> its EditDamage list, editing (or, with --resume, reading back) each editor in turn."""
    from ..evaluation.bench import _editor
    from ..evaluation.damage_distance import edit_damages

    case_ids = [c.request.case_id for c in cases]
    by_editor = {}
    for name in args.editors:
        path = _readings_path(args.out, name)
        if args.damage_from is not None:
            by_editor[name] = _damage_from(args, name, cases, space)
            _save_readings(path, by_editor[name])
            continue
        stored = _load_readings(path, name, case_ids) if path.exists() else None
        if stored is not None:
            print(f"{name}: {len(stored)} edits read from {path.name}", file=sys.stderr, flush=True)
            by_editor[name] = stored
            continue
        editor, damages, start = _editor(name, args.seed, parse_settings(args.set)), [], time.perf_counter()
        editor.name = name
        for i, damage in enumerate(edit_damages(lm.model, lm.tok, editor, cases, space, args.seed), start=1):
            damages.append(damage)
            print(f"{name}: edit {i}/{len(cases)} {damage.case_id}: {int(damage.changed.sum())} facts changed "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
        _save_readings(path, damages)
        by_editor[name] = damages
    return by_editor


def _fmt(v, spec: str) -> str:
    """A number as ``spec``, or "n/a" for None/NaN."""
    return "n/a" if v is None or v != v else format(v, spec)


def _ci(value, lo, hi, spec: str, scale: float = 1.0) -> str:
    """``value [lo, hi]`` scaled, "n/a" parts where missing."""
    f = (lambda v: _fmt(None if v is None else v * scale, spec))
    return f"{f(value)} [{f(lo)}, {f(hi)}]"


def markdown_tables(data: dict) -> str:
    """The curves (one table per damage measure: editors x bins), the trends and the SSS differences as
    Markdown, from ``DamageDistance.as_dict()``."""
    edges = data["edges"]
    head = [f"bin {i + 1}: {edges[i]:.3g}–{edges[i + 1]:.3g}" for i in range(len(edges) - 1)]
    out = []
    for title, (v, lo, hi, scale, spec) in (
            ("Share of facts whose top answer changed, % [95% CI]",
             ("share_changed", "share_lo", "share_hi", 100, ".2f")),
            ("Mean drop in P(old answer), x 100 [95% CI]", ("mean_drop", "drop_lo", "drop_hi", 100, ".3f"))):
        out += [f"**{title}** (distance bins nearest first; facts per bin and editor: "
                f"{', '.join(str(b['facts']) for b in next(iter(data['curves'].values())))})", "",
                "| editor | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
        out += [f"| {e} | " + " | ".join(_ci(b[v], b[lo], b[hi], spec, scale) for b in bins) + " |"
                for e, bins in data["curves"].items()]
        out.append("")
    out += [f"**Does damage fall with distance?** Spearman rho of distance and damage over all (edit, fact) pairs, "
            f"95% CI and p from one cluster bootstrap over edits; p (BH): Benjamini-Hochberg over the table's "
            f"{data['trend_tests']} tests; the hypothesis predicts rho < 0.", "",
            "| editor | damage | rho [95% CI] | p | p (BH) | verdict |", "|---|---|---|---|---|---|"]
    out += [f"| {t['editor']} | {t['y']} | {_ci(t['rho'], t['lo'], t['hi'], '+.3f')} | {_fmt(t['p'], '.2g')} | "
            f"{_fmt(t['p_adjusted'], '.2g')} | {t['verdict']} |" for t in data["trends"]]
    out += ["", f"**Does SSS lower the curve?** Paired difference per bin, with SSS minus without, on the same edits "
                f"(share in percentage points, drop x 100); 95% CI = d ± 1.96 se, p from the same cluster bootstrap; "
                f"p (BH): Benjamini-Hochberg over the table's {data['difference_tests']} tests (rows without p have "
                f"no spread: every edit gave the same difference).", "",
            "| editors | damage | bin | difference [95% CI] | p | p (BH) |", "|---|---|---|---|---|---|"]
    out += [f"| {d['b']} − {d['a']} | {d['measure']} | {d['index'] + 1} | "
            f"{_ci(d['difference'], d['lo'], d['hi'], '+.3f', 100)} | {_fmt(d['p'], '.2g')} | "
            f"{_fmt(d['p_adjusted'], '.2g')} |" for d in data["differences"]]
    return "\n".join(out) + "\n"


def _write(args, result, invocation: dict) -> None:
    """The JSON, the three CSV tables, their Markdown and the figure."""
    import pandas as pd

    from ..damage_figures import damage_distance_figure
    from ..jsonio import to_json

    data = result.as_dict()
    (args.out / "damage_distance.json").write_text(to_json({"invocation": invocation, **data}, indent=True))
    pd.DataFrame([b for bins in data["curves"].values() for b in bins]).to_csv(args.out / "bins.csv", index=False)
    pd.DataFrame(data["trends"]).to_csv(args.out / "trends.csv", index=False)
    pd.DataFrame(data["differences"]).to_csv(args.out / "differences.csv", index=False)
    (args.out / "tables.md").write_text(markdown_tables(data))
    fig = damage_distance_figure(result.curves, args.metric, args.pooling)
    js = True if args.plotly_js == "inline" else args.plotly_js
    fig.write_html(args.out / "damage_distance.html", include_plotlyjs=js)


def run(args) -> None:
    """Edit, read, bin and write (see the module docstring)."""
    if args.plotly_js not in ("directory", "inline") and not args.plotly_js.endswith(".js"):
        fail(f"--plotly-js must be directory, inline or a path ending in .js, not {args.plotly_js!r}")
    if args.damage_from is not None:
        _check_damage_from(args)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = _run_settings(args)
    _check_resume(args.out, settings, args.resume)
    from ..evaluation.bench import _git_commit
    from ..evaluation.damage_distance import FactSpace, damage_distance
    from ..evaluation.presets import default_world, presets

    start = time.perf_counter()
    lm = load_model_from_args(args)
    cases = presets(args.split, args.n)
    if len(cases) < args.n:
        fail(f"the {args.split} split has {len(cases)} cases, fewer than --n {args.n}")
    space = FactSpace(lm.model, lm.tok, default_world().facts, args.pooling, args.metric, args.layer)
    by_editor = _edit_all(args, lm, cases, space)
    result = damage_distance(by_editor, args.bins, args.n_boot, args.seed,
                             {k: settings[k] for k in ("pooling", "metric", "layer", "split", "n")})
    invocation = {"command": "python -m sss_core " + shlex.join(sys.argv[1:]) if sys.argv[0].endswith("__main__.py")
                  or Path(sys.argv[0]).name == "sss-lab" else None, "git_commit": _git_commit(),
                  "machine": f"{platform.machine()}, {platform.processor() or platform.system()}, "
                             f"python {platform.python_version()}",
                  "seconds": round(time.perf_counter() - start, 1)}
    _write(args, result, invocation)
    print(f"wrote {args.out}/damage_distance.json, bins.csv, trends.csv, differences.csv, tables.md, "
          "damage_distance.html")

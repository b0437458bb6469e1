"""Turn a bench's results into paper-shaped tables (Markdown + CSV) and plotly plots.

Every number is a mean over seeds of the per-seed mean over cases, shown as ``mean ± std``
(sample std over the seed means; a single seed shows no std), in percent like the paper.
The results are read through ``store.BenchStore``; the hypothesis' per-edit measures are stored
with them, so no model is needed (except for results written before they were stored).

Example:
    >>> frame = BenchStore(Path("runs/world")).frame()
    >>> print(table1(frame)[0])
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from ..editors import EDITORS, editor_config
from ..errors import RequestError
from ..figures import seeded_sequential_figure, seeded_sweep_figure
from ..types import PORTABILITY_GROUPS, EditCase
from .datasets import group_counts
from .hypothesis import Correlation, correlations, how_many_tests, knn_density, reference_prompts, target_nll_of
from .store import MEASURES, WORLD, BenchStore

log = logging.getLogger(__name__)

LABELS = {"reliability": "Reliability", "generality": "Generality", "locality": "Locality",
          "portability": "Portability", "neighbour": "Neighbor", "pre_neighbour": "Pre-Neighbor",
          "post_neighbour": "Post-Neighbor", "distract_neighbour": "Distract-Neighbor",
          "unrelated_attribute": "Unrelated Attributes", "subject_replace": "Subject Replace",
          "reversed_relation": "Reversed Relation", "one_hop": "One-Hop"}
TABLE1 = ("reliability", "locality", "generality", "portability")  # the paper's row order
TABLE3 = ("reliability", "neighbour", "pre_neighbour", "post_neighbour", "distract_neighbour",
          "unrelated_attribute")
SEQUENTIAL = ("reliability", "locality", "generality")

CsvRows = list[dict]


def seed_stats(frame: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by``: mean and std over seeds of each metric's per-seed case mean."""
    ok = frame[frame["error"].isna()]
    per_seed = ok.groupby([*by, "seed"], sort=False)[list(metrics)].mean()
    counts = ok.groupby([*by, "seed"], sort=False)[list(metrics)].count()
    out = per_seed.groupby(level=list(by), sort=False).agg(["mean", "std"])
    out.columns = [f"{m}:{s}" for m, s in out.columns]
    out["seeds"] = per_seed.groupby(level=list(by), sort=False).size()
    for m in metrics:
        out[f"{m}:cases"] = counts[m].groupby(level=list(by), sort=False).mean()
    return out


def cell(mean: float, std: float) -> str:
    """A fraction as a table cell in percent: "97.26 ± 0.41" ("–" when there is no value)."""
    if mean is None or math.isnan(mean):
        return "–"
    return f"{100 * mean:.2f}" + ("" if std is None or math.isnan(std) else f" ± {100 * std:.2f}")


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _csv(table: str, stats: pd.DataFrame, metrics: Sequence[str], **fixed) -> CsvRows:
    """One summary.csv row per (group of ``stats``, metric): mean, std, seeds and cases per seed."""
    rows = []
    for key, s in stats.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        for m in metrics:
            rows.append({"table": table, **dict(zip(stats.index.names, key)), **fixed, "metric": m,
                         "mean": s[f"{m}:mean"], "std": s[f"{m}:std"], "seeds": s["seeds"],
                         "cases_per_seed": s[f"{m}:cases"]})
    return rows


def _editor_columns(frame: pd.DataFrame, metrics: Sequence[str], table: str) -> tuple[str, CsvRows]:
    """Rows = metrics, columns = editors (the shape of the paper's Tables 1, 3 and 5)."""
    stats = seed_stats(frame, ["editor"], metrics)
    editors = list(stats.index)
    rows = [[LABELS[m]] + [cell(stats.loc[e, f"{m}:mean"], stats.loc[e, f"{m}:std"]) for e in editors]
            for m in metrics]
    cases = ["cases / seed"] + [f"{stats.loc[e, f'{metrics[0]}:cases']:.0f}" for e in editors]
    return md_table(["Metric", *editors], rows + [cases]), _csv(table, stats, metrics)


def single(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of single edits (edit, score, revert)."""
    return frame[frame["mode"] == "single"]


def table1(frame: pd.DataFrame) -> tuple[str, CsvRows]:
    """Reliability, locality, generality, portability per editor (paper Table 1)."""
    return _editor_columns(single(frame), TABLE1, "table1")


def portability_note(frame: pd.DataFrame) -> str | None:
    """The line under Table 1 saying over how many cases its portability column is averaged, when not all:
    e.g. "Portability: the mean over the 12 of 50 cases per seed that have a portability probe (the other
    columns: all 50)". None when every case has one, or none does (the column is then n/a)."""
    rows = single(frame)
    if rows.empty or "portability" not in rows:
        return None
    first = rows[(rows["editor"] == rows["editor"].iloc[0]) & (rows["seed"] == rows["seed"].iloc[0])]
    have, total = int(first["portability"].notna().sum()), int(first["reliability"].notna().sum())  # edits made
    if have in (0, total):
        return None
    return (f"Portability: the mean over the {have} of {total} cases per seed that have a portability probe "
            f"(the other columns: all {total}); Table 5 gives each portability group.")


def table3(frame: pd.DataFrame) -> tuple[str, CsvRows]:
    """The locality levels per editor (paper Table 3), those the data has."""
    rows = single(frame)
    present = [m for m in TABLE3 if rows[m].notna().any()]
    return _editor_columns(rows, present, "table3")


def table5(frame: pd.DataFrame) -> tuple[str, CsvRows]:
    """One block per portability group, over the cases that have it (as the paper's data sets)."""
    parts, csv = [], []
    rows = single(frame)
    for g in PORTABILITY_GROUPS:
        subset = rows[rows[g].notna()]
        if subset.empty:
            continue
        md, c = _editor_columns(subset, ("reliability", "generality", g), f"table5:{g}")
        parts.append(f"**{LABELS[g]}**\n\n{md}")
        csv += c
    return "\n\n".join(parts) or "_no case has a portability probe_", csv


def _editor_by_n(rows: pd.DataFrame, table: str) -> tuple[str, CsvRows]:
    """Rows = editors, columns = metric x n (the shape of the paper's Table 2)."""
    stats = seed_stats(rows, ["editor", "n"], SEQUENTIAL)
    sizes = sorted({int(n) for _, n in stats.index})
    header = ["Editor"] + [f"{LABELS[m]} n={n}" for m in SEQUENTIAL for n in sizes]
    body = []
    for editor in dict.fromkeys(e for e, _ in stats.index):
        body.append([editor] + [cell(stats.loc[(editor, n), f"{m}:mean"], stats.loc[(editor, n), f"{m}:std"])
                                if (editor, n) in stats.index else "–" for m in SEQUENTIAL for n in sizes])
    return md_table(header, body), _csv(table, stats, SEQUENTIAL)


def table2(frame: pd.DataFrame, final: bool) -> tuple[str, CsvRows]:
    """Sequential editing: rows = editors, columns = metric x n (paper Table 2)."""
    rows = frame[frame["mode"].str.startswith("sequential@") & (frame["mode"].str.endswith("/final") == final)]
    if rows.empty:
        return "_no sequential runs_", []
    return _editor_by_n(rows, "table2:final" if final else "table2")


def batch_table(frame: pd.DataFrame) -> tuple[str, CsvRows]:
    """Batch editing: each case scored with its whole batch of n edits applied."""
    rows = frame[frame["mode"].str.startswith("batch@")]
    if rows.empty:
        return "_no batch runs_", []
    return _editor_by_n(rows, "batch")


def c_sweep(frame: pd.DataFrame) -> tuple[str, CsvRows, pd.DataFrame]:
    """Rows = C, columns = metrics per swept editor (paper Fig. 3)."""
    rows = frame[frame["mode"].str.startswith("sweep@")]
    if rows.empty:
        return "_no C sweep_", [], pd.DataFrame()
    metrics = ("reliability", "generality", "locality")
    stats = seed_stats(rows, ["editor", "C"], metrics).sort_index()
    header = ["C"] + [f"{e}: {LABELS[m]}" for e in dict.fromkeys(e for e, _ in stats.index) for m in metrics]
    body = []
    for C in sorted({c for _, c in stats.index}):
        body.append([f"{C:.2f}"] + [cell(stats.loc[(e, C), f"{m}:mean"], stats.loc[(e, C), f"{m}:std"])
                                    if (e, C) in stats.index else "–"
                                    for e in dict.fromkeys(e for e, _ in stats.index) for m in metrics])
    return md_table(header, body) + _checkpoint_note(rows), _csv("c_sweep", stats, metrics), stats


def _checkpoint_note(rows: pd.DataFrame) -> str:
    """Which checkpoint made each C of a trained editor's sweep rows ("" when no row came from one)."""
    made = rows.dropna(subset=["checkpoint"]) if "checkpoint" in rows else rows.iloc[:0]
    if made.empty:
        return ""
    pairs = made.groupby(["editor", "C"])["checkpoint"].agg(lambda s: ", ".join(sorted(set(s))))
    lines = [f"- {e}, C = {c:.2f}: checkpoint `{ck}`" for (e, c), ck in pairs.items()]
    return ("\n\nFor a trained editor C is the C its checkpoint was trained at; it runs only the sweep's C values "
            "that a checkpoint has (\"–\": none). Each row's checkpoint:\n\n" + "\n".join(lines))


def hypothesis_table(corrs: Sequence[Correlation]) -> tuple[str, CsvRows]:
    """One row per (editor, pair) with rho, its bootstrap CI, raw and Benjamini-Hochberg p and the verdict."""
    sign = {1: "> 0", -1: "< 0", 0: "–"}

    def p_text(p: float) -> str:
        return "–" if math.isnan(p) else f"{p:.2g}"

    body = [[c.editor, f"{c.x} ~ {c.y}" + (f" given {c.control}" if c.control else ""), f"{c.rho:+.3f}",
             f"[{c.lo:+.3f}, {c.hi:+.3f}]", p_text(c.p), p_text(c.p_adjusted), c.points, c.clusters,
             sign[c.expected_sign], c.verdict] for c in corrs]
    header = ["Editor", "Pair", "Spearman rho", "95% CI (bootstrap)", "p", "p (BH)", "edits", "prompts",
              "paper predicts", "verdict"]
    csv = [{"table": "hypothesis", **{k: getattr(c, k) for k in c.__dataclass_fields__}, "verdict": c.verdict}
           for c in corrs]
    return md_table(header, body), csv


def hypothesis_section(corrs: Sequence[Correlation], cfg) -> tuple[str, CsvRows]:
    """The report's hypothesis section (its heading, how it was measured and tested, the table) as Markdown,
    and the table's CSV rows. ``cfg`` (a BenchConfig) gives the data and the k of the k-NN distance."""
    md, rows = hypothesis_table(corrs)
    world = cfg.data.startswith("world")
    text = "\n".join([
        "## The paper's hypothesis, measured", "",
        f"Per single edit: lambda_max before editing, knn_distance = mean distance of the edit prompt's "
        f"pooled last-hidden-state embedding to its {cfg.knn} nearest neighbours among "
        f"{'the world' if world else 'the data set'}'s prompts "
        f"({'every fact, first template' if world else 'requests and probes'}; large = sparse), and "
        "locality_drop = 1 - locality. Spearman rho with a 95% CI and a two-sided p-value from one "
        "bootstrap over edit prompts (1000 resamples; the standard error of Fisher's z, so the CI "
        f"excludes 0 exactly when p < 0.05). {_family_note(corrs)} "
        "'given target_nll' is the partial rank correlation with the new target's NLL before editing "
        "(J of Eq. 8) partialled out: lambda_max is a gradient of J, so a surprising target raises both "
        "lambda_max and the size of the edit.", "", md])
    return text, rows


def _family_note(corrs: Sequence[Correlation]) -> str:
    """How many tests the hypothesis table holds and how they are controlled, in one sentence."""
    return (f"The table holds {how_many_tests(corrs)}; their p-values "
            "are adjusted "
            "together by Benjamini-Hochberg (false discovery rate 5%), column 'p (BH)', and a verdict "
            "'supports' / 'contradicts' needs p (BH) < 0.05 with rho on / against the side the paper "
            "predicts; otherwise 'inconclusive'. The CI and p are not adjusted.")


def sss_pairs(editors: Sequence[str]) -> list[tuple[str, str]]:
    """(editor, editor with SSS) pairs among ``editors``: same method and config class, SSS on in one."""
    specs = [EDITORS[e] for e in editors if e in EDITORS]
    return [(a.name, b.name) for a in specs for b in specs
            if not a.uses_sss and b.uses_sss and (a.factory, a.config_cls) == (b.factory, b.config_cls)]


def sss_effect_table(frame: pd.DataFrame, n_boot: int = 1000) -> tuple[str, CsvRows]:
    """Paired (same seed and case) difference made by adding SSS, with a bootstrap 95% CI over cases."""
    rows, body, csv = single(frame[frame["error"].isna()]), [], []
    rng = np.random.default_rng(0)
    for base, with_sss in sss_pairs(list(dict.fromkeys(rows["editor"]))):
        a = rows[rows["editor"] == base].set_index(["seed", "case_id"])
        b = rows[rows["editor"] == with_sss].set_index(["seed", "case_id"])
        both = a.index.intersection(b.index)
        if both.empty:
            continue
        a, b = a.loc[both], b.loc[both]
        changed = 100 * (a["post"] != b["post"]).mean()
        cells = []
        for m in ("reliability", "generality", "locality", "portability"):
            d = (b[m] - a[m]).dropna().to_numpy()
            if not len(d):
                cells.append("–")
                continue
            boots = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(n_boot)]
            lo, hi = np.percentile(boots, [2.5, 97.5])
            cells.append(f"{100 * d.mean():+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]")
            csv.append({"table": "sss_effect", "editor": with_sss, "baseline": base, "metric": m,
                        "mean_diff": d.mean(), "lo": lo, "hi": hi, "pairs": len(d)})
        body.append([f"{with_sss} - {base}", *cells, f"{changed:.1f}", len(both)])
    header = ["Pair", "Δ Reliability", "Δ Generality", "Δ Locality", "Δ Portability",
              "% cases with any prediction changed", "paired cases"]
    return (md_table(header, body) if body else "_no editor ran both with and without SSS_"), csv


def world_table(frame: pd.DataFrame) -> tuple[str, CsvRows]:
    """Mean world locality per editor beside the sampled locality, over the single edits that were run
    with world locality (``bench --world-locality``); ("", []) when none was.

    Both in percent, mean ± std over seeds of the per-seed mean over cases; "facts damaged / edit" is
    the mean number of world facts that should not change whose top answer changed.
    """
    rows = single(frame)
    rows = rows[rows["world_locality"].notna()]
    if rows.empty:
        return "", []
    metrics = ("world_locality", "locality", "world_damaged")
    stats = seed_stats(rows, ["editor"], metrics)
    body = [[e, cell(s["world_locality:mean"], s["world_locality:std"]), cell(s["locality:mean"], s["locality:std"]),
             f"{s['world_damaged:mean']:.1f}", f"{s['world_locality:cases']:.0f}"] for e, s in stats.iterrows()]
    md = md_table(["Editor", "World locality", "Sampled locality", "Facts damaged / edit", "cases / seed"], body)
    return md, _csv("world_locality", stats, metrics)


def lambda_table(frame: pd.DataFrame) -> str:
    """Median lambda_max before and after each editor's single edits: does SSS make the edit sparser?"""
    rows = single(frame)
    body = [[editor, f"{r['lambda_max_before'].median():.4g}", f"{r['lambda_max_after'].median():.4g}",
             f"{(r['lambda_max_after'] < r['lambda_max_before']).mean() * 100:.1f}", len(r)]
            for editor, r in rows[rows["error"].isna()].groupby("editor", sort=False)]
    return md_table(["Editor", "median lambda_max before", "median after", "% edits where it fell", "edits"], body)


def timing_table(frame: pd.DataFrame) -> str:
    """Results, failed edits and mean edit time per editor and mode (single, sequential and batch by n, sweep by C)."""
    def order(mode: str) -> tuple:
        kind, _, value = mode.partition("@")
        kinds = ("single", "sequential", "batch", "sweep")
        return kinds.index(kind) if kind in kinds else len(kinds), float(value.removeprefix("C=") or 0)

    rows = frame[~frame["mode"].str.endswith("/final")]
    editors = list(dict.fromkeys(rows["editor"]))
    groups = sorted(rows.groupby(["editor", "mode"], sort=False),
                    key=lambda g: (editors.index(g[0][0]), order(g[0][1])))
    body = [[editor, mode, len(r), int(r["error"].notna().sum()),
             f"{r['seconds'].mean():.3f}" if r["seconds"].notna().any() else "–"] for (editor, mode), r in groups]
    return md_table(["Editor", "Mode", "results", "failed edits", "mean edit time (s)"], body)


def c_sweep_figure(stats: pd.DataFrame):
    """Metrics against C with std error bars, one line per (editor, metric) (``figures.seeded_sweep_figure``)."""
    return seeded_sweep_figure(stats, LABELS)


def sequential_figure(frame: pd.DataFrame):
    """Reliability, locality and generality against the number of sequential edits (log x): scored right
    after each edit (solid) and after all n (dashed), drawn by ``figures.seeded_sequential_figure``."""
    rows = frame[frame["mode"].str.startswith("sequential@")]
    lines = []
    for final, dash in ((False, "solid"), (True, "dash")):
        part = rows[rows["mode"].str.endswith("/final") == final]
        if not part.empty:
            lines.append(("after all n" if final else "right after each", dash,
                          seed_stats(part, ["editor", "n"], SEQUENTIAL)))
    return seeded_sequential_figure(lines, SEQUENTIAL, LABELS)


OFFLINE_PLOTLY_JS = ("directory", "inline")  # where a page finds plotly.js without a network


def html_page(fig: go.Figure, title: str, plotly_js: str = "inline", footer: str = "") -> str:
    """``fig`` as a standalone HTML page titled ``title`` that opens with the network off; ``footer`` (HTML,
    e.g. ``RunRecord.to_html()``) goes after the figure.

    ``plotly_js``: "inline" puts plotly.js in the page (about 4.6 MB); "directory" loads it from
    ``plotly.min.js`` beside the page (``write_html_page`` writes that file). A CDN is never used:
    "cdn" (an older option) falls back to "directory" with a warning, since a CDN page is blank offline.
    """
    if plotly_js not in OFFLINE_PLOTLY_JS:
        log.warning("plotly.js from %r would leave the plot blank offline; loading it from plotly.min.js "
                    "beside the page instead", plotly_js)
    page = fig.to_html(full_html=True, include_plotlyjs=True if plotly_js == "inline" else "directory")
    page = page.replace("<head>", f"<head><title>{html.escape(title)}</title>", 1)
    return page.replace("</body>", f"{footer}</body>", 1) if footer else page


def write_html_page(fig: go.Figure, path: Path, title: str, plotly_js: str = "directory") -> Path:
    """Write ``html_page(fig, title, plotly_js)`` to ``path``; for "directory", plotly.min.js beside it."""
    page = html_page(fig, title, plotly_js)
    path.write_text(page, encoding="utf-8")
    if plotly_js != "inline":
        bundle = path.parent / "plotly.min.js"
        if not bundle.exists():
            from plotly.offline import get_plotlyjs  # part of plotly; only needed when writing pages
            bundle.write_text(get_plotlyjs(), encoding="utf-8")
    return path


def seed_note(data: str) -> str:
    """What differs between seeds, said plainly in every report."""
    if data.startswith("world"):
        return ("Each seed draws, for the same fixed set of test facts (the split of seed 0, which trained "
                "editors never saw), a new target for every fact, the sampled neighbour and attribute probes, "
                "and the order of the cases (so also which facts the first n are), plus the torch seed of "
                "every edit.")
    return ("The cases are the file's first n records for every seed; a seed changes their order (which "
            "matters for sequential editing) and the torch seed of every edit. Deterministic editors "
            "therefore give the same single-edit scores under every seed (std 0).")


def _hypothesis_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the hypothesis is measured on: single edits that did not fail."""
    return frame[(frame["mode"] == "single") & frame["error"].isna()]


def missing_measures(frame: pd.DataFrame) -> int:
    """How many results the hypothesis needs lack the stored measures (written before they were stored)."""
    return int((~_hypothesis_rows(frame)["measured"].astype(bool)).sum())


def _hypothesis_frame(frame: pd.DataFrame, cfg, lm, cases_by_seed: dict[int, list[EditCase]]) -> pd.DataFrame:
    """The rows the hypothesis is measured on, with their measures: stored ones, or for results written
    before they were stored, computed on ``lm`` (the results file is not changed).

    Raises RequestError, saying what to do, when some are missing and ``lm`` is None.
    """
    rows = _hypothesis_rows(frame)
    todo = ~rows["measured"].astype(bool)
    if not todo.any():
        return rows
    if lm is None:
        raise RequestError(f"{int(todo.sum())} results were written before the k-NN density and target NLL were "
                           "stored with each result; give the model they were made with to compute them "
                           "(bench --report-only --model NAME, the same --data, --n and --seeds), or rerun the bench")
    log.info("computing the k-NN density and target NLL of %d older results on %s", int(todo.sum()), lm.name)
    old = rows[todo]  # batched over every missing prompt, as reports computed them before they were stored
    density = knn_density(lm.model, lm.tok, list(old["prompt"].unique()),
                          reference_prompts(cfg.data, cases_by_seed[0]), cfg.knn)
    nll = pd.Series(target_nll_of(lm.model, lm.tok, list(old["prompt"]), list(old["target_new"])), index=old.index)
    return rows.assign(knn_distance=rows["knn_distance"].where(~todo, old["prompt"].map(density)),
                       target_nll=rows["target_nll"].where(~todo, nll))


def _single_sections(frame: pd.DataFrame, cfg, hypothesis_rows, out: Path) -> tuple[list[str], CsvRows]:
    """The report's sections of single edits (Tables 1, 3 and 5, the hypothesis, lambda_max, world locality, what
    SSS changes) as Markdown lines and their summary.csv rows; writes hypothesis.csv into ``out``."""
    parts: list[str] = []
    csv: CsvRows = []
    for title, (md, rows) in (("Table 1: overall performance (single edits, reverted after each)", table1(frame)),
                              ("Table 3: locality levels", table3(frame)),
                              ("Table 5: portability (each block over the cases that have that probe)",
                               table5(frame))):
        note = portability_note(frame) if title.startswith("Table 1") else None
        parts += [f"## {title}", "", md, "", *([note, ""] if note else [])]
        csv += rows
    section, rows = hypothesis_section(correlations(hypothesis_rows), cfg)
    pd.DataFrame(rows).to_csv(out / "hypothesis.csv", index=False)
    parts += [section, "",
              "lambda_max of the edit (prompt + new target) before and after editing:", "", lambda_table(frame), ""]
    md, rows = world_table(frame)
    if rows:
        parts += ["## World locality", "",
                  "Every fact of the built-in world read before and after each edit: the share of the facts "
                  "that should not change (all but the edited fact) whose top-1 answer did not change, beside "
                  "the sampled locality of the case's neighbour probes, over the same edits. Each edit's "
                  "damaged facts, by relation and by subject, are in `results.jsonl` (`world_damage`).",
                  "", md, ""]
        csv += rows
    md, rows = sss_effect_table(frame)
    parts += ["## What SSS changes, paired", "",
              "Same seed, same case, editor with SSS minus without, in percentage points, with a 95% bootstrap "
              "CI over cases; and how often adding SSS changed any teacher-forced prediction of the case at all.",
              "", md, ""]
    csv += rows
    return parts, csv


def write_bench_report(out: Path, cfg, cases_by_seed: dict[int, list[EditCase]], lm=None) -> Path:
    """Write report.md, summary.csv, cases.csv, hypothesis.csv and the plots from the results in ``out``.

    ``cfg`` is the bench's BenchConfig (data, seeds, settings, knn, plotly_js). No model is
    needed: the model's name and device come from the run log, the hypothesis' measures from the
    results. ``lm`` (a LoadedModel) is only used for results written before the measures were
    stored; without it those raise RequestError, saying what to do.
    """
    store = BenchStore(out)
    frame = store.frame()
    hypothesis_rows = _hypothesis_frame(frame, cfg, lm, cases_by_seed)  # refused before anything is written
    runs = store.log.runs()
    model_name = store.log.latest("model_name") or (lm.name if lm is not None else "not recorded")
    device = store.log.latest("model_device") or (lm.device if lm is not None else "not recorded")
    knns = {r["config"].get("knn") for r in runs if isinstance(r.get("config"), dict)} - {None}
    if knns - {cfg.knn}:  # the stored densities were measured with the run's k
        log.warning("the runs into %s measured the k-NN density with k = %s, but the report says k = %d",
                    out, ", ".join(map(str, sorted(knns))), cfg.knn)
    commands = "\n".join(f"{r['command']}\n    # started {r.get('started')}, wall {r.get('wall_seconds', '?')} s, "
                         f"CPU {r.get('cpu_seconds', '?')} s, "
                         f"{r.get('results_made', '?')} results made, {r.get('results_skipped', '?')} resumed"
                         for r in runs)
    counts = group_counts(cases_by_seed[0])
    editors = list(dict.fromkeys(frame["editor"]))
    parts = [f"# Bench report: {', '.join(editors)} on {cfg.data}", "",
             "Exact command(s), in order (one per invocation into this folder):", "", "```", commands, "```", "",
             f"- model: `{model_name}`; device {device}; torch {torch.__version__}, {torch.get_num_threads()} threads",
             f"- data: `{cfg.data}`, {len(cases_by_seed[0])} cases per seed, seeds 0..{cfg.seeds - 1}",
             "- probes per seed: " + ", ".join(f"{g} {k}" for g, k in counts.items()),
             "- editor settings: " + "; ".join(f"{e}: {editor_config(e, **cfg.settings)}" for e in editors),
             f"- seeds: {seed_note(cfg.data)}",
             "- scores: EasyEdit teacher-forced token accuracy in %, mean ± std over seeds of the per-seed mean "
             "over cases; locality = agreement of post- with pre-edit argmax on neighbour prompts.", ""]
    csv: list[dict] = []
    if "single" in set(frame["mode"]):
        more, rows = _single_sections(frame, cfg, hypothesis_rows, out)
        parts += more
        csv += rows
    for final in (False, True):
        md, rows = table2(frame, final)
        if rows:
            what = "after all n edits (EasyEdit's protocol)" if final else "each scored right after it is applied"
            parts += [f"## Table 2: sequential editing, {what}", "", md, ""]
            csv += rows
    md, rows = batch_table(frame)
    if rows:
        parts += ["## Batch editing: the n edits of a batch written at once, each scored with all applied", "",
                  "n is the batch size (a last, smaller batch counts under its own n).", "", md, ""]
        csv += rows
    md, rows, sweep_stats = c_sweep(frame)
    if rows:
        parts += ["## Fig. 3: ablation on C", "", md, "", "Plot: [c_sweep.html](c_sweep.html)", ""]
        csv += rows
        write_html_page(c_sweep_figure(sweep_stats), out / "c_sweep.html",
                        f"SSS bench: ablation on C ({Path(cfg.data).name})", cfg.plotly_js)
    if frame["mode"].str.startswith("sequential@").any():
        write_html_page(sequential_figure(frame), out / "sequential.html",
                        f"SSS bench: sequential editing ({Path(cfg.data).name})", cfg.plotly_js)
        parts += ["Plot of sequential editing: [sequential.html](sequential.html)", ""]
    parts += ["## Runs, failures and timing", "", timing_table(frame), "",
              "Edit time excludes scoring; a batch row shows the batch's edit time divided by its size.", "",
              "Every case's raw predictions (teacher-forced argmax tokens before and after, per probe) are in "
              "`results.jsonl`; per-case scores in `cases.csv`; every table cell in `summary.csv`.", ""]
    pd.DataFrame(csv).to_csv(out / "summary.csv", index=False)
    unrun = [c for c in WORLD if frame[c].isna().all()]  # a run without --world-locality: its columns left out
    frame.drop(columns=["post", *MEASURES, "measured", *unrun]).to_csv(out / "cases.csv", index=False)
    path = out / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path

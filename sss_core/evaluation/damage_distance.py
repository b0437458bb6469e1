"""Damage against distance: does an edit hurt the world facts near its prompt more than the far ones? (issue 26, item 3)

The paper's hypothesis, measured on every fact of the world instead of ten sampled neighbours. For
one edit, each world fact that should not change (``WorldLocality.others``) gets

- its *distance* from the edit prompt in the unedited model's sentence-embedding space
  (``embeddings.embed_prompts`` of ``fact.prompt()`` and of the request's prompt, with the pooling
  and hidden-state layer the user picks; Euclidean, or cosine distance 1 - cos, as
  ``embeddings.nearest_neighbours`` computes them);
- its *damage*: whether its top-1 answer changed (``FactChange.changed``, EasyEdit's argmax
  comparison), and the drop in P(old answer) = P(object | prompt) before - after, in [-1, 1].

The facts are put into distance bins (``quantile_edges``: quantiles of the distances pooled over all
edits, so every editor run on the same edits shares the same bins) and each bin gives the share of
facts whose top answer changed and the mean drop in P(old answer), with a 95% interval:

- over many edits, a cluster bootstrap over edits (``scipy.stats.bootstrap``, percentile, the edits
  resampled with their facts: a bin's value is sum over the resampled edits / their fact count);
- for one edit the facts are the units: the share's interval is Wilson's (``scipy.stats.binomtest``),
  the mean drop's a bootstrap over the bin's facts.

Whether damage falls with distance is one Spearman correlation of distance and damage over all
(edit, fact) pairs, with the project's cluster bootstrap (``hypothesis.spearman_ci``: CI and p from
one resampling of edits) and the predicted sign -1; a table's correlations are adjusted together
(``hypothesis.adjust``, Benjamini-Hochberg). Whether SSS lowers the curve is the paired difference
per bin (editor + SSS minus editor, on the same edits): estimate +- z se with se the standard error of
a cluster bootstrap over edits and p = 2 (1 - Phi(|d| / se)), so a CI excludes 0 exactly when p < 0.05;
a table's p-values are adjusted together (Benjamini-Hochberg, ``scipy.stats.false_discovery_control``).

Example:
    >>> space = FactSpace(lm.model, lm.tok, default_world().facts, pooling="mean", metric="euclidean")
    >>> wl = world_locality(lm.model, lm.tok, space.facts, edit, request)
    >>> damage = edit_damage(wl, space.distances(request.prompt), "ft-l", case_id)
    >>> bins = damage_curve([damage], quantile_edges([damage], 5))
    >>> [(b.facts, b.share_changed) for b in bins]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..embeddings import POOLINGS, embed_prompts, nearest_neighbours
from ..locks import model_lock
from ..world.generate import Fact
from .hypothesis import Correlation, adjust, spearman_ci
from ..types import EditCase
from .runners import case_seed
from .world_locality import WorldLocality, baseline_for, world_locality

METRICS: tuple[str, ...] = ("euclidean", "cosine")
LEVEL = 0.95  # every interval here
MEASURES = ("top_changed", "p_drop")  # the two damages of a fact: top-1 answer changed (0/1), drop in P(old answer)


class FactSpace:
    """The world facts' prompts embedded once on the unedited model, to measure a prompt's distance to each.

    ``embeddings``: (n_facts, d_model) float32, ``fact.prompt()`` of each fact pooled with ``pooling``
    ("last" or "mean") at hidden-state ``layer`` (-1: the last, after the final norm). Build it while
    the model is unedited (it reads the model as it is, under its lock).
    Raises ValueError for an unknown pooling or metric, or no facts; RequestError as ``embed_prompts``.
    """

    def __init__(self, model: nn.Module, tok, facts: Sequence[Fact], pooling: str = "mean",
                 metric: str = "euclidean", layer: int = -1):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
        if not facts:
            raise ValueError("no facts to measure distances to")
        self.model, self.tok, self.facts = model, tok, tuple(facts)
        self.pooling, self.metric, self.layer = pooling, metric, layer
        with model_lock(model):
            self.embeddings = embed_prompts(model, tok, [f.prompt() for f in self.facts], pooling, layer=layer)

    def prompt_embedding(self, prompt: str) -> np.ndarray:
        """``prompt`` embedded alone (a batch of one) as the facts are, on the model as it is now: (d_model,)."""
        with model_lock(self.model):
            return embed_prompts(self.model, self.tok, [prompt], self.pooling, batch_size=1, layer=self.layer)[0]

    def distances(self, prompt: str) -> np.ndarray:
        """Distance of ``prompt``'s embedding (``prompt_embedding``) from every fact's, (n_facts,) float64, in the
        facts' order: Euclidean, or 1 - cosine similarity (``nearest_neighbours``)."""
        return distances_to(self.embeddings, self.prompt_embedding(prompt), self.metric)


def distances_to(points: np.ndarray, query: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Distance of ``query`` (d,) from each row of ``points`` (n, d) -> (n,) float64, by
    ``embeddings.nearest_neighbours`` (the project's one distance code) over the rows plus the query."""
    stacked = np.vstack([points, query[None, :]])
    out = np.empty(len(points))
    for i, d in nearest_neighbours(stacked, len(points), k=len(points), metric=metric):
        out[i] = d
    return out


@dataclass(frozen=True)
class EditDamage:
    """One edit's damage to each world fact that should not change, beside the fact's distance from the edit."""

    editor: str
    case_id: str
    fact_index: np.ndarray  # (m,) int: index of each fact in the world (the facts that should not change)
    distance: np.ndarray  # (m,) float: distance from the edit prompt (FactSpace's metric)
    changed: np.ndarray  # (m,) bool: the top-1 answer changed
    drop: np.ndarray  # (m,) float: P(old answer) before - after, in [-1, 1]

    def __post_init__(self):
        m = len(self.fact_index)
        if any(len(a) != m for a in (self.distance, self.changed, self.drop)):
            raise ValueError("fact_index, distance, changed and drop must have one length")
        if m == 0:
            raise ValueError(f"edit {self.case_id!r} has no facts that should not change")
        if not np.isfinite(self.distance).all():
            raise ValueError(f"edit {self.case_id!r} has a distance that is NaN or infinite")


def edit_damage(wl: WorldLocality, distances: np.ndarray, editor: str, case_id: str) -> EditDamage:
    """The ``EditDamage`` of one edit from its ``world_locality`` reading and the facts' ``distances``
    (n_facts,) in the same order (``FactSpace.distances``). The edited facts are left out.
    Raises ValueError when the lengths differ."""
    if len(distances) != len(wl.facts):
        raise ValueError(f"{len(distances)} distances for {len(wl.facts)} facts")
    keep = np.array([not f.should_change for f in wl.facts])
    idx = np.flatnonzero(keep)
    return EditDamage(editor, case_id, idx, np.asarray(distances, float)[idx],
                      np.array([wl.facts[i].changed for i in idx], bool),
                      np.array([wl.facts[i].p_before - wl.facts[i].p_after for i in idx], float))


def quantile_edges(damages: Sequence[EditDamage], bins: int = 5) -> np.ndarray:
    """Bin edges (bins + 1,) at the 0, 1/bins, ..., 1 quantiles of the distances pooled over ``damages``.

    Pass the same edges to every editor run on the same edits (the distances are the unedited
    model's, so they are the editors' common ground). Tied quantiles are merged, so fewer bins may
    come back. Raises ValueError for bins < 1 or no edits.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if not damages:
        raise ValueError("no edits to bin")
    pooled = np.concatenate([d.distance for d in damages])
    return np.unique(np.quantile(pooled, np.linspace(0, 1, bins + 1)))


def bin_of(distance: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each distance: bin i holds edges[i] <= d < edges[i+1], the last bin also its upper edge;
    distances beyond the edges go to the first or last bin. (m,) -> (m,) int in [0, len(edges) - 2]."""
    n_bins = max(1, len(edges) - 1)
    return np.clip(np.searchsorted(edges[1:-1], distance, side="right"), 0, n_bins - 1)


def _units(damages: Sequence[EditDamage], edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per resampling unit and bin: (facts, facts changed, sum of drops), each (units, bins).

    The units are the edits (their facts resampled together), or the facts themselves when there is one edit.
    """
    n_bins = max(1, len(edges) - 1)
    rows = []
    for d in damages:
        b = bin_of(d.distance, edges)
        if len(damages) == 1:
            for j in range(len(b)):
                one = np.zeros((3, n_bins))
                one[:, b[j]] = 1, float(d.changed[j]), d.drop[j]
                rows.append(one)
        else:
            rows.append(np.stack([np.bincount(b, minlength=n_bins),
                                  np.bincount(b, weights=d.changed.astype(float), minlength=n_bins),
                                  np.bincount(b, weights=d.drop, minlength=n_bins)]))
    units = np.stack(rows)  # (units, 3, bins)
    return units[:, 0], units[:, 1], units[:, 2]


def _ratio(num, den, axis=-1):
    """sum(num) / sum(den) along ``axis`` (a bin's share or mean over resampled units)."""
    return np.sum(num, axis=axis) / np.sum(den, axis=axis)


def _percentile_ci(num: np.ndarray, den: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of sum(num) / sum(den) over units resampled with replacement
    (``scipy.stats.bootstrap``, paired); (estimate, estimate) when every unit gives the same value."""
    from scipy import stats  # here, not at the top: scipy.stats costs about 0.8 s of the app's start
    estimate = float(num.sum() / den.sum())
    if len(num) < 2:
        return math.nan, math.nan
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")  # a degenerate sample (every unit alike) warns and gives NaN
        res = stats.bootstrap((num, den), _ratio, paired=True, vectorized=True, n_resamples=n_boot,
                              confidence_level=LEVEL, method="percentile", random_state=seed)
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (estimate, estimate) if math.isnan(lo) or math.isnan(hi) else (lo, hi)


@dataclass(frozen=True)
class DistanceBin:
    """One distance bin of one editor's damage curve. Shares and drops are fractions (not %)."""

    editor: str
    index: int  # 0 = nearest
    lo: float  # the bin's distance edges (lo <= d < hi; the last bin includes hi)
    hi: float
    median_distance: float  # of the bin's facts (pooled over edits)
    facts: int  # (edit, fact) pairs in the bin
    edits: int
    changed: int  # facts whose top answer changed
    share_changed: float  # changed / facts
    share_lo: float  # 95% interval of share_changed (see the module docstring for which)
    share_hi: float
    mean_drop: float  # mean drop in P(old answer) over the bin's facts
    drop_lo: float
    drop_hi: float
    interval: str  # how the intervals were made


def damage_curve(damages: Sequence[EditDamage], edges: np.ndarray, n_boot: int = 2000,
                 seed: int = 0) -> list[DistanceBin]:
    """One editor's damage per distance bin (``edges`` from ``quantile_edges``), nearest bin first.

    ``damages``: that editor's edits (one or many). Intervals as the module docstring says: over
    many edits a cluster bootstrap over edits, for one edit Wilson (share) and a bootstrap over facts
    (drop). A bin without facts gets NaN values. Raises ValueError for no edits or several editors.
    """
    from scipy import stats  # here, not at the top: scipy.stats costs about 0.8 s of the app's start
    if not damages:
        raise ValueError("no edits")
    editors = {d.editor for d in damages}
    if len(editors) != 1:
        raise ValueError(f"damage_curve takes one editor's edits, got {sorted(editors)}")
    n, k, s = _units(damages, edges)
    pooled_d = np.concatenate([d.distance for d in damages])
    pooled_b = np.concatenate([bin_of(d.distance, edges) for d in damages])
    one = len(damages) == 1
    how = ("one edit: Wilson (share), bootstrap over facts (drop)" if one
           else f"cluster bootstrap over {len(damages)} edits (percentile)")
    out = []
    for b in range(n.shape[1]):
        facts, changed = int(n[:, b].sum()), int(k[:, b].sum())
        inside = n[:, b] > 0
        edits = sum(int((bin_of(d.distance, edges) == b).any()) for d in damages)
        if facts == 0:
            nan = math.nan
            out.append(DistanceBin(damages[0].editor, b, float(edges[b]),
                                   float(edges[b + 1]), nan, 0, 0, 0, nan, nan, nan, nan, nan, nan, how))
            continue
        if one:
            ci = stats.binomtest(changed, facts).proportion_ci(LEVEL, method="wilson")
            share_ci = (float(ci.low), float(ci.high))
        else:
            share_ci = _percentile_ci(k[inside, b], n[inside, b], n_boot, seed)
        drop_ci = _percentile_ci(s[inside, b], n[inside, b], n_boot, seed)
        out.append(DistanceBin(damages[0].editor, b, float(edges[b]), float(edges[b + 1]),
                               float(np.median(pooled_d[pooled_b == b])), facts, edits, changed,
                               changed / facts, *share_ci, float(s[:, b].sum() / facts), *drop_ci, how))
    return out


def trend(damages: Sequence[EditDamage], n_boot: int = 1000, seed: int = 0) -> list[Correlation]:
    """Spearman rho of distance against each damage (``MEASURES``) over all (edit, fact) pairs of one
    editor, with CI and p from ``hypothesis.spearman_ci``'s cluster bootstrap (clusters: the edits, or
    the facts for one edit) and the predicted sign -1 (damage falls with distance). Not adjusted:
    ``adjust`` a whole table at once."""
    dist = np.concatenate([d.distance for d in damages])
    clusters = (np.arange(len(dist)) if len(damages) == 1
                else np.concatenate([np.full(len(d.distance), i) for i, d in enumerate(damages)]))
    out = []
    for measure in MEASURES:
        y = np.concatenate([d.changed.astype(float) if measure == "top_changed" else d.drop for d in damages])
        rho, lo, hi, p = spearman_ci(dist, y, clusters, n_boot=n_boot, seed=seed)
        out.append(Correlation(damages[0].editor, "distance", measure, None, rho, lo, hi, p, len(dist),
                               len(damages) if len(damages) > 1 else len(dist), -1))
    return out


@dataclass(frozen=True)
class BinDifference:
    """The paired difference of two editors' damage in one distance bin, over the same edits: b - a."""

    a: str
    b: str
    measure: str  # "top_changed" (share) or "p_drop" (mean drop in P(old answer))
    index: int
    lo_edge: float
    hi_edge: float
    facts: int
    difference: float  # b's value - a's value
    lo: float  # estimate +- z se (95%, not adjusted)
    hi: float
    p: float  # two-sided, from the same bootstrap se
    p_adjusted: float = math.nan  # Benjamini-Hochberg over the table
    tests: int = 0


def _paired(a: Sequence[EditDamage], b: Sequence[EditDamage]) -> tuple[list[EditDamage], list[EditDamage]]:
    """``a`` and ``b`` restricted to their common edits (by case_id), in one order; ValueError when none
    are common or a common edit's facts differ."""
    by_b = {d.case_id: d for d in b}
    common = [d for d in a if d.case_id in by_b]
    if not common:
        raise ValueError(f"{a[0].editor if a else '?'} and {b[0].editor if b else '?'} share no edits")
    pa, pb = common, [by_b[d.case_id] for d in common]
    for x, y in zip(pa, pb):
        if not np.array_equal(x.fact_index, y.fact_index):
            raise ValueError(f"edit {x.case_id!r} has other facts that should not change in the two runs")
    return pa, pb


def paired_difference(a: Sequence[EditDamage], b: Sequence[EditDamage], edges: np.ndarray,
                      n_boot: int = 2000, seed: int = 0) -> list[BinDifference]:
    """Per bin and measure, ``b``'s damage minus ``a``'s on their common edits (e.g. a = ft-l, b = ft-l+sss).

    The units (edits, or the facts of one edit) are resampled together for both editors
    (``scipy.stats.bootstrap``, paired); the interval is difference +- z se and p = 2 (1 - Phi(|d| / se))
    from the bootstrap's standard error se, so the interval excludes 0 exactly when p < 0.05. A bin
    where every resample gives the same difference (se = 0) has no interval or p (NaN). Not adjusted:
    ``adjust_differences`` a whole table at once. Raises ValueError as ``_paired``.
    """
    from scipy import stats  # here, not at the top: scipy.stats costs about 0.8 s of the app's start
    pa, pb = _paired(a, b)
    n, ka, sa = _units(pa, edges)
    _, kb, sb = _units(pb, edges)
    z = float(stats.norm.ppf(0.5 + LEVEL / 2))
    out = []
    for measure, xa, xb in (("top_changed", ka, kb), ("p_drop", sa, sb)):
        for j in range(n.shape[1]):
            inside = n[:, j] > 0
            den, da, db = n[inside, j], xa[inside, j], xb[inside, j]
            facts = int(den.sum())
            diff = float((db.sum() - da.sum()) / facts) if facts else math.nan
            se = math.nan
            if facts and len(den) > 1:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = stats.bootstrap((da, db, den), lambda x, y, m, axis=-1: _ratio(y - x, m, axis),
                                          paired=True, vectorized=True, n_resamples=n_boot,
                                          method="percentile", random_state=seed)
                se = float(res.standard_error)
            ok = math.isfinite(se) and se > 0
            out.append(BinDifference(pa[0].editor, pb[0].editor, measure, j, float(edges[j]), float(edges[j + 1]),
                                     facts, diff, diff - z * se if ok else math.nan, diff + z * se if ok else math.nan,
                                     float(2 * stats.norm.sf(abs(diff) / se)) if ok else math.nan))
    return out


def adjust_differences(rows: Sequence[BinDifference]) -> list[BinDifference]:
    """``rows`` with ``p_adjusted`` (Benjamini-Hochberg over the rows that have a p) and ``tests`` set."""
    from scipy import stats  # here, not at the top: scipy.stats costs about 0.8 s of the app's start
    from dataclasses import replace

    family = [i for i, r in enumerate(rows) if not math.isnan(r.p)]
    adjusted = stats.false_discovery_control([rows[i].p for i in family], method="bh") if family else []
    out = [replace(r, tests=len(family)) for r in rows]
    for i, q in zip(family, adjusted):
        out[i] = replace(out[i], p_adjusted=float(q))
    return out


def correlation_row(c: Correlation) -> dict:
    """A trend correlation as a flat, JSON-ready row (with its verdict)."""
    return {"editor": c.editor, "x": c.x, "y": c.y, "rho": c.rho, "lo": c.lo, "hi": c.hi, "p": c.p,
            "p_adjusted": c.p_adjusted, "tests": c.tests, "points": c.points, "clusters": c.clusters,
            "expected_sign": c.expected_sign, "verdict": c.verdict}


@dataclass(frozen=True)
class DamageDistance:
    """Damage against distance for one or more editors on the same edits: the curves, the trends
    (adjusted together) and the paired differences of each editor with and without SSS (adjusted together)."""

    edges: np.ndarray  # (bins + 1,)
    curves: dict[str, list[DistanceBin]]  # editor -> its bins, nearest first
    trends: list[Correlation]
    differences: list[BinDifference]
    settings: dict  # pooling, metric, layer, bins, n_boot, seed

    def as_dict(self) -> dict:
        """JSON-ready (NaN stays NaN; ``jsonio.to_json`` writes it as null)."""
        return {"settings": self.settings, "edges": [float(e) for e in self.edges],
                "curves": {e: [asdict(b) for b in bins] for e, bins in self.curves.items()},
                "trends": [correlation_row(c) for c in self.trends],
                "trend_tests": self.trends[0].tests if self.trends else 0,
                "differences": [asdict(d) for d in self.differences],
                "difference_tests": self.differences[0].tests if self.differences else 0}


SSS_SUFFIX = "+sss"


def edit_damages(model: nn.Module, tok, editor, cases: Sequence[EditCase], space: FactSpace,
                 seed: int = 0) -> Iterator[EditDamage]:
    """Edit each case with ``editor`` (torch seeded as the bench seeds it, ``runners.case_seed``), read every
    fact of ``space.facts`` before and after (``world_locality``) and yield its ``EditDamage``; the model is
    left unedited after each (the edit is applied only inside ``world_locality``). About 2-5 s per edit on
    the shipped model on one thread. Raises what the editor raises for a request it cannot edit."""
    baseline = baseline_for(model, tok, space.facts)
    for case in cases:
        with model_lock(model):
            torch.manual_seed(case_seed(seed, case.request.case_id))
            edit = editor.edit(model, tok, [case.request])
            wl = world_locality(model, tok, space.facts, edit, case.request, baseline, relation=case.relation)
        yield edit_damage(wl, space.distances(case.request.prompt), editor.name, case.request.case_id)


def damage_distance(by_editor: dict[str, Sequence[EditDamage]], bins: int = 5, n_boot: int = 2000,
                    seed: int = 0, settings: dict | None = None) -> DamageDistance:
    """Curves, trends and SSS differences for ``by_editor`` (editor -> its edits' ``EditDamage``).

    The bins are the quantiles of the distances pooled over every editor's edits (``quantile_edges``);
    the trends form one table (Benjamini-Hochberg over all), the paired differences of each ``X`` and
    ``X+sss`` both present another (Benjamini-Hochberg over all of its rows).
    Raises ValueError when an editor has no edits.
    """
    empty = [e for e, d in by_editor.items() if not d]
    if empty:
        raise ValueError(f"editor {empty[0]!r} has no edits")
    edges = quantile_edges([d for ds in by_editor.values() for d in ds], bins)
    curves = {e: damage_curve(ds, edges, n_boot, seed) for e, ds in by_editor.items()}
    trends = adjust([c for ds in by_editor.values() for c in trend(ds, min(n_boot, 1000), seed)])
    diffs = [row for e in by_editor if e + SSS_SUFFIX in by_editor
             for row in paired_difference(by_editor[e], by_editor[e + SSS_SUFFIX], edges, n_boot, seed)]
    return DamageDistance(edges, curves, trends, adjust_differences(diffs),
                          {"bins": bins, "n_boot": n_boot, "seed": seed, **(settings or {})})


__all__ = ["BinDifference", "DamageDistance", "DistanceBin", "EditDamage", "FactSpace", "METRICS", "MEASURES",
           "adjust_differences", "bin_of", "correlation_row", "damage_curve", "damage_distance", "distances_to",
           "edit_damage", "edit_damages", "paired_difference", "quantile_edges", "trend"]

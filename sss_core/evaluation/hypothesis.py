"""The paper's hypothesis, measured: do edits in dense regions of embedding space do more damage?

The paper argues that a small lambda_max means a robust embedding in a semantically sparse
neighbourhood, and that edits there disturb fewer neighbours. It never checks this. Per edit we
take three numbers and correlate them (Spearman, per editor):

- ``lambda_max`` of the edit prompt + new target on the unedited model (in every result);
- ``knn_distance``: mean Euclidean distance from the edit prompt's embedding to its k nearest
  neighbours among a reference set of prompts (the world's fact prompts, or the data set's
  prompts); embeddings are the mean over tokens of the last hidden state (``hidden_states[-1]``).
  Large = sparse neighbourhood;
- ``locality_drop`` = 1 - locality: the share of neighbour predictions the edit changed.

If the paper is right: lambda_max ~ locality_drop > 0, knn_distance ~ locality_drop < 0 and
lambda_max ~ knn_distance < 0. Each rho's confidence interval and p-value come from one bootstrap over
edit prompts (a prompt edited under several seeds is resampled as one cluster), so they agree; a
table's p-values are adjusted together (Benjamini-Hochberg) and its verdicts follow the adjusted ones.

Example:
    >>> dens = knn_density(lm.model, lm.tok, edit_prompts, reference_prompts, k=10)
    >>> correlations(frame.assign(knn_distance=frame.prompt.map(dens)))
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..editors.base import model_lock
from ..embeddings import EMBED_BATCH, Pooling, embed_prompts
from ..errors import RequestError
from ..kept_readings import KeptReadings
from ..locks import reads_model
from ..text import encode_for, forward_logits, max_positions, n_tokens, target_nll
from ..types import EditCase, EditRequest
from .presets import default_world

log = logging.getLogger(__name__)

# (x, y, control, sign the paper's hypothesis predicts; 0: none). A control is partialled out of
# both ranks: lambda_max is a gradient of the target's NLL, so a surprising target inflates both
# lambda_max and the edit's size; "| target_nll" asks whether lambda_max says more than that.
PAIRS = (("lambda_max_before", "locality_drop", None, +1),
         ("lambda_max_before", "locality_drop", "target_nll", +1),
         ("knn_distance", "locality_drop", None, -1),
         ("knn_distance", "locality_drop", "target_nll", -1),
         ("lambda_max_before", "knn_distance", None, -1),
         ("target_nll", "locality_drop", None, 0))


@reads_model
@torch.no_grad()
def target_nll_of(model: nn.Module, tok, prompts: Sequence[str], targets: Sequence[str],
                  batch_size: int = 128) -> list[float]:
    """Per-token NLL of each target given its prompt on ``model`` (J of paper Eq. 8), in nats.

    Each distinct (prompt, target) pair is computed once (a bench repeats them for every editor).
    Raises RequestError if a prompt + target is longer than the model's context.
    """
    pairs = list(dict.fromkeys(zip(prompts, targets)))
    nll: dict[tuple[str, str], float] = {}
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        batch = encode_for(model, tok, [p for p, _ in chunk], [t for _, t in chunk])
        logits = forward_logits(model, batch)
        nll.update(zip(chunk, target_nll(logits, batch).tolist()))
    return [nll[pair] for pair in zip(prompts, targets)]


# The reference's embeddings, kept per model and reference while the weights are the same: the app's
# Hypothesis view builds a KnnReference per run, over the same world prompts (2.4 s on one CPU thread).
_EMBEDDED_REFERENCES = KeptReadings(max_cost=4)


class KnnReference:
    """A reference set of prompts, embedded once, to measure how crowded a prompt's neighbourhood is.

    Prompts longer than the model's context cannot be embedded: they are left out of the
    reference, and a query that long gets NaN. With fewer than k + 1 reference prompts, k shrinks
    to what there is. Raises ValueError if fewer than 2 reference prompts fit.

    Example:
        >>> ref = KnnReference(lm.model, lm.tok, world_prompts, k=10)
        >>> ref.distances(["The capital of France is"])  # {prompt: mean distance to its 10 nearest}
    """

    def __init__(self, model: nn.Module, tok, reference: Sequence[str], k: int = 10, pooling: Pooling = "mean"):
        """Embed ``reference`` (duplicates once) with ``model``; pooled last hidden state, ``pooling`` over tokens.

        The embeddings are kept for the next reference over the same prompts and model weights
        (``kept_readings.KeptReadings``)."""
        self.model, self.tok, self.pooling = model, tok, pooling
        self._limit = max_positions(model)
        self.reference = [p for p in dict.fromkeys(reference) if self.fits(p)]
        self.k = min(k, len(self.reference) - 1)
        if self.k < 1:
            raise ValueError(f"the reference set has {len(self.reference)} prompts; the density needs at least 2")
        self.embeddings = _EMBEDDED_REFERENCES.read(  # (reference, d_model)
            model, (tok, tuple(self.reference), pooling), self._embed_reference)
        self._where = {p: i for i, p in enumerate(self.reference)}

    def _embed_reference(self) -> torch.Tensor:
        """(reference, d_model) embeddings, read one batch of ``EMBED_BATCH`` prompts per hold of the model's
        lock (the same batches, so the same bits, as one call): a caller that does not hold the lock, such
        as the app's warm-up, lets other sessions' edits run between batches."""
        parts = [embed_prompts(self.model, self.tok, self.reference[i:i + EMBED_BATCH], self.pooling, EMBED_BATCH)
                 for i in range(0, len(self.reference), EMBED_BATCH)]
        return torch.from_numpy(np.concatenate(parts))

    def fits(self, prompt: str) -> bool:
        """Whether ``prompt`` has at least one token, fits in the model's context and holds no special token."""
        try:
            n = n_tokens(self.tok, prompt)
        except RequestError:  # a special token of the tokenizer inside the text: not measurable as text
            return False
        return 0 < n and (self._limit is None or n <= self._limit)

    def distances(self, prompts: Sequence[str], batch_size: int = 64) -> dict[str, float]:
        """Mean Euclidean distance from each prompt to its k nearest reference prompts (itself excluded).

        ``batch_size`` prompts are embedded at once; padding changes the last bits of an
        embedding, so a value that must not depend on its neighbours in the batch needs 1.
        """
        every = list(dict.fromkeys(prompts))
        queries = [p for p in every if self.fits(p)]
        if not queries:
            return {p: math.nan for p in every}
        q = embed_prompts(self.model, self.tok, queries, self.pooling, batch_size)
        q = torch.from_numpy(q)  # (queries, d_model)
        dist = torch.cdist(q, self.embeddings)  # (queries, reference)
        for i, p in enumerate(queries):
            if p in self._where:
                dist[i, self._where[p]] = math.inf
        found = dict(zip(queries, dist.topk(self.k, dim=1, largest=False).values.mean(1).tolist()))
        return {p: found.get(p, math.nan) for p in every}


def knn_density(model: nn.Module, tok, prompts: Sequence[str], reference: Sequence[str],
                k: int = 10, pooling: Pooling = "mean") -> dict[str, float]:
    """Mean distance from each prompt to its k nearest reference prompts (itself excluded).

    With fewer than k + 1 reference prompts, k shrinks to what there is. Prompts longer than the
    model's context cannot be embedded: they are left out of the reference and get NaN.
    Raises ValueError if fewer than 2 reference prompts fit. See ``KnnReference``.
    """
    return KnnReference(model, tok, reference, k, pooling).distances(prompts)


def reference_prompts(data: str, cases: Sequence[EditCase]) -> list[str]:
    """The prompts the k-NN density is measured against, for a bench over ``data``.

    The built-in world (``data`` "world" or "world:SPLIT"): every fact's prompt (first template).
    A data file: the requests and probes of ``cases`` (the bench passes seed 0's).
    """
    if data.startswith("world"):
        return [f.prompt() for f in default_world().facts]
    return [p for c in cases for p in [c.request.prompt] + [q.prompt for q in c.probes]]


class EditMeasures:
    """The per-edit numbers of the hypothesis that need the unedited model, for storing with each result.

    ``knn_distance`` (see ``KnnReference``) of the request's prompt and ``target_nll``
    (``target_nll_of``) of its prompt + new target. Each prompt and each (prompt, target) pair
    is measured once, on its own (a batch of one), so a stored value does not depend on which
    other requests shared its batch, its job or its worker; results are cached. The reference is
    embedded on first use. Every reading of the model holds its lock (``editors.base.model_lock``),
    so an edit another thread holds applied is never measured; call it only while this thread
    has not applied an edit of its own.

    Example:
        >>> measures = EditMeasures(lm.model, lm.tok, reference_prompts("world", cases), k=10)
        >>> measures([case.request])  # [{"knn_distance": 7.91, "target_nll": 6.02}]
    """

    def __init__(self, model: nn.Module, tok, reference: Sequence[str], k: int = 10):
        """Measure on ``model``; the density against ``reference`` with ``k`` neighbours."""
        self.model, self.tok, self.k = model, tok, k
        self._reference = list(reference)
        self._knn: KnnReference | None = None
        self._density: dict[str, float] = {}
        self._nll: dict[tuple[str, str], float] = {}

    def _knn_reference(self) -> KnnReference | None:
        """The reference, embedded on first use; None (with a warning) when it is too small."""
        if self._knn is None and self._reference:
            try:
                self._knn = KnnReference(self.model, self.tok, self._reference, self.k)
            except ValueError as exc:  # too few reference prompts: every density is undefined
                log.warning("no k-NN density: %s", exc)
            self._reference = []  # tried once
        return self._knn

    def __call__(self, requests: Sequence[EditRequest]) -> list[dict[str, float]]:
        """``{"knn_distance": float, "target_nll": float}`` per request; NaN where it cannot be measured
        (a prompt, or prompt + target, longer than the model's context). Holds the model's lock."""
        with model_lock(self.model):
            return self._measure(requests)

    def _measure(self, requests: Sequence[EditRequest]) -> list[dict[str, float]]:
        """``__call__``'s numbers, read while the caller holds the model's lock."""
        for r in requests:
            if r.prompt not in self._density:
                knn = self._knn_reference()
                self._density[r.prompt] = knn.distances([r.prompt])[r.prompt] if knn else math.nan  # alone
            pair = (r.prompt, r.target_new)
            if pair not in self._nll:
                try:
                    self._nll[pair] = target_nll_of(self.model, self.tok, [r.prompt], [r.target_new])[0]
                except RequestError as exc:
                    log.warning("no target NLL for %r: %s", r.prompt, exc)
                    self._nll[pair] = math.nan
        return [{"knn_distance": self._density[r.prompt], "target_nll": self._nll[(r.prompt, r.target_new)]}
                for r in requests]


ALPHA = 0.05  # the false discovery rate a table's verdicts are controlled at (Benjamini-Hochberg)
MIN_CLUSTERS = 5  # distinct edit prompts below which a bootstrap CI and p are not given


@dataclass(frozen=True)
class Correlation:
    """The Spearman correlation of one PAIRS entry over one editor's edits, with its bootstrap CI and p-values.

    ``lo``/``hi`` and ``p`` come from one cluster bootstrap (``spearman_ci``): the CI excludes 0 exactly
    when p < 1 - level. ``p_adjusted`` is p after the Benjamini-Hochberg step-up over the ``tests``
    correlations of the same table that test a predicted sign (``adjust``); the verdict follows it. A
    correlation on exactly the numbers of an earlier one (``same_as``: two editors that made identical
    edits) is the same test, counted once.
    """

    editor: str
    x: str
    y: str
    control: str | None  # partialled out of both ranks, or None
    rho: float
    lo: float  # bootstrap confidence interval of rho (level 95%, not adjusted)
    hi: float
    p: float  # two-sided, from the same bootstrap as the CI (not adjusted)
    points: int  # edits
    clusters: int  # distinct prompts
    expected_sign: int
    p_adjusted: float = math.nan  # Benjamini-Hochberg over the table's tests of a predicted sign
    tests: int = 0  # how many tests that adjustment was over (0: not adjusted yet)
    same_as: str | None = None  # the editor whose correlation this repeats on the same numbers (one test)

    @property
    def verdict(self) -> str:
        """"supports" / "contradicts" (the adjusted p < ALPHA, rho on / against the predicted side),
        "inconclusive", "no prediction" (the paper predicts no sign: not a test) or "undefined" (rho is NaN)."""
        if math.isnan(self.rho):
            return "undefined"
        if self.expected_sign == 0:
            return "no prediction"
        p = self.p_adjusted if self.tests else self.p
        if not math.isnan(p) and p < ALPHA:
            return "supports" if (self.rho > 0) == (self.expected_sign > 0) else "contradicts"
        return "inconclusive"


def adjust(corrs: Sequence[Correlation], same_data: Sequence[Any] | None = None) -> list[Correlation]:
    """``corrs`` with ``p_adjusted`` and ``tests`` set: the Benjamini-Hochberg false-discovery-rate step-up
    (``scipy.stats.false_discovery_control``) over the correlations that test a predicted sign and have a
    p-value; the others keep NaN (they are not tests). One call per table: its family is the table.

    ``same_data``: one key per correlation; correlations with equal keys computed the same statistic from
    the same numbers (e.g. two editors that made identical edits) and count as one test, with one adjusted
    p, and each repeat names the first in ``same_as``. None: every correlation is its own test.
    """
    from scipy import stats  # here, not at the top: scipy.stats costs about 0.8 s of the app's start
    keys = list(range(len(corrs))) if same_data is None else list(same_data)
    family = [i for i, c in enumerate(corrs) if c.expected_sign != 0 and not math.isnan(c.p)]
    first: dict[Any, int] = {}
    distinct = [i for i in family if first.setdefault(keys[i], i) == i]
    adjusted = stats.false_discovery_control([corrs[i].p for i in distinct], method="bh") if distinct else []
    q_of = {keys[i]: float(q) for i, q in zip(distinct, adjusted)}
    out = [dataclasses.replace(c, tests=len(distinct)) for c in corrs]
    for i in family:
        repeat = first[keys[i]] != i
        out[i] = dataclasses.replace(out[i], p_adjusted=q_of[keys[i]],
                                     same_as=corrs[first[keys[i]]].editor if repeat else None)
    return out


def how_many_tests(corrs: Sequence[Correlation]) -> str:
    """How many tests a hypothesis table holds, to follow "The table holds ": "5 tests (the rows with a predicted
    sign)", or, where editors' rows repeat another's numbers (``adjust``'s ``same_as``), e.g. "10 rows
    with a predicted sign, which are 5 tests: ft-l+sss's 5 rows repeat ft-l's numbers exactly (the same
    measurements, e.g. identical edits)"."""
    tests = max((c.tests for c in corrs), default=0)
    by_first: dict[str, dict[str, int]] = {}
    for c in corrs:
        if c.same_as:
            counts = by_first.setdefault(c.same_as, {})
            counts[c.editor] = counts.get(c.editor, 0) + 1
    if not by_first:
        return f"{tests} tests (the rows with a predicted sign)"
    repeats = sum(n for counts in by_first.values() for n in counts.values())

    def rows_of(counts: dict[str, int]) -> str:
        names = [f"{editor}'s {n} row{'s' if n > 1 else ''}" for editor, n in counts.items()]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

    parts = [f"{rows_of(counts)} repeat{'s' if sum(counts.values()) == 1 else ''} {first}'s numbers exactly"
             for first, counts in by_first.items()]
    return (f"{tests + repeats} rows with a predicted sign, which are {tests} tests: " + "; ".join(parts)
            + " (the same measurements, e.g. identical edits)")


def _data_key(x: str, y: str, control: str | None, *columns: np.ndarray) -> str:
    """A digest of a correlation's statistic and numbers: equal for two editors' identical measurements."""
    h = hashlib.sha256(f"{x}|{y}|{control}".encode())
    for column in columns:
        h.update(np.ascontiguousarray(column).tobytes() if column.dtype != object else repr(list(column)).encode())
    return h.hexdigest()


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray | None = None) -> float:
    """Spearman rho of x and y; with z, of their ranks after regressing each on the ranks of z.

    NaN when x or y is constant, or, with z, when z explains its ranks entirely: what is left then is
    floating-point noise (about 1e-15), which has no correlation worth reporting. One sample of
    ``spearman_rows``.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return float(spearman_rows(x[None], y[None], None if z is None else np.asarray(z, dtype=float)[None])[0])


def spearman_rows(x: np.ndarray, y: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
    """``partial_spearman`` of each row of x and y (and z): (rows, n) arrays -> (rows,) rho, NaN where undefined.

    The same statistic computed for many samples at once (a bootstrap's resamples): ranks by
    ``scipy.stats.rankdata`` along each row; with z, each rank row's least-squares residual on
    [1, ranks of z] (the residual on the mean alone where z's ranks are constant, as ``lstsq`` gives).
    """
    from scipy import stats  # here, not at the top: scipy.stats costs about 0.8 s of the app's start
    rx, ry = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
    if z is not None:
        rz = stats.rankdata(z, axis=1)
        dz = rz - rz.mean(1, keepdims=True)
        var = (dz * dz).sum(1, keepdims=True)
        safe = np.where(var > 0, var, 1.0)

        def residual(r: np.ndarray) -> np.ndarray:
            dr = r - r.mean(1, keepdims=True)
            return dr - np.where(var > 0, (dr * dz).sum(1, keepdims=True) / safe, 0.0) * dz
        rx, ry = residual(rx), residual(ry)
    flat = 1e-9 * x.shape[1]
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    undefined = (np.ptp(rx, axis=1) <= flat) | (np.ptp(ry, axis=1) <= flat)
    return np.where(undefined, np.nan, rho)


def spearman_ci(x: np.ndarray, y: np.ndarray, clusters: np.ndarray, control: np.ndarray | None = None,
                n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float, float]:
    """(Partial) Spearman rho, its CI (lo, hi) and a two-sided p-value, for paired arrays, from ONE bootstrap.

    The bootstrap resamples clusters (an edit prompt repeated under several seeds is one cluster) and
    gives the standard error ``se`` of Fisher's z = atanh(rho) (half the spread of the resamples' middle
    68%, which for a normal z is its standard deviation and is robust to resamples at rho = ±1). Then
    CI = tanh(z ± q se), q the normal quantile of ``level``, and p = 2 (1 - Phi(|z| / se)): the CI
    excludes 0 exactly when p < 1 - level,
    so a verdict never contradicts its p-value (a percentile CI beside an asymptotic t-test p did,
    e.g. CI [-0.286, -0.066] beside p = 0.077). rho needs four finite points, the CI and p also
    ``MIN_CLUSTERS`` distinct clusters and a bootstrap with some spread (a perfectly monotone sample has
    none); NaN where they cannot be had.
    """
    from scipy import stats  # here, not at the top: scipy.stats costs about 0.8 s of the app's start
    ok = np.isfinite(x) & np.isfinite(y) & (np.isfinite(control) if control is not None else True)
    x, y, clusters = x[ok], y[ok], clusters[ok]
    z = control[ok] if control is not None else None
    rho = partial_spearman(x, y, z) if len(x) > 3 else math.nan
    nan4 = (math.nan, math.nan, math.nan, math.nan)
    if math.isnan(rho):
        return nan4
    ids, inverse = np.unique(clusters, return_inverse=True)
    if len(ids) < MIN_CLUSTERS:  # a bootstrap over so few prompts says nothing about the spread
        return rho, *nan4[1:]
    members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
    draws = np.random.default_rng(seed).integers(0, len(ids), (n_boot, len(ids)))  # clusters of each resample
    if len({len(m) for m in members}) == 1:  # equal clusters: every resample as one row of a matrix
        idx = np.stack(members)[draws].reshape(n_boot, -1)  # (n_boot, points)
        values = spearman_rows(x[idx], y[idx], z[idx] if z is not None else None)
        boots = list(values[~np.isnan(values)])
    else:
        boots = []
        for row in draws:
            idx = np.concatenate([members[i] for i in row])
            value = partial_spearman(x[idx], y[idx], z[idx] if z is not None else None)
            if not math.isnan(value):
                boots.append(value)
    if len(boots) < 2:
        return rho, *nan4[1:]
    edge = 1 - 1e-6  # a resample with rho = ±1 would give an infinite z
    zb = np.arctanh(np.clip(boots, -edge, edge))
    # the spread of the middle 68% (robust to the few resamples at rho = ±1 that a small sample has);
    # for a normal z it is its standard deviation
    se = float(np.percentile(zb, 84.134) - np.percentile(zb, 15.866)) / 2
    if se == 0:  # every resample gives the same rho (e.g. a perfectly monotone sample): no spread, no p
        return rho, *nan4[1:]
    z0 = math.atanh(max(-edge, min(edge, rho)))
    q = float(stats.norm.ppf(0.5 + level / 2))
    p = float(2 * stats.norm.sf(abs(z0) / se))
    return rho, math.tanh(z0 - q * se), math.tanh(z0 + q * se), p


def correlations(frame, n_boot: int = 1000) -> list[Correlation]:
    """Spearman correlations of PAIRS per editor (pairs whose columns the frame lacks are left out), as one
    table: their p-values are adjusted together (``adjust``, Benjamini-Hochberg over its tests).

    ``frame`` (pandas) has one row per edit with columns editor, prompt, lambda_max_before,
    knn_distance, target_nll and locality (post-edit vs pre-edit agreement on neighbours).
    """
    frame = frame.assign(locality_drop=1.0 - frame["locality"])
    out, keys = [], []
    for editor, rows in frame.groupby("editor", sort=False):
        for x, y, control, sign in PAIRS:
            if any(c not in rows for c in (x, y, control) if c is not None):
                continue
            xs, ys, prompts = rows[x].to_numpy(float), rows[y].to_numpy(float), rows["prompt"].to_numpy()
            z = rows[control].to_numpy(float) if control else None
            rho, lo, hi, p = spearman_ci(xs, ys, prompts, z, n_boot)
            out.append(Correlation(editor, x, y, control, rho, lo, hi, p, len(rows), rows["prompt"].nunique(),
                                   sign))
            keys.append(_data_key(x, y, control, xs, ys, prompts, *([] if z is None else [z])))
    return adjust(out, keys)

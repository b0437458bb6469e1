"""2-D projections of sentence embeddings before and after an edit: PCA, UMAP or t-SNE.

The before and after points are fitted jointly (one fit over both sets), so both live in the same
plane and an arrow from a sentence's before point to its after point shows how the edit moved it.
PCA is the default: deterministic, and linear, so a sentence the edit did not move stays put.
UMAP and t-SNE show local neighbourhoods better but distort distances; with fewer than
``MIN_POINTS`` sentences (or distinct embeddings) they fall back to PCA and say so.

Degenerate input has a defined answer, never NaN and never a crash: rows that are the same point
(bitwise, or closer than ``SAME_POINT_RTOL`` of the cloud's radius) get the same 2-D coordinates by
every method (UMAP and t-SNE are fitted on the distinct rows only), so a sentence that did not move
in the full space is drawn without an arrow (``Projection.moved`` is False for it); all rows one
point: every sentence at the origin, with a message; NaN, infinite or absurdly large values
(above ``MAX_ABS_VALUE``): ``ProjectionError``.

Example:
    >>> proj = project(before, after, method="pca")       # (n, d) each
    >>> proj.before.shape, proj.after.shape
    ((40, 2), (40, 2))
    >>> warm_up_umap()    # pay numba's compile cost once, e.g. in a background thread at start-up
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import SSSError

log = logging.getLogger(__name__)

Method = Literal["pca", "umap", "tsne"]
METHODS: tuple[str, ...] = ("pca", "umap", "tsne")
METHOD_LABELS = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
MIN_POINTS = 15  # fewer sentences (or distinct embeddings) than this: UMAP / t-SNE fall back to PCA
SAME_POINT_RTOL = 1e-6  # two rows closer than this fraction of the cloud's radius are one point
MAX_ABS_VALUE = 1e150  # larger values: squared distances overflow float64; refused (ProjectionError)


class ProjectionError(SSSError, ValueError):
    """Embeddings that cannot be projected (NaN or infinite values); the message names the sentence."""


@dataclass(frozen=True)
class Projection:
    """2-D coordinates of each sentence before and after, from one joint fit."""

    before: np.ndarray  # (n, 2)
    after: np.ndarray  # (n, 2)
    method: str  # the method actually used
    requested: str  # the method asked for
    message: str | None = None  # why the method differs from the one asked for, when it does
    explained_variance: tuple[float, ...] | None = None  # PCA: fraction of variance per axis
    seconds: float = 0.0
    # (n,) bool: the sentence moved in the full space; False: its after point is its before point
    # (bitwise, or within SAME_POINT_RTOL), drawn at the same 2-D coordinates, so without an arrow
    moved: np.ndarray | None = None


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
    """Project (N, d) points on their first two principal axes. Returns (N, 2) and the variance ratios.

    Deterministic: each axis's sign is fixed so that its largest-magnitude loading is positive.
    Fewer than two informative axes (N < 3, or identical points) give zero columns.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    out = np.zeros((n, 2))
    if n < 2:
        return out, (0.0, 0.0)
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)  # vt: (k, d)
    k = min(2, vt.shape[0])
    for j in range(k):
        axis = vt[j]
        if axis[np.argmax(np.abs(axis))] < 0:
            axis = -axis
        out[:, j] = centred @ axis
    total = float((s ** 2).sum())
    ratios = tuple(float(s[j] ** 2 / total) if total > 0 else 0.0 for j in range(k)) + (0.0,) * (2 - k)
    return out, ratios


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    import umap  # imported here: importing numba costs seconds

    n_neighbors = max(2, min(15, x.shape[0] - 1))
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed, init="pca",
                        metric="euclidean", n_jobs=1)
    with warnings.catch_warnings():  # "n_jobs overridden by setting random_state": that is the intent
        warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
        return reducer.fit_transform(x)


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = max(2.0, min(30.0, (x.shape[0] - 1) / 3))
    # One OpenMP thread: on a busy 2-core machine more threads spin and make a 0.2 s fit take 10 s.
    with threadpool_limits(1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                    max_iter=500).fit_transform(x)


def _same_points(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group the rows of ``x`` (N, d) that are one point: bitwise equal, or (transitively) closer than
    ``SAME_POINT_RTOL`` times the largest distance of a row from the mean.

    Returns ``(first, label)``: the index in ``x`` of the first row of each group, and the group of
    every row (N,), so ``x[first][label]`` stands each row in for its group's first row.
    """
    if x.shape[0] == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    _, first, label = np.unique(x, axis=0, return_index=True, return_inverse=True)
    label = np.asarray(label).reshape(-1)
    radius = float(np.linalg.norm(x - x.mean(0), axis=1).max()) if x.shape[1] else 0.0
    if len(first) > 1 and radius > 0:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components
        from scipy.spatial import cKDTree

        pairs = cKDTree(x[first]).query_pairs(SAME_POINT_RTOL * radius, output_type="ndarray")
        if len(pairs):
            m = len(first)
            graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(m, m))
            _, merged = connected_components(graph, directed=False)
            label = merged[label]
    _, first, label = np.unique(label, return_index=True, return_inverse=True)
    return first, np.asarray(label).reshape(-1)


def _check_finite(x: np.ndarray, n: int) -> None:
    """Raise ProjectionError naming the first sentence of the joint (2n, d) ``x`` with a NaN or infinity,
    or with a value above ``MAX_ABS_VALUE`` in magnitude."""
    for bad, what in ((~np.isfinite(x).all(axis=1), "NaN or infinite values"),
                      ((np.abs(np.nan_to_num(x)) > MAX_ABS_VALUE).any(axis=1), f"values above {MAX_ABS_VALUE:.0e}")):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            which, k = ("before", i) if i < n else ("after", i - n)
            raise ProjectionError(f"the embedding of sentence {k} ({which} the edit) holds {what}, so nothing "
                                  "can be projected; the model's hidden states overflowed or the edit broke the model")


def project(before: np.ndarray, after: np.ndarray | None = None, method: Method = "pca",
            seed: int = 0) -> Projection:
    """Fit ``method`` once over the before and after points together and split the result.

    before, after: (n, d) embeddings of the same n sentences (``after=None`` projects one set).
    Rows that are one point (see ``SAME_POINT_RTOL``) get the same coordinates; ``moved`` says
    which sentences moved. UMAP and t-SNE are fitted on the distinct rows; with fewer than
    ``MIN_POINTS`` sentences or distinct rows, or when they give no finite layout, the result is
    PCA and ``message`` says why. All rows one point: every sentence at (0, 0), with a message.

    Raises:
        ValueError: an unknown ``method``, or ``before`` and ``after`` not of one (n, d) shape.
        ProjectionError: (an SSSError and ValueError) NaN or infinite values in the embeddings, or
            values above ``MAX_ABS_VALUE`` in magnitude; the message names the first such sentence.
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    before = np.asarray(before, dtype=np.float64)
    after = before if after is None else np.asarray(after, dtype=np.float64)
    if before.shape != after.shape or before.ndim != 2:
        raise ValueError(f"before {before.shape} and after {after.shape} must be the same (n, d) shape")
    n = before.shape[0]
    start = time.perf_counter()
    joint = np.concatenate([before, after])  # (2n, d)
    _check_finite(joint, n)
    first, label = _same_points(joint)
    moved = label[:n] != label[n:]
    distinct = len(first)
    label_name = METHOD_LABELS[method]
    used, message, ratios = method, None, None
    if n and distinct == 1:
        used = "pca"
        message = (f"all {n} sentences have one and the same embedding" + (" before and after" if n > 1 else "")
                   + "; there is nothing to lay out, so they are drawn at one point")
    elif method != "pca" and n < MIN_POINTS:
        used = "pca"
        message = (f"{label_name} needs at least {MIN_POINTS} sentences to say anything about "
                   f"neighbourhoods; there are {n}, so this is PCA")
    elif method != "pca" and distinct < MIN_POINTS:
        used = "pca"
        message = (f"{label_name} needs at least {MIN_POINTS} distinct points to say anything about "
                   f"neighbourhoods; these {n} sentences before and after have {distinct} distinct "
                   "embeddings, so this is PCA")
    coords = None
    if used != "pca":
        # fit on the distinct rows, centred and scaled to radius 1 (no overflow, no vanishing distances)
        x = joint[first] - joint[first].mean(0)
        x = (x / np.linalg.norm(x, axis=1).max()).astype(np.float32)
        if x.shape[1] < 2:  # one dimension: a zero second one, so their PCA initialisation has two axes
            x = np.hstack([x, np.zeros((x.shape[0], 2 - x.shape[1]), np.float32)])
        fitted = np.asarray(_umap(x, seed) if used == "umap" else _tsne(x, seed), dtype=np.float64)
        if np.isfinite(fitted).all():
            coords = fitted[label]
        else:
            message = f"{label_name} gave no finite layout for these points, so this is PCA"
            used = "pca"
    if coords is None:
        coords, ratios = pca_2d(joint)
        coords = coords[first][label]  # one point, one place: no arrow for a sentence that did not move
    seconds = time.perf_counter() - start
    log.debug("%s projection of %d points (%d distinct) in %.3fs", used, 2 * n, distinct, seconds)
    return Projection(coords[:n], coords[n:], used, method, message, ratios, seconds, moved)


def warm_up_umap(seed: int = 0) -> float:
    """Run UMAP once on a small random set so numba compiles its kernels now. Returns seconds.

    The first UMAP fit in a process costs 10-15 s of compilation on a small CPU; call this once at
    start-up, off the user's path (e.g. in a background thread), and later fits take well under 1 s.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2 * MIN_POINTS, 8)).astype(np.float32)
    project(x, x + 0.01, method="umap", seed=seed)
    seconds = time.perf_counter() - start
    log.info("UMAP warm-up took %.1fs", seconds)
    return seconds

"""2-D projections of sentence embeddings before and after an edit: PCA, UMAP or t-SNE.

The before and after points are fitted jointly (one fit over both sets), so both live in the same
plane and an arrow from a sentence's before point to its after point shows how the edit moved it.
PCA is the default: deterministic, and linear, so a sentence the edit did not move stays put.
UMAP and t-SNE show local neighbourhoods better but distort distances; with fewer than
``MIN_POINTS`` sentences they fall back to PCA and say so.

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

log = logging.getLogger(__name__)

Method = Literal["pca", "umap", "tsne"]
METHODS: tuple[str, ...] = ("pca", "umap", "tsne")
METHOD_LABELS = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
MIN_POINTS = 15  # fewer sentences than this: UMAP / t-SNE fall back to PCA


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


def project(before: np.ndarray, after: np.ndarray | None = None, method: Method = "pca",
            seed: int = 0) -> Projection:
    """Fit ``method`` once over the before and after points together and split the result.

    before, after: (n, d) embeddings of the same n sentences (``after=None`` projects one set).
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    before = np.asarray(before, dtype=np.float32)
    after = before if after is None else np.asarray(after, dtype=np.float32)
    if before.shape != after.shape or before.ndim != 2:
        raise ValueError(f"before {before.shape} and after {after.shape} must be the same (n, d) shape")
    n = before.shape[0]
    start = time.perf_counter()
    joint = np.concatenate([before, after])  # (2n, d)
    used, message, ratios = method, None, None
    if method != "pca" and n < MIN_POINTS:
        used = "pca"
        message = (f"{METHOD_LABELS[method]} needs at least {MIN_POINTS} sentences to say anything about "
                   f"neighbourhoods; there are {n}, so this is PCA")
    if used == "pca":
        coords, ratios = pca_2d(joint)
    elif used == "umap":
        coords = _umap(joint, seed)
    else:
        coords = _tsne(joint, seed)
    coords = np.asarray(coords, dtype=np.float64)
    seconds = time.perf_counter() - start
    log.debug("%s projection of %d points in %.3fs", used, 2 * n, seconds)
    return Projection(coords[:n], coords[n:], used, method, message, ratios, seconds)


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

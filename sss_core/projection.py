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

Parameters (``project``'s keywords; defaults reproduce the fits made before they could be chosen):
UMAP's ``n_neighbors`` (whole number in ``N_NEIGHBORS_RANGE``, default 15) and ``min_dist`` (in
``MIN_DIST_RANGE``, default 0.1, umap-learn's own), t-SNE's ``perplexity`` (in ``PERPLEXITY_RANGE``;
default None: ``auto_perplexity``, (m - 1) / 3 for m distinct points, kept within 2..30). A value the
points cannot take (UMAP needs n_neighbors < m, t-SNE perplexity < m) is lowered to m - 1 and the
message says so; ``Projection.parameters`` holds the values the fit actually used. Out of range:
``ProjectionError`` naming the parameter and its range.

Example:
    >>> proj = project(before, after, method="pca")       # (n, d) each
    >>> proj.before.shape, proj.after.shape
    ((40, 2), (40, 2))
    >>> project(before, after, method="umap", n_neighbors=30, min_dist=0.5).parameters
    {'n_neighbors': 30, 'min_dist': 0.5}
    >>> warm_up_umap()    # pay numba's compile cost once, e.g. in a background thread at start-up
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
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
DEFAULT_N_NEIGHBORS = 15  # UMAP's n_neighbors when none is given (umap-learn's default)
DEFAULT_MIN_DIST = 0.1  # UMAP's min_dist when none is given (umap-learn's default)
N_NEIGHBORS_RANGE = (2, 200)  # UMAP n_neighbors: whole numbers in this range (inclusive)
MIN_DIST_RANGE = (0.0, 1.0)  # UMAP min_dist (inclusive; umap-learn needs min_dist <= spread = 1)
PERPLEXITY_RANGE = (2.0, 100.0)  # t-SNE perplexity (inclusive)
PARAMETERS = {"n_neighbors": "umap", "min_dist": "umap", "perplexity": "tsne"}  # parameter -> its method


class ProjectionError(SSSError, ValueError):
    """Embeddings that cannot be projected (NaN or infinite values; the message names the sentence), or a
    projection parameter out of its range (the message names the parameter and the range)."""


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
    # the method's parameters the fit used ({"n_neighbors": 15, "min_dist": 0.1}, {"perplexity": 9.67};
    # {} for PCA, also when UMAP or t-SNE fell back to it), and those asked for (None: the default)
    parameters: dict = field(default_factory=dict)
    asked: dict = field(default_factory=dict)

    def parameters_text(self) -> str:
        """The parameters used, for a caption or an axis title: "n_neighbors = 15, min_dist = 0.1"; "" for PCA."""
        return ", ".join(f"{k} = {v:g}" for k, v in self.parameters.items())


def check_parameters(n_neighbors: int = DEFAULT_N_NEIGHBORS, min_dist: float = DEFAULT_MIN_DIST,
                     perplexity: float | None = None) -> None:
    """Raise ProjectionError when a parameter is out of its range (``N_NEIGHBORS_RANGE``, ``MIN_DIST_RANGE``,
    ``PERPLEXITY_RANGE``) or not a number; the message names the parameter, the value and the range."""
    lo, hi = N_NEIGHBORS_RANGE
    if isinstance(n_neighbors, bool) or not float(n_neighbors).is_integer() or not lo <= n_neighbors <= hi:
        raise ProjectionError(f"UMAP n_neighbors must be a whole number from {lo} to {hi}; got {n_neighbors!r}")
    for name, value, (lo, hi), what in (("min_dist", min_dist, MIN_DIST_RANGE, "UMAP"),
                                        ("perplexity", perplexity, PERPLEXITY_RANGE, "t-SNE")):
        if value is None and name == "perplexity":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not lo <= value <= hi:
            raise ProjectionError(f"{what} {name} must be a number from {lo:g} to {hi:g}; got {value!r}")


def parse_parameter(name: str, text: str) -> int | float:
    """The value of projection parameter ``name`` (a key of ``PARAMETERS``) written as ``text`` (e.g. in a
    link). Raises ProjectionError for an unknown name, text that is not a number, or a value out of range."""
    if name not in PARAMETERS:
        raise ProjectionError(f"{name!r} is not a projection parameter (choose from {', '.join(PARAMETERS)})")
    try:
        value = float(text)
    except ValueError:
        raise ProjectionError(f"{name} must be a number; got {text!r}") from None
    if name == "n_neighbors" and value.is_integer():
        value = int(value)
    check_parameters(**{name: value})
    return value


def auto_perplexity(m: int) -> float:
    """t-SNE's perplexity when none is asked for, for ``m`` distinct points: (m - 1) / 3, kept within 2..30."""
    return max(2.0, min(30.0, (m - 1) / 3))


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


def _umap(x: np.ndarray, seed: int, n_neighbors: int, min_dist: float) -> np.ndarray:
    """UMAP of the (m, d) distinct points ``x``; ``n_neighbors`` below m (the caller lowers it)."""
    import umap  # imported here: importing numba costs seconds

    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed,
                        init="pca", metric="euclidean", n_jobs=1)
    with warnings.catch_warnings():  # "n_jobs overridden by setting random_state": that is the intent
        warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
        return reducer.fit_transform(x)


def _tsne(x: np.ndarray, seed: int, perplexity: float) -> np.ndarray:
    """t-SNE of the (m, d) distinct points ``x``; ``perplexity`` below m (the caller lowers it)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    # One OpenMP thread: on a busy 2-core machine more threads spin and make a 0.2 s fit take 10 s.
    with threadpool_limits(1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                    max_iter=500).fit_transform(x)


def _parameters_for(method: str, m: int, asked: dict) -> tuple[dict, str | None]:
    """The parameters a ``method`` fit of ``m`` distinct points uses, given those ``asked`` for (None: the
    default), and a note when one was lowered because the points cannot take it."""
    if method == "umap":
        want = DEFAULT_N_NEIGHBORS if asked["n_neighbors"] is None else int(asked["n_neighbors"])
        used = {"n_neighbors": max(2, min(want, m - 1)),
                "min_dist": DEFAULT_MIN_DIST if asked["min_dist"] is None else float(asked["min_dist"])}
        lowered = asked["n_neighbors"] is not None and used["n_neighbors"] < want
        return used, (f"n_neighbors {want} was asked for; {m} distinct points allow at most {m - 1}, so "
                      f"{used['n_neighbors']} is used" if lowered else None)
    if method == "tsne":
        if asked["perplexity"] is None:
            return {"perplexity": auto_perplexity(m)}, None
        want = float(asked["perplexity"])
        used = {"perplexity": min(want, float(m - 1))}
        return used, (f"perplexity {want:g} was asked for; {m} distinct points allow less than {m}, so "
                      f"{used['perplexity']:g} is used" if used["perplexity"] < want else None)
    return {}, None


def _fit_nonlinear(joint: np.ndarray, first: np.ndarray, method: str, seed: int,
                   asked: dict) -> tuple[np.ndarray, dict, str | None]:
    """UMAP or t-SNE of the distinct rows ``joint[first]`` ((m, d)), centred and scaled to radius 1 (no
    overflow, no vanishing distances). Returns the (m, 2) layout, the parameters used and a note."""
    x = joint[first] - joint[first].mean(0)
    x = (x / np.linalg.norm(x, axis=1).max()).astype(np.float32)
    if x.shape[1] < 2:  # one dimension: a zero second one, so their PCA initialisation has two axes
        x = np.hstack([x, np.zeros((x.shape[0], 2 - x.shape[1]), np.float32)])
    used, note = _parameters_for(method, x.shape[0], asked)
    fitted = _umap(x, seed, **used) if method == "umap" else _tsne(x, seed, **used)
    return np.asarray(fitted, dtype=np.float64), used, note


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


def project(before: np.ndarray, after: np.ndarray | None = None, method: Method = "pca", seed: int = 0,
            n_neighbors: int | None = None, min_dist: float | None = None,
            perplexity: float | None = None) -> Projection:
    """Fit ``method`` once over the before and after points together and split the result.

    before, after: (n, d) embeddings of the same n sentences (``after=None`` projects one set).
    Rows that are one point (see ``SAME_POINT_RTOL``) get the same coordinates; ``moved`` says
    which sentences moved. UMAP and t-SNE are fitted on the distinct rows; with fewer than
    ``MIN_POINTS`` sentences or distinct rows, or when they give no finite layout, the result is
    PCA and ``message`` says why. All rows one point: every sentence at (0, 0), with a message.

    n_neighbors, min_dist: UMAP's (None: ``DEFAULT_N_NEIGHBORS``, ``DEFAULT_MIN_DIST``); perplexity:
    t-SNE's (None: ``auto_perplexity``). Each is checked whatever the method (``check_parameters``);
    a method ignores the others'. ``parameters`` holds the values used (n_neighbors and perplexity
    lowered to m - 1 for m distinct points when asked above, with a message).

    Raises:
        ValueError: an unknown ``method``, or ``before`` and ``after`` not of one (n, d) shape.
        ProjectionError: (an SSSError and ValueError) NaN or infinite values in the embeddings, or
            values above ``MAX_ABS_VALUE`` in magnitude (the message names the first such sentence);
            a parameter out of its range (``N_NEIGHBORS_RANGE``, ``MIN_DIST_RANGE``, ``PERPLEXITY_RANGE``).
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    asked = {"n_neighbors": n_neighbors, "min_dist": min_dist, "perplexity": perplexity}
    check_parameters(**{k: v for k, v in asked.items() if v is not None})
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
    used, message = method, _fallback_message(method, n, distinct)
    if message is not None:
        used = "pca"
    coords, ratios, parameters = None, None, {}
    if used != "pca":
        fitted, parameters, message = _fit_nonlinear(joint, first, used, seed, asked)
        if np.isfinite(fitted).all():
            coords = fitted[label]
        else:
            message, used, parameters = (f"{METHOD_LABELS[method]} gave no finite layout for these points, "
                                         "so this is PCA"), "pca", {}
    if coords is None:
        coords, ratios = pca_2d(joint)
        coords = coords[first][label]  # one point, one place: no arrow for a sentence that did not move
    seconds = time.perf_counter() - start
    log.debug("%s projection of %d points (%d distinct) in %.3fs", used, 2 * n, distinct, seconds)
    return Projection(coords[:n], coords[n:], used, method, message, ratios, seconds, moved, parameters,
                      {k: v for k, v in asked.items() if PARAMETERS[k] == method})


def _fallback_message(method: str, n: int, distinct: int) -> str | None:
    """Why ``method`` cannot lay out ``n`` sentences with ``distinct`` distinct rows (PCA is drawn
    instead), or None when it can."""
    name = METHOD_LABELS[method]
    if n and distinct == 1:
        return (f"all {n} sentences have one and the same embedding" + (" before and after" if n > 1 else "")
                + "; there is nothing to lay out, so they are drawn at one point")
    if method != "pca" and n < MIN_POINTS:
        return (f"{name} needs at least {MIN_POINTS} sentences to say anything about "
                f"neighbourhoods; there are {n}, so this is PCA")
    if method != "pca" and distinct < MIN_POINTS:
        return (f"{name} needs at least {MIN_POINTS} distinct points to say anything about "
                f"neighbourhoods; these {n} sentences before and after have {distinct} distinct "
                "embeddings, so this is PCA")
    return None


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

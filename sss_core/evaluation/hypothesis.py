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
lambda_max ~ knn_distance < 0. Confidence intervals come from a bootstrap over edit prompts
(a prompt edited under several seeds is resampled as one cluster).

Example:
    >>> dens = knn_density(lm.model, lm.tok, edit_prompts, reference_prompts, k=10)
    >>> correlations(frame.assign(knn_distance=frame.prompt.map(dens)))
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn

from ..embeddings import Pooling, embed_prompts

log = logging.getLogger(__name__)

# (x, y, sign the paper's hypothesis predicts)
PAIRS = (("lambda_max_before", "locality_drop", +1), ("knn_distance", "locality_drop", -1),
         ("lambda_max_before", "knn_distance", -1))


def knn_density(model: nn.Module, tok, prompts: Sequence[str], reference: Sequence[str],
                k: int = 10, pooling: Pooling = "mean") -> dict[str, float]:
    """Mean distance from each prompt to its k nearest reference prompts (itself excluded).

    With fewer than k + 1 reference prompts, k shrinks to what there is.
    """
    prompts = list(dict.fromkeys(prompts))
    reference = list(dict.fromkeys(reference))
    k = min(k, len(reference) - 1)
    if k < 1:
        raise ValueError(f"the reference set has {len(reference)} prompts; the density needs at least 2")
    q = torch.from_numpy(embed_prompts(model, tok, prompts, pooling))  # (queries, d_model)
    r = torch.from_numpy(embed_prompts(model, tok, reference, pooling))  # (reference, d_model)
    dist = torch.cdist(q, r)  # (queries, reference)
    where = {p: i for i, p in enumerate(reference)}
    for i, p in enumerate(prompts):
        if p in where:
            dist[i, where[p]] = math.inf
    return dict(zip(prompts, dist.topk(k, dim=1, largest=False).values.mean(1).tolist()))


@dataclass(frozen=True)
class Correlation:
    editor: str
    x: str
    y: str
    rho: float
    lo: float  # bootstrap confidence interval of rho
    hi: float
    p: float  # scipy's p-value (treats points as independent)
    points: int  # edits
    clusters: int  # distinct prompts
    expected_sign: int

    @property
    def verdict(self) -> str:
        if math.isnan(self.rho):
            return "undefined"
        if self.lo > 0 or self.hi < 0:
            agrees = (self.lo > 0) == (self.expected_sign > 0)
            return "supports" if agrees else "contradicts"
        return "inconclusive"


def spearman_ci(x: np.ndarray, y: np.ndarray, clusters: np.ndarray, n_boot: int = 1000,
                level: float = 0.95, seed: int = 0) -> tuple[float, float, float, float]:
    """Spearman rho, its cluster-bootstrap CI (lo, hi) and p-value, for paired arrays."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, clusters = x[ok], y[ok], clusters[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan, math.nan, math.nan
    rho, p = stats.spearmanr(x, y)
    ids, inverse = np.unique(clusters, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(ids), len(ids))])
        if np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            boots.append(stats.spearmanr(x[idx], y[idx])[0])
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(boots, [tail, 100 - tail]) if boots else (math.nan, math.nan)
    return float(rho), float(lo), float(hi), float(p)


def correlations(frame, n_boot: int = 1000) -> list[Correlation]:
    """Spearman correlations of PAIRS per editor.

    ``frame`` (pandas) has one row per edit with columns editor, prompt, lambda_max_before,
    knn_distance and locality (post-edit vs pre-edit agreement on neighbours).
    """
    frame = frame.assign(locality_drop=1.0 - frame["locality"])
    out = []
    for editor, rows in frame.groupby("editor", sort=False):
        for x, y, sign in PAIRS:
            rho, lo, hi, p = spearman_ci(rows[x].to_numpy(float), rows[y].to_numpy(float),
                                         rows["prompt"].to_numpy(), n_boot)
            out.append(Correlation(editor, x, y, rho, lo, hi, p, len(rows), rows["prompt"].nunique(), sign))
    return out

"""Sparsity per sentence: how robust and how crowded each sentence around an edit is, before and after it.

The paper's hypothesis: an edit whose embedding lies in a semantically sparse region damages its
neighbours less. For every sentence of an edit's neighbourhood (edit prompt, paraphrases, locality
probes, background sentences) this module gives two measures of sparsity and one of damage:

- ``lambda_max`` (paper Eq. 9, ``sss.sss_from_hidden``): (1/m) * sum_i ||dJ/dh_i||^2 with J the
  NLL of the sentence's *answer* and m the number of tokens read (sentence + answer); units:
  squared nats per unit of hidden state (h is ``hidden_states[-1]``, after the final norm).
  The answer is the unedited model's greedy top answer: its most likely next token after the
  sentence, exactly that token id (no re-tokenised text). Before and after the edit lambda_max is
  taken against that same answer, so the two values measure one function J on two models.
  Since h feeds only the output layer, lambda_max of a one-token answer equals
  ||W_out^T (softmax - onehot(answer))||^2 / m: a small value also means a confident answer.
  For the edit prompt, ``EditLambda`` adds lambda_max against the new target and against the old.
- the kNN distance: mean distance from the sentence's embedding to its k nearest neighbours among
  the other sentences of the same set, in the full embedding space (not the 2-D projection),
  before (among the before-embeddings) and after (among the after-embeddings); cosine distance
  (1 - cos) or euclidean. Large = a sparse neighbourhood. The neighbours are found by
  ``embeddings.nearest_neighbours``.
- the probability of the answer before and after (its change is the damage, for a sentence whose
  answer should not change).

Example:
    >>> run = analyse_edit(lm, "ft-l+sss", {}, case, background_sentences())
    >>> [(s.group, s.lambda_max_before, s.knn_distance_before) for s in run.sparsity][:2]
    >>> knn_distances(run.embeddings["last"].before, k=5, metric="euclidean")   # (n,)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .embeddings import nearest_neighbours
from .errors import RequestError
from .locks import reads_model
from .sss import forward_pairs, sss_from_hidden
from .text import max_positions, pad_id, pair_batch, text_ids

KNN_METRICS: tuple[str, ...] = ("cosine", "euclidean")
LAMBDA_UNIT = "nats² per unit of hidden state"  # lambda_max = mean over tokens of ||dJ/dh||², J in nats
# What each field of the edit prompt's lambda_max is, in words (the app, the CLI and the page use these).
EDIT_LAMBDA_LABELS = {
    "new_before": "lambda_max before, against the new target",
    "new_after": "lambda_max after, against the new target",
    "old_before": "lambda_max before, against the old target",
    "old_after": "lambda_max after, against the old target",
}


@dataclass(frozen=True)
class KnnSettings:
    """How the kNN distance is measured: ``k`` neighbours, ``metric`` and the sentence embedding's ``pooling``.

    ``pooling`` is a key of ``EditRun.embeddings`` ("last": the last token's state, what the next
    token is predicted from, the projection's default; "mean": over the sentence's tokens).
    """

    k: int = 5
    metric: str = "cosine"  # "cosine" (1 - cos) or "euclidean"
    pooling: str = "last"

    def validate(self) -> KnnSettings:
        """Return self; RequestError for k < 1 or an unknown metric."""
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise RequestError(f"k (neighbours of the kNN distance) must be a whole number >= 1, got {self.k!r}")
        if self.metric not in KNN_METRICS:
            raise RequestError(f"the kNN metric must be one of {', '.join(KNN_METRICS)}, not {self.metric!r}")
        return self


def knn_distances(points: np.ndarray, k: int = 5, metric: str = "cosine") -> np.ndarray:
    """Mean distance from each point to its ``k`` nearest other points, in the full space. (n, d) -> (n,).

    With fewer than k + 1 points, k shrinks to n - 1; a set of fewer than 2 points gives NaN
    (no neighbour). ``metric``: "cosine" (1 - cosine similarity) or "euclidean". Raises
    RequestError for a bad k or metric (see ``KnnSettings.validate``).
    """
    KnnSettings(k, metric).validate()
    n = len(points)
    out = np.full(n, math.nan)
    for i in range(n if n >= 2 else 0):
        found = nearest_neighbours(points, i, k, metric)  # type: ignore[arg-type]
        out[i] = float(np.mean([d for _, d in found]))
    return out


def answer_rows(tok, sentences: Sequence[str], answer_ids: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """(sentence ids, [answer id]) per sentence: each sentence as the model reads it, then one answer token.

    The sentence ids are ``text.text_ids(tok, sentence)`` (no EOS a post-processor appends), the
    ids ``embeddings.sentence_states`` predicted the answer from. Raises RequestError for a
    sentence holding a special token of ``tok`` (``text.check_plain``).
    """
    return [(text_ids(tok, s), [int(a)]) for s, a in zip(sentences, answer_ids)]


@reads_model
def lambda_and_probability(model: nn.Module, tok, rows: Sequence[tuple[Sequence[int], Sequence[int]]],
                           batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """lambda_max (paper Eq. 9, mean reduction) and P(answer | prompt) of each (prompt ids, answer ids) row.

    Batched: one forward (with the graph to ``hidden_states[-1]``) and one gradient per
    ``batch_size`` rows, with ``sss.forward_pairs`` and ``sss.sss_from_hidden`` (what
    ``sss.lambda_max`` runs), so a row's value is the one ``lambda_max`` gives for the same ids
    (up to the last bits that padding changes). P(answer) is the product of its tokens'
    teacher-forced probabilities. Returns two float64 arrays (rows,). Raises RequestError when a
    row is longer than the model's context.
    """
    if not rows:
        return np.zeros(0), np.zeros(0)
    limit = max_positions(model)
    width = max(len(p) + len(a) for p, a in rows)
    if limit is not None and width > limit:
        raise RequestError(f"a sentence with its answer is {width} tokens but the model reads at most {limit}: "
                           "shorten it")
    device = model.get_input_embeddings().weight.device
    lam, prob = [], []
    for start in range(0, len(rows), batch_size):
        batch = pair_batch(rows[start:start + batch_size], pad_id(tok), device)
        with torch.enable_grad():
            nll, hidden = forward_pairs(model, batch)  # (batch,) mean NLL per answer token, (batch, tokens, d)
            lam.append(sss_from_hidden(nll, hidden, batch.attention_mask).detach().double().cpu())
        n_answer = batch.predict_mask.sum(1).double().cpu()  # (batch,)
        prob.append(torch.exp(-nll.detach().double().cpu() * n_answer))
    return torch.cat(lam).numpy(), torch.cat(prob).numpy()


@dataclass(frozen=True)
class SentenceSparsity:
    """One sentence of an edit's neighbourhood: its sparsity before and after the edit, and the damage.

    lambda_max is against ``answer`` (the unedited model's top next token) on both models, in
    ``LAMBDA_UNIT``; the kNN distance is in the unit of ``knn`` (metric, k and pooling).
    """

    sentence: str
    group: str  # probe group ("rewrite", "paraphrase", "neighbour", ...) or "background"
    answer: str  # the unedited model's most likely next token, as text
    answer_after: str  # the edited model's most likely next token, as text
    p_answer_before: float  # P(answer | sentence), unedited model
    p_answer_after: float  # P(answer | sentence), edited model
    lambda_max_before: float
    lambda_max_after: float
    knn_distance_before: float  # mean distance to the k nearest other sentences, before-embeddings
    knn_distance_after: float  # ... among the after-embeddings
    moved: float  # euclidean distance the sentence's embedding moved in the full space
    knn: KnnSettings = KnnSettings()

    @property
    def delta_p_answer(self) -> float:
        """P(answer) after minus before: negative where the edit took probability from the old answer."""
        return self.p_answer_after - self.p_answer_before

    def as_dict(self) -> dict[str, Any]:
        """The record as a flat dict (the kNN settings as ``knn_k``, ``knn_metric``, ``knn_pooling``)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "knn"}
        d.update(delta_p_answer=self.delta_p_answer, knn_k=self.knn.k, knn_metric=self.knn.metric,
                 knn_pooling=self.knn.pooling)
        return d

    def probe_fields(self) -> dict[str, float]:
        """The four per-probe fields of ``edit --json``: lambda_max and kNN distance, before and after."""
        return {"lambda_max_before": self.lambda_max_before, "lambda_max_after": self.lambda_max_after,
                "knn_distance_before": self.knn_distance_before, "knn_distance_after": self.knn_distance_after}


@dataclass(frozen=True)
class EditLambda:
    """lambda_max of the edit prompt against the new target and against the old one, before and after.

    Against the new target it is a function of that target's NLL: an edit that makes the target
    likely drives it down whatever the SSS term does. Against the old target it rises as the old
    answer loses probability. Labels in words: ``EDIT_LAMBDA_LABELS``.
    """

    new_target: str
    old_target: str | None  # None when the old answer is unknown (then the old_* values are NaN)
    new_before: float
    new_after: float
    old_before: float = math.nan
    old_after: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        """Flat dict with explicit keys, e.g. ``lambda_max_before_against_new_target``."""
        return {"new_target": self.new_target, "old_target": self.old_target,
                "lambda_max_before_against_new_target": self.new_before,
                "lambda_max_after_against_new_target": self.new_after,
                "lambda_max_before_against_old_target": self.old_before,
                "lambda_max_after_against_old_target": self.old_after}


def sentence_sparsity(sentences: Sequence[str], groups: Sequence[str], answers: Sequence[str],
                      answers_after: Sequence[str], before: tuple[np.ndarray, np.ndarray],
                      after: tuple[np.ndarray, np.ndarray], emb_before: np.ndarray, emb_after: np.ndarray,
                      knn: KnnSettings = KnnSettings()) -> tuple[SentenceSparsity, ...]:
    """Assemble one ``SentenceSparsity`` per sentence from measurements already made.

    ``before`` / ``after``: (lambda_max (n,), P(answer) (n,)) from ``lambda_and_probability`` on
    the unedited and the edited model; ``emb_before`` / ``emb_after``: (n, d_model) embeddings of
    the same sentences in the pooling ``knn.pooling``. Raises RequestError for bad kNN settings.
    """
    records = tuple(SentenceSparsity(s, g, a, a2, float(before[1][i]), float(after[1][i]), float(before[0][i]),
                                     float(after[0][i]), math.nan, math.nan, math.nan, knn)
                    for i, (s, g, a, a2) in enumerate(zip(sentences, groups, answers, answers_after)))
    return with_knn(records, emb_before, emb_after, knn)


def with_knn(records: Sequence[SentenceSparsity], emb_before: np.ndarray, emb_after: np.ndarray,
             knn: KnnSettings) -> tuple[SentenceSparsity, ...]:
    """``records`` with the kNN distances measured again under ``knn`` (no model needed).

    ``emb_before`` / ``emb_after``: (n, d_model) embeddings of the records' sentences, in order,
    in the pooling ``knn.pooling``. Raises RequestError for bad settings, ValueError when the
    number of embeddings is not the number of records.
    """
    knn.validate()
    if len(emb_before) != len(records) or len(emb_after) != len(records):
        raise ValueError(f"{len(records)} sentences but {len(emb_before)} / {len(emb_after)} embeddings")
    d_before = knn_distances(emb_before, knn.k, knn.metric)
    d_after = knn_distances(emb_after, knn.k, knn.metric)
    moved = np.linalg.norm(emb_after.astype(np.float64) - emb_before.astype(np.float64), axis=1)
    return tuple(dataclasses.replace(r, knn_distance_before=float(d_before[i]), knn_distance_after=float(d_after[i]),
                                     moved=float(moved[i]), knn=knn) for i, r in enumerate(records))

"""Ranking metrics for top-k recommendation.

Protocol (the one the README documents):
- the user's training items are excluded from the ranking (their scores are set to -inf);
- ``recall@k = hits / min(k, |test|)`` (so a perfect ranking scores 1 whatever |test| is);
- ``NDCG@k = DCG / IDCG`` with binary gains, ``DCG = sum_{rank r < k, hit} 1 / log2(r + 2)`` and
  ``IDCG`` the DCG of ``min(k, |test|)`` hits at the top;
- both are averaged over users with at least one test item;
- ``coverage@k`` is the share of the catalog that appears in at least one evaluated user's top-k.
Scores are produced in batches of users, so memory is ``batch x n_items``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ppr.data.split import UserItems


class RankingMetrics(NamedTuple):
    k: int
    recall: float
    ndcg: float
    coverage: float
    n_users: int

    def as_dict(self) -> dict[str, float]:
        return {
            f"recall@{self.k}": self.recall,
            f"ndcg@{self.k}": self.ndcg,
            f"coverage@{self.k}": self.coverage,
            "evaluated_users": self.n_users,
        }


def rank_top_k(scores: np.ndarray, exclude: np.ndarray | None, k: int) -> np.ndarray:
    """Indices of the top-``k`` items per row, best first, skipping ``exclude`` (bool mask)."""
    s = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None:
        s[exclude] = -np.inf
    k = min(k, s.shape[1])
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(s, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _rows_mask(items: UserItems, users: np.ndarray) -> np.ndarray:
    counts = items.counts()[users]
    rows = np.repeat(np.arange(users.shape[0]), counts)
    cols = np.concatenate([items.row(int(u)) for u in users]) if users.size else np.zeros(0, int)
    mask = np.zeros((users.shape[0], items.n_items), dtype=bool)
    mask[rows, cols] = True
    return mask


def evaluate_scores(
    score_fn: Callable[[np.ndarray], np.ndarray],
    train: UserItems,
    test: UserItems,
    k: int,
    *,
    users: np.ndarray | None = None,
    batch_size: int = 1024,
) -> RankingMetrics:
    """Evaluate a recommender given ``score_fn(user_batch) -> (batch, n_items)`` scores.

    ``users`` restricts evaluation (default: every user with at least one test item).
    """
    test_counts = test.counts()
    cand = np.flatnonzero(test_counts > 0)
    users = cand if users is None else np.intersect1d(np.asarray(users), cand)
    if users.size == 0:
        return RankingMetrics(k, float("nan"), float("nan"), 0.0, 0)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)
    recall_sum = ndcg_sum = 0.0
    seen = np.zeros(train.n_items, dtype=bool)
    for start in range(0, users.size, batch_size):
        batch = users[start : start + batch_size]
        scores = np.asarray(score_fn(batch))
        top = rank_top_k(scores, _rows_mask(train, batch), k)
        seen[top.ravel()] = True
        truth = _rows_mask(test, batch)
        hits = np.take_along_axis(truth, top, axis=1)
        n_rel = np.minimum(test_counts[batch], k)
        recall_sum += float(np.sum(hits.sum(axis=1) / n_rel))
        dcg = (hits * discounts[: hits.shape[1]]).sum(axis=1)
        ndcg_sum += float(np.sum(dcg / ideal[n_rel - 1]))
    n = int(users.size)
    return RankingMetrics(k, recall_sum / n, ndcg_sum / n, float(seen.mean()), n)

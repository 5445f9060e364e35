"""Ranking metrics on hand-computed cases (tolerance 1e-12 unless stated)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ppr.data.split import UserItems
from ppr.evaluation.metrics import evaluate_scores, rank_top_k

TOL = 1e-12


def ui(rows: list[list[int]], n_items: int) -> UserItems:
    users = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    items = np.array([i for r in rows for i in r], dtype=np.int32)
    return UserItems.from_pairs(users, items, len(rows), n_items)


def fixed_scores(table: np.ndarray):
    return lambda batch: table[np.asarray(batch)]


def d(r: int) -> float:
    """Discount of 0-based rank r."""
    return 1.0 / math.log2(r + 2)


def test_rank_top_k_excludes_and_orders():
    s = np.array([[0.1, 0.9, 0.5, 0.7, 0.3]])
    top = rank_top_k(s, np.array([[False, True, False, False, False]]), 3)
    np.testing.assert_array_equal(top, [[3, 2, 4]])


def test_recall_ndcg_hand_computed():
    n_items = 6
    # scores rank items 0 > 1 > 2 > 3 > 4 > 5 for every user
    scores = np.tile(np.arange(n_items, 0, -1, dtype=np.float32), (3, 1))
    train = ui([[0], [], [5]], n_items)  # user 0's item 0 is excluded from its ranking
    test = ui([[2, 4], [1, 3, 4, 5], []], n_items)  # user 2 has no test items: skipped
    k = 3
    m = evaluate_scores(fixed_scores(scores), train, test, k)
    assert m.n_users == 2
    # user 0 ranking (item 0 excluded): 1, 2, 3 -> hit at rank 1 (item 2); |test| = 2
    r0, n0 = 1 / min(k, 2), d(1) / (d(0) + d(1))
    # user 1 ranking: 0, 1, 2 -> hit at rank 1 (item 1); |test| = 4 -> min(k, 4) = 3
    r1, n1 = 1 / 3, d(1) / (d(0) + d(1) + d(2))
    assert m.recall == pytest.approx((r0 + r1) / 2, abs=TOL)
    assert m.ndcg == pytest.approx((n0 + n1) / 2, abs=TOL)
    # coverage: union of top-3 lists {1,2,3} u {0,1,2} = 4 of 6 items
    assert m.coverage == pytest.approx(4 / 6, abs=TOL)


def test_perfect_ranking_scores_one_whatever_test_size():
    n_items = 30
    test = ui([list(range(25)), [7]], n_items)  # |test| = 25 > k and 1 < k
    train = ui([[], []], n_items)
    scores = np.zeros((2, n_items), np.float32)
    scores[0, :25] = 1.0
    scores[1, 7] = 1.0
    m = evaluate_scores(fixed_scores(scores), train, test, 10)
    assert m.recall == pytest.approx(1.0, abs=TOL)
    assert m.ndcg == pytest.approx(1.0, abs=1e-9)


def test_train_items_excluded_even_if_top_scored():
    n_items = 5
    train = ui([[0, 1]], n_items)
    test = ui([[2]], n_items)
    scores = np.array([[10.0, 9.0, 8.0, 0.0, 0.0]], np.float32)
    m = evaluate_scores(fixed_scores(scores), train, test, 1)
    assert m.recall == 1.0 and m.ndcg == pytest.approx(1.0, abs=TOL)


def test_no_test_users_and_restriction():
    train, test = ui([[0], [1]], 4), ui([[], []], 4)
    m = evaluate_scores(fixed_scores(np.ones((2, 4), np.float32)), train, test, 2)
    assert m.n_users == 0 and math.isnan(m.recall)
    test = ui([[2], [3]], 4)
    scores = np.array([[0, 0, 1, 0], [0, 0, 1, 0]], np.float32)
    m = evaluate_scores(fixed_scores(scores), train, test, 1, users=np.array([1]))
    assert m.n_users == 1 and m.recall == 0.0  # user 1 gets item 2, not its test item 3


def test_batching_does_not_change_result():
    rng = np.random.default_rng(0)
    n_users, n_items = 37, 50
    scores = rng.random((n_users, n_items)).astype(np.float32)
    rows = [sorted(rng.choice(n_items, 6, replace=False).tolist()) for _ in range(n_users)]
    train = ui([r[:3] for r in rows], n_items)
    test = ui([r[3:] for r in rows], n_items)
    a = evaluate_scores(fixed_scores(scores), train, test, 5, batch_size=1024)
    b = evaluate_scores(fixed_scores(scores), train, test, 5, batch_size=4)
    assert a == pytest.approx(b, abs=1e-12)

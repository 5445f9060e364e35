"""Reference recommenders: popularity counts and centralized ALS."""

from __future__ import annotations

import jax
import numpy as np

from ppr.config import SplitConfig, SyntheticConfig
from ppr.data.split import UserItems, make_split
from ppr.data.synthetic import generate_synthetic
from ppr.evaluation.metrics import evaluate_scores
from ppr.model.baselines import centralized_als, popularity_scores, transpose
from ppr.model.mf import MFHyper, solve_user_factors


def test_popularity_scores_counts():
    users = np.array([0, 0, 1, 2, 2, 2])
    items = np.array([1, 3, 1, 0, 1, 3])
    train = UserItems.from_pairs(users, items, 3, 5)
    np.testing.assert_array_equal(popularity_scores(train), [1, 3, 0, 2, 0])
    assert popularity_scores(train).dtype == np.float32


def test_transpose_roundtrip():
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 7, 30), rng.integers(0, 9, 30)
    keep = np.unique(u * 100 + i, return_index=True)[1]
    x = UserItems.from_pairs(u[keep], i[keep], 7, 9)
    back = transpose(transpose(x))
    np.testing.assert_array_equal(back.indptr, x.indptr)
    np.testing.assert_array_equal(back.indices, x.indices)


def test_centralized_als_beats_popularity_and_is_deterministic():
    inter = generate_synthetic(SyntheticConfig(n_users=200, n_items=150, n_interactions=8000), 0)
    split = make_split(inter, SplitConfig(), 0)
    train, test = split.for_evaluation("test")
    hyper = MFHyper(alpha=3.0, reg=30.0)
    users = np.flatnonzero(train.counts() > 0)
    q = centralized_als(jax.random.PRNGKey(0), train, users, 16, hyper, 8, 0.1)
    q2 = centralized_als(jax.random.PRNGKey(0), train, users, 16, hyper, 8, 0.1)
    np.testing.assert_array_equal(q, q2)
    ev = np.flatnonzero((test.counts() > 0) & (train.counts() > 0))
    p = solve_user_factors(q, train, ev, hyper)
    row = {int(u): r for r, u in enumerate(ev)}
    als = evaluate_scores(lambda b: p[[row[int(u)] for u in b]] @ q.T, train, test, 20, users=ev)
    pop = popularity_scores(train)
    popm = evaluate_scores(
        lambda b: np.broadcast_to(pop, (len(b), pop.size)), train, test, 20, users=ev
    )
    assert als.recall > popm.recall + 0.03, (als.recall, popm.recall)
    assert als.ndcg > popm.ndcg


def test_popularity_counts_only_the_given_users():
    from ppr.data.split import UserItems
    from ppr.model.baselines import popularity_scores

    items = UserItems.from_pairs(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 1, 2]), 3, 4)
    assert popularity_scores(items).tolist() == [1, 3, 1, 0]
    assert popularity_scores(items, np.array([0, 2])).tolist() == [1, 2, 1, 0]

"""The device recommender: user solve agrees with ppr.model.mf, explanations add up."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from ppr.data.split import UserItems
from ppr.model.mf import MFHyper, solve_user_factors
from ppr.serving.index import AnnoyIndex, ExactIndex
from ppr.serving.recommender import (
    AnnoyRecommender,
    ExactRecommender,
    Recommender,
    load_recommender,
)


def test_recalculate_user_matches_model() -> None:
    rng = np.random.default_rng(5)  # 9-16 items each: one padded bucket, one JIT compile
    q = (rng.normal(size=(300, 12)) * 0.3).astype(np.float32)
    lists = [
        np.sort(rng.choice(300, size=int(rng.integers(9, 17)), replace=False)) for _ in range(25)
    ]
    users = np.repeat(np.arange(25), [len(x) for x in lists])
    items = UserItems.from_pairs(users, np.concatenate(lists), 25, 300)
    hyper = MFHyper(alpha=3.0, reg=2.0)
    want = solve_user_factors(jnp.asarray(q), items, np.arange(25), hyper)
    rec = ExactRecommender(ExactIndex.build(q), hyper.alpha, hyper.reg)
    got = np.stack([rec.recalculate_user(items.row(u)) for u in range(25)])
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fmt", ["float32", "int8"])
def test_explanation_shares_sum_to_score(catalog, users, fmt: str) -> None:
    rec = ExactRecommender(ExactIndex.build(catalog.q, fmt), alpha=3.0, reg=30.0)
    for own in users[:10]:
        ids, scores = rec.recommend(own, k=5)
        for item, score in zip(ids, scores, strict=True):
            ex = rec.explain(own, int(item))
            assert abs(ex.contributions.sum() - ex.score) <= 1e-5 * max(1.0, abs(ex.score))
            assert abs(ex.score - float(score)) <= 1e-4 * max(1.0, abs(ex.score))
            assert np.array_equal(ex.own_items, np.unique(own))


def test_recommend_and_round_trip(tmp_path, catalog, users) -> None:
    ann = AnnoyRecommender(
        AnnoyIndex.build(catalog.q, "float16", 5, 2000, seed=4, n_jobs=1), 3.0, 30.0
    )
    ann.save(tmp_path / "m")
    back = load_recommender(tmp_path / "m")
    assert isinstance(back, AnnoyRecommender)
    for own in users[:10]:
        a, b = ann.recommend(own, 10), back.recommend(own, 10)
        assert not np.isin(a[0], own).any()
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(TypeError):
        Recommender(ExactIndex.build(catalog.q), 3.0, 30.0)

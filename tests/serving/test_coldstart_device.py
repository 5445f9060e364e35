"""The cold-start device: prior without history, closed-form fold-in after it, never own items."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from ppr.privacy.cohorts import cohort_domain, release_cohorts
from ppr.privacy.popularity import csr_from_pairs
from ppr.serving import ExactIndex, ExactRecommender
from ppr.serving.coldstart import ColdStartDevice
from ppr.serving.errors import ServingError

N_ITEMS, DIM = 30, 4


@pytest.fixture(scope="module")
def release():
    """Men hold items 0-14, women 15-29; 80 users each, released at a small noise."""
    rng = np.random.default_rng(0)
    labels = ["M"] * 80 + ["F"] * 80
    users = np.repeat(np.arange(160), 6)
    items = np.where(users < 80, rng.integers(0, 15, users.size), rng.integers(15, 30, users.size))
    return release_cohorts(
        jax.random.key(1),
        labels,
        cohort_domain(["gender"]),
        csr_from_pairs(users, items, 160),
        N_ITEMS,
        min_size=20,
        max_items=6,
        noise_multiplier=0.5,
        meta={"kind": "attributes", "attributes": ("gender",), "epsilon": 8.0, "delta": 1e-4},
    )


@pytest.fixture(scope="module")
def q():
    return np.random.default_rng(3).normal(0, 0.5, (N_ITEMS, DIM)).astype(np.float32)


def test_fold_in_is_the_recommenders_closed_form(release, q) -> None:
    dev = ColdStartDevice(release, q, alpha=3.0, reg=2.0)
    rec = ExactRecommender(ExactIndex.build(q), alpha=3.0, reg=2.0)
    for own in ([1], [4, 9, 22], list(range(10))):
        np.testing.assert_allclose(dev.user_vector(own), rec.recalculate_user(own), rtol=1e-9)
    np.testing.assert_array_equal(dev.user_vector([]), np.zeros(DIM))


def test_no_history_ranks_by_the_cohort_prior_or_the_global_fallback(release, q) -> None:
    dev = ColdStartDevice(release, q, 3.0, 2.0)
    men, _ = dev.recommend(10, {"gender": "M"})
    women, _ = dev.recommend(10, {"gender": "F"})
    assert men.max() < 15 and women.min() >= 15  # each cohort gets its own popular items
    np.testing.assert_array_equal(dev.prior(None), release.global_scores())
    np.testing.assert_array_equal(dev.prior({"gender": "?"}), release.global_scores())
    assert dev.cohort({"gender": "M"}) == release.labels.index("M")
    assert dev.cohort({}) == -1


def test_after_history_fold_in_scores_and_blend(release, q) -> None:
    own = np.array([2, 7])
    plain = ColdStartDevice(release, q, 3.0, 2.0, blend=0.0)
    s = plain.scores({"gender": "F"}, own)
    np.testing.assert_allclose(s, q.astype(np.float64) @ plain.user_vector(own), rtol=1e-12)
    mixed = ColdStartDevice(release, q, 3.0, 2.0, blend=1.0).scores({"gender": "F"}, own)
    prior = release.scores(release.labels.index("F"))
    np.testing.assert_allclose(mixed, s / np.abs(s).max() + prior / prior.max(), rtol=1e-12)
    ids, scores = plain.recommend(N_ITEMS, {"gender": "F"}, own)
    assert not set(ids.tolist()) & set(own.tolist())  # never an own item
    assert ids.size == N_ITEMS - own.size and np.all(np.diff(scores) <= 0)


def test_mismatched_model_is_refused(release) -> None:
    with pytest.raises(ServingError, match="rows"):
        ColdStartDevice(release, np.zeros((N_ITEMS + 1, DIM)), 3.0, 2.0)
    with pytest.raises(ServingError, match="outside the catalog"):
        ColdStartDevice(release, np.zeros((N_ITEMS, DIM)), 3.0, 2.0).user_vector([N_ITEMS])

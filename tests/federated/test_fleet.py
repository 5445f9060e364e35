"""Cohort sampling, dropout and the device fleet.

Statistical checks use a two-sided normal bound on a binomial count at false-failure rate
``ALPHA = 1e-6`` per check (z = 4.89); the draws are seeded, so a pass is reproducible.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from data_testutils import random_user_items
from scipy.stats import norm

from ppr.federated import DeviceFleet, apply_dropout, sample_participants
from ppr.model.mf import MFHyper, init_item_factors

ALPHA = 1e-6
Z = float(norm.isf(ALPHA / 2))


def binomial_ok(k: int, n: int, p: float) -> bool:
    return abs(k - n * p) <= Z * np.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_poisson_sampling_frequency(rate):
    population = np.arange(10, 1010)  # ids need not start at 0
    key = jax.random.PRNGKey(0)
    counts = np.zeros(population.size, int)
    sizes = []
    rounds = 200
    for t in range(rounds):
        c = sample_participants(jax.random.fold_in(key, t), population, "poisson", rate, 0)
        assert np.all(np.diff(c) > 0) and np.isin(c, population).all()
        counts[c - 10] += 1
        sizes.append(c.size)
    assert binomial_ok(int(counts.sum()), rounds * population.size, rate)
    # per-device frequency: each device is a Binomial(rounds, q); check the extremes with a
    # union bound over the 1000 devices
    z_dev = float(norm.isf(ALPHA / (2 * population.size)))
    sd = np.sqrt(rounds * rate * (1 - rate))
    assert np.all(np.abs(counts - rounds * rate) <= z_dev * sd)
    assert len(set(sizes)) > 1  # the cohort size varies under Poisson sampling


def test_poisson_rate_one_is_everyone_and_bad_rate_raises():
    pop = np.array([4, 8, 15])
    np.testing.assert_array_equal(
        sample_participants(jax.random.PRNGKey(0), pop, "poisson", 1.0, 0), pop
    )
    with pytest.raises(ValueError, match="sampling_rate"):
        sample_participants(jax.random.PRNGKey(0), pop, "poisson", 0.0, 0)
    with pytest.raises(ValueError, match="sampling"):
        sample_participants(jax.random.PRNGKey(0), pop, "uniform", 0.5, 0)


def test_fixed_cohort_size_unique_and_deterministic():
    population = np.arange(500) * 3
    key = jax.random.PRNGKey(5)
    c = sample_participants(key, population, "fixed", 0.5, 37)
    assert c.size == 37 and np.unique(c).size == 37 and np.isin(c, population).all()
    assert np.all(np.diff(c) > 0)
    np.testing.assert_array_equal(c, sample_participants(key, population, "fixed", 0.5, 37))
    assert not np.array_equal(
        c, sample_participants(jax.random.PRNGKey(6), population, "fixed", 0.5, 37)
    )
    small = sample_participants(key, population[:10], "fixed", 0.5, 37)
    np.testing.assert_array_equal(small, population[:10])


def test_dropout_partitions_cohort_at_rate():
    cohort = np.arange(20_000)
    rate = 0.2
    surv, drop = apply_dropout(jax.random.PRNGKey(1), cohort, rate)
    assert surv.size + drop.size == cohort.size
    assert np.intersect1d(surv, drop).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([surv, drop])), cohort)
    assert binomial_ok(drop.size, cohort.size, rate)
    s0, d0 = apply_dropout(jax.random.PRNGKey(1), cohort, 0.0)
    assert s0 is cohort and d0.size == 0


def test_fleet_population_and_round():
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 40
    lens = rng.integers(1, 12, n_users)
    lens[[3, 7]] = 0
    items = random_user_items(rng, lens, n_items)
    train_users = np.ones(n_users, bool)
    train_users[[1, 2]] = False
    fleet = DeviceFleet(items, train_users, MFHyper(2.0, 1.0))
    expected = np.setdiff1d(np.arange(n_users), [1, 2, 3, 7])
    np.testing.assert_array_equal(fleet.population, expected)
    assert fleet.n_devices == expected.size and fleet.n_items == n_items

    q = init_item_factors(jax.random.PRNGKey(0), n_items, 4, 1.0)
    ids = expected[::2]
    rnd = fleet.compute(q, ids, 0.3)
    np.testing.assert_array_equal(np.sort(rnd.device_ids), ids)
    assert rnd.norms().shape == ids.shape
    dense = np.concatenate([rnd.dense(b) for b in range(len(rnd.batches))])
    assert dense.shape == (ids.size, n_items * 4) and dense.dtype == np.float32
    assert np.all(np.linalg.norm(dense, axis=1) <= 0.3 * (1 + 1e-5))
    np.testing.assert_allclose(
        np.asarray(rnd.clipped_sum()).ravel(),
        dense.sum(axis=0, dtype=np.float64),
        rtol=1e-4,
        atol=1e-6,
    )
    empty = fleet.compute(q, np.zeros(0, np.int64), 0.3)
    assert empty.device_ids.size == 0 and empty.norms().size == 0

    # Streamed in chunks (the last one of a bucket overlapping the one before): the same rows,
    # in device_ids order, each device exactly once, never more than `chunk` rows at a time.
    for chunk in (1, 3, 64):
        parts = list(rnd.dense_chunks(chunk))
        assert all(len(i) == len(r) <= chunk for i, r in parts)
        np.testing.assert_array_equal(np.concatenate([i for i, _ in parts]), rnd.device_ids)
        # float32 rounding may differ with the batch shape (XLA's reduction order)
        np.testing.assert_allclose(np.concatenate([r for _, r in parts]), dense, atol=1e-7)
    assert list(empty.dense_chunks(3)) == []
    with pytest.raises(ValueError, match="`chunk` must be at least 1"):
        next(rnd.dense_chunks(0))

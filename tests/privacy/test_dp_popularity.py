"""DP popularity counts: bounded contributions, noise std, event."""

import math

import dp_accounting
import jax
import numpy as np
import pytest
from dp_stats import assert_gaussian_std
from scipy.stats import norm

from ppr.privacy import (
    PrivacyLedger,
    bounded_contributions,
    csr_from_pairs,
    private_item_counts,
)


def _user_items(seed: int, n_users: int, n_items: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 40, size=n_users)
    # duplicates on purpose: a device's repeated item counts once
    return [rng.integers(0, n_items, size=s) for s in sizes]


def test_each_device_contributes_at_most_max_items_distinct() -> None:
    n_users, n_items, m = 300, 50, 7
    user_items = _user_items(0, n_users, n_items)
    users, items = bounded_contributions(jax.random.key(1), user_items, n_items, m)
    per_user = np.bincount(users, minlength=n_users)
    distinct = np.array([np.unique(a).size for a in user_items])
    np.testing.assert_array_equal(per_user, np.minimum(distinct, m))
    pairs = users * n_items + items
    assert np.unique(pairs).size == pairs.size  # distinct per device
    for u in range(n_users):  # only the device's own items
        assert set(items[users == u]) <= set(user_items[u].tolist())


def test_csr_and_list_inputs_agree() -> None:
    user_items = _user_items(2, 50, 30)
    users = np.repeat(np.arange(50), [a.size for a in user_items])
    csr = csr_from_pairs(users, np.concatenate(user_items), 50)
    key = jax.random.key(4)
    a = bounded_contributions(key, user_items, 30, 5)
    b = bounded_contributions(key, csr, 30, 5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_subsample_is_uniform() -> None:
    # 20k identical devices with items 0..9 keep 5: each item kept ~ Binomial(20k, 1/2)
    n_users, m = 20_000, 5
    user_items = [np.arange(10)] * n_users
    _, items = bounded_contributions(jax.random.key(7), user_items, 10, m)
    counts = np.bincount(items, minlength=10)
    assert counts.sum() == n_users * m
    z = norm.isf(1e-6 / 2 / 10)  # 1e-6 false-failure rate over the 10 items
    assert np.all(np.abs(counts - n_users / 2) <= z * math.sqrt(n_users / 4))


def test_noise_std_and_event() -> None:
    n_users, n_items, m, sigma = 40, 200_000, 9, 1.7
    rng = np.random.default_rng(3)
    user_items = [rng.integers(0, n_items, size=20) for _ in range(n_users)]
    key = jax.random.key(9)
    noisy, event = private_item_counts(key, user_items, n_items, m, sigma)
    assert event == dp_accounting.GaussianDpEvent(sigma)
    k_sample, _ = jax.random.split(key)
    _, items = bounded_contributions(k_sample, user_items, n_items, m)
    exact = np.bincount(items, minlength=n_items)
    assert_gaussian_std(noisy.astype(np.float64) - exact, sigma * math.sqrt(m))
    ledger = PrivacyLedger().add("popularity", event)
    assert ledger.get("popularity").event == event
    assert 0 < ledger.epsilon(1e-5) < math.inf


def test_zero_noise_is_non_private() -> None:
    noisy, event = private_item_counts(jax.random.key(0), [np.array([1, 2])], 4, 3, 0.0)
    np.testing.assert_array_equal(noisy, [0, 1, 1, 0])
    assert isinstance(event, dp_accounting.NonPrivateDpEvent)


def test_item_ids_out_of_range_are_refused() -> None:
    from ppr.errors import PprError

    with pytest.raises(PprError, match=r"item ids must lie in \[0, 4\)"):
        bounded_contributions(jax.random.key(0), [np.array([4])], 4, 2)

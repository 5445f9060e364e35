"""DP cohort statistics: the K threshold on noisy sizes, P(pass) at K/2, noise scales, bounded
contributions, the event's ε, the public domain, anonymous assignment, the file."""

from __future__ import annotations

import math

import jax
import numpy as np
import pandas as pd
import pytest
from dp_stats import assert_gaussian_std
from scipy.stats import binom, norm

from ppr.privacy import epsilon_of
from ppr.privacy.cohorts import (
    UNKNOWN,
    CohortRelease,
    attribute_labels,
    cohort_domain,
    cohort_event,
    cohort_noise_multiplier,
    kmeans_centroids,
    nearest_centroid,
    noisy_cohort_counts,
    pass_probability,
    release_cohorts,
)
from ppr.privacy.popularity import CsrItems, csr_from_pairs

META = {"kind": "attributes", "attributes": ("c",), "epsilon": 1.0, "delta": 1e-5}


def _one_item_each(labels: list[str], n_items: int, seed: int = 0) -> CsrItems:
    rng = np.random.default_rng(seed)
    users = np.arange(len(labels))
    return csr_from_pairs(users, rng.integers(0, n_items, users.size), len(labels))


def test_a_cohort_is_released_only_when_its_noisy_size_passes_k() -> None:
    domain = [f"c{j}" for j in range(60)]
    true = np.tile([5, 10, 15, 20, 25, 30], 10)  # true sizes around K = 20
    labels = [domain[j] for j in np.repeat(np.arange(60), true)]
    items = _one_item_each(labels, 7)
    key, sigma, k = jax.random.key(3), 4.0, 20
    rel = release_cohorts(
        key, labels, domain, items, 7, min_size=k, max_items=1, noise_multiplier=sigma, meta=META
    )
    cohort = np.array([int(lab[1:]) for lab in labels])
    sizes, counts, _ = noisy_cohort_counts(key, cohort, items, 60, 7, 1, sigma)
    passed = [domain[j] for j in range(60) if sizes[j] >= k]
    assert list(rel.labels) == passed  # exactly those with a NOISY size >= K
    assert 0 < len(passed) < 60
    np.testing.assert_allclose(rel.sizes, sizes[sizes >= k])
    np.testing.assert_allclose(rel.counts, counts[sizes >= k])
    # the decision is on the noisy size: some true-small cohorts pass, some true-large fail
    assert any(true[j] < k and sizes[j] >= k for j in range(60))
    assert any(true[j] >= k and sizes[j] < k for j in range(60))
    saved = rel.to_json()
    assert {c["label"] for c in saved["cohorts"]} == set(passed)  # nothing about the others


def test_pass_probability_of_half_k_is_stated_and_measured() -> None:
    """The stated value ``Φ(-K/(2σ))`` for a cohort of true size K/2, against 20,000 cohorts."""
    k, sigma, n_cohorts = 20, 8.0, 20_000
    stated = pass_probability(k / 2, k, sigma)
    assert stated == pytest.approx(norm.cdf(-k / (2 * sigma)), rel=1e-12)  # 0.1056
    domain = [f"c{j}" for j in range(n_cohorts)]
    labels = [domain[j] for j in np.repeat(np.arange(n_cohorts), k // 2)]
    rel = release_cohorts(
        jax.random.key(11),
        labels,
        domain,
        _one_item_each(labels, 2),
        2,
        min_size=k,
        max_items=1,
        noise_multiplier=sigma,
        meta=META,
    )
    measured = len(rel.labels) / n_cohorts
    lo, hi = binom.interval(1 - 1e-6, n_cohorts, stated)
    assert lo / n_cohorts <= measured <= hi / n_cohorts, (measured, stated)
    assert rel.pass_probability(k / 2) == pytest.approx(stated)


def test_stated_pass_probability_at_the_default_release() -> None:
    """K = 20 at cohort ε = 1 (δ = 1e-4): σ ≈ 5.52, P(pass | n = K/2) ≈ 0.035; at ε = 8 it is
    negligible (σ ≈ 0.94)."""
    s1 = cohort_noise_multiplier(1.0, 1e-4)
    assert s1 == pytest.approx(5.52, rel=0.01)
    assert pass_probability(10, 20, s1) == pytest.approx(0.035, abs=0.002)
    assert pass_probability(10, 20, cohort_noise_multiplier(8.0, 1e-4)) < 1e-20
    assert pass_probability(30, 20, 0.0) == 1.0 and pass_probability(10, 20, 0.0) == 0.0


def test_noise_has_the_stated_scale() -> None:
    """Without data: sizes carry N(0, σ²), counts and global counts N(0, σ² m)."""
    n_cohorts, n_items, m, sigma = 400, 500, 9, 2.5
    empty = CsrItems(np.zeros(n_cohorts + 1, np.int64), np.zeros(0, np.int64))
    cohort = np.arange(n_cohorts)
    sizes, counts, glob = noisy_cohort_counts(
        jax.random.key(5), cohort, empty, n_cohorts, n_items, m, sigma
    )
    sizes = sizes - 1.0  # every cohort holds one (empty) user
    assert_gaussian_std(counts, sigma * math.sqrt(m))
    for x, std in ((sizes, sigma), (glob, sigma * math.sqrt(m))):  # fewer samples: 5 sd
        ratio = x.std(ddof=1) / std
        assert abs(ratio - 1) < 5 / math.sqrt(2 * x.size), ratio


def test_each_user_counts_at_most_m_items_in_its_own_cohort() -> None:
    rng = np.random.default_rng(2)
    n_users, n_items, m = 200, 40, 5
    cohort = rng.integers(-1, 4, n_users)  # -1: no cohort (counted globally only)
    lists = [rng.integers(0, n_items, rng.integers(0, 30)) for _ in range(n_users)]
    users = np.repeat(np.arange(n_users), [a.size for a in lists])
    csr = csr_from_pairs(users, np.concatenate(lists), n_users)
    sizes, counts, glob = noisy_cohort_counts(jax.random.key(0), cohort, csr, 4, n_items, m, 0.0)
    distinct = np.array([min(np.unique(a).size, m) for a in lists])
    np.testing.assert_array_equal(sizes, np.bincount(cohort[cohort >= 0], minlength=4))
    for c in range(4):
        assert counts[c].sum() == distinct[cohort == c].sum()
    assert glob.sum() == distinct.sum()
    assert counts.max() <= np.bincount(cohort[cohort >= 0]).max()


def test_event_alone_meets_the_cohort_epsilon() -> None:
    for eps in (1.0, 8.0):
        sigma = cohort_noise_multiplier(eps, 1e-5)
        assert epsilon_of(cohort_event(sigma), 1e-5) <= eps * (1 + 1e-9)
        assert epsilon_of(cohort_event(sigma / 1.01), 1e-5) > eps
    assert cohort_noise_multiplier(math.inf, 1e-5) == 0.0
    assert epsilon_of(cohort_event(0.0), 1e-5) == math.inf


def test_domain_is_public_and_unlisted_values_read_unknown() -> None:
    dom = cohort_domain(["gender"])
    assert dom == ["M", "F", UNKNOWN]
    assert len(cohort_domain(["age_band", "gender"])) == 8 * 3
    frame = pd.DataFrame({"gender": ["M", "X", None], "age_band": ["18-24", "56+", "18-24"]})
    labels = attribute_labels(frame, np.arange(3), ["age_band", "gender"])
    assert labels == ["18-24 | M", f"56+ | {UNKNOWN}", f"18-24 | {UNKNOWN}"]
    assert attribute_labels(None, np.arange(2), ["gender"]) == [UNKNOWN, UNKNOWN]
    with pytest.raises(Exception, match="unknown cohort attribute"):
        cohort_domain(["zip"])


def test_anonymous_cohort_is_the_nearest_public_centroid() -> None:
    rng = np.random.default_rng(0)
    centers = np.array([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
    q = np.concatenate([c + rng.normal(0, 0.3, (30, 2)) for c in centers])
    cent = kmeans_centroids(q, 3, seed=0)
    for j in range(3):
        assert np.min(np.linalg.norm(cent - centers[j], axis=1)) < 0.5
        c = nearest_centroid(q, cent, np.arange(30 * j, 30 * j + 5))
        assert np.linalg.norm(cent[c] - centers[j]) < 0.5
    assert nearest_centroid(q, cent, np.array([], np.int64)) == -1
    np.testing.assert_array_equal(cent, kmeans_centroids(q, 3, seed=0))  # public, deterministic


def test_release_round_trips_and_scores_fall_back_to_global(tmp_path) -> None:
    domain = cohort_domain(["gender"])
    labels = ["M"] * 60 + ["F"] * 60 + ["?"] * 3
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(123), 4)
    items = np.where(users < 60, rng.integers(0, 5, users.size), rng.integers(5, 10, users.size))
    csr = csr_from_pairs(users, items, 123)
    meta = META | {"attributes": ("gender",)}
    rel = release_cohorts(
        jax.random.key(0), labels, domain, csr, 10, min_size=20, max_items=4,
        noise_multiplier=0.5, meta=meta,
    )  # fmt: skip
    assert rel.labels == ("M", "F")
    back = CohortRelease.load(rel.save(tmp_path / "cohorts.json"))
    np.testing.assert_allclose(back.counts, rel.counts, rtol=1e-6)
    assert back.labels == rel.labels and back.population == pytest.approx(rel.population)
    m, f = back.cohort_of({"gender": "M"}), back.cohort_of({"gender": "F"})
    assert (m, f) == (0, 1)
    assert back.cohort_of({"gender": "X"}) == -1 and back.cohort_of(None) == -1
    np.testing.assert_array_equal(back.scores(-1), back.global_scores())
    assert np.argsort(-back.scores(m))[:5].max() < 5  # the men's items first
    assert np.argsort(-back.scores(f))[:5].min() >= 5
    assert 0.5 < back.shrinkage(m) <= 1.0  # a clear, well-measured cohort keeps its counts

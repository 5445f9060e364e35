"""The aggregator contract, DP noise wrappers and the trainer's denominator rule.

Statistical tests: chi-square bounds on the sample variance and a normal bound on the mean, at
false-failure rate ``ALPHA = 1e-6`` each, over >= 50,000 coordinates (seeded: reproducible).
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from data_testutils import random_user_items
from scipy.stats import chi2, norm

from ppr.crypto import CkksSecureAggregation, PlaintextAggregation, default_params, precision_bound
from ppr.federated import (
    CentralNoise,
    DeviceFleet,
    DeviceRound,
    DistributedNoise,
    EncodedSum,
    FederatedTrainer,
    Server,
    StructuredSum,
    apply_dropout,
    sample_participants,
)
from ppr.model.mf import MFHyper, init_item_factors
from ppr.privacy import distributed_noise_share_std

ALPHA = 1e-6
CLIP = 0.5
N_USERS, N_ITEMS, DIM = 25, 300, 10  # 3000 values: two CKKS ciphertexts
PARAMS = default_params()


def assert_gaussian_std(x: np.ndarray, std: float) -> None:
    x = np.asarray(x, np.float64).ravel()
    n = x.size
    assert n >= 50_000
    ratio = x.var(ddof=1) / std**2
    lo = chi2.ppf(ALPHA / 2, n - 1) / (n - 1)
    hi = chi2.isf(ALPHA / 2, n - 1) / (n - 1)
    assert lo <= ratio <= hi, (ratio, lo, hi)
    assert abs(x.mean()) <= norm.isf(ALPHA / 2) * std / math.sqrt(n)


def make_fleet(n_users: int, n_items: int, seed: int = 0) -> DeviceFleet:
    rng = np.random.default_rng(seed)
    lens = rng.integers(2, 20, n_users)
    items = random_user_items(rng, lens, n_items)
    return DeviceFleet(items, np.ones(n_users, bool), MFHyper(3.0, 2.0))


@pytest.fixture(scope="module")
def device_round() -> DeviceRound:
    fleet = make_fleet(N_USERS, N_ITEMS)
    q = init_item_factors(jax.random.PRNGKey(0), N_ITEMS, DIM, 1.0)
    rnd = fleet.compute(q, fleet.population, CLIP)
    assert np.max(rnd.norms()) > CLIP  # clipping is active
    return rnd


def exact_sum(rnd: DeviceRound) -> np.ndarray:
    rows = np.concatenate([rnd.dense(b) for b in range(len(rnd.batches))])
    return rows.astype(np.float64).sum(axis=0).reshape(N_ITEMS, DIM)


# (name, factory, absolute tolerance against the float64 sum of the devices' float32 messages)
KINDS = ["structured", "plaintext", "ckks"]


def build(kind: str):
    if kind == "structured":
        return StructuredSum(N_ITEMS, DIM)
    if kind == "plaintext":
        return EncodedSum(PlaintextAggregation(N_ITEMS * DIM, CLIP), N_ITEMS, DIM)
    return EncodedSum(
        CkksSecureAggregation(N_ITEMS * DIM, PARAMS, workers=1, value_bound=CLIP), N_ITEMS, DIM
    )


def tolerance(kind: str, n: int) -> float:
    if kind == "structured":  # float32 matrix products of the outer-product form
        return 1e-5
    if kind == "plaintext":  # float64 sum of the same float32 rows
        return 1e-12
    return precision_bound(PARAMS, n) * CLIP * (1 + 1e-9)  # documented CKKS bound


@pytest.fixture(params=KINDS)
def aggregator(request):
    agg = build(request.param)
    yield request.param, agg
    agg.close()


def test_contract_same_round_same_total(aggregator, device_round):
    kind, agg = aggregator
    n = device_round.device_ids.size
    out = agg.aggregate(0, device_round, jax.random.PRNGKey(0))
    ref = exact_sum(device_round)
    assert out.total.shape == (N_ITEMS, DIM) and out.total.dtype == np.float64
    assert out.n_accepted == n and not out.rejected and not out.dropped
    assert out.noise_multiplier is None
    assert np.max(np.abs(out.total - ref)) <= tolerance(kind, n)
    if kind == "ckks":
        assert out.upload_bytes > n * N_ITEMS * DIM * 4  # ciphertexts are larger
    else:
        assert out.upload_bytes == n * N_ITEMS * DIM * 4


def test_contract_central_noise_wraps_every_strategy(aggregator, device_round):
    kind, agg = aggregator
    n = device_round.device_ids.size
    sigma = 0.8
    key = jax.random.PRNGKey(3)
    noised = CentralNoise(agg, sigma, CLIP).aggregate(1, device_round, key)
    # the structured path with the same key draws the same noise vector
    ref = CentralNoise(StructuredSum(N_ITEMS, DIM), sigma, CLIP).aggregate(
        1, device_round, key
    )
    assert noised.noise_multiplier == sigma and noised.n_accepted == n
    peak = float(np.max(np.abs(ref.total - exact_sum(device_round))))
    tol = tolerance(kind, n) + (1e-5 if kind != "structured" else 0.0)
    if kind == "ckks":
        tol += 1e-6 * peak  # noise encoded at the CKKS scale as well
    assert np.max(np.abs(noised.total - ref.total)) <= tol


def test_empty_round_structured():
    agg = StructuredSum(4, 3)
    out = agg.aggregate(0, DeviceRound([], [], None), jax.random.PRNGKey(0))
    assert out.n_accepted == 0 and np.all(out.total == 0) and out.upload_bytes == 0


def test_central_noise_std():
    n_items, dim, sigma = 1000, 50, 1.3
    agg = CentralNoise(StructuredSum(n_items, dim), sigma, CLIP)
    out = agg.aggregate(0, DeviceRound([], [], None), jax.random.PRNGKey(11))
    assert_gaussian_std(out.total, sigma * CLIP)
    again = agg.aggregate(0, DeviceRound([], [], None), jax.random.PRNGKey(11))
    np.testing.assert_array_equal(out.total, again.total)  # a function of the key


def test_distributed_noise_realized_multiplier_and_sum_std():
    n_items, dim, sigma = 1000, 50, 2.0
    fleet = make_fleet(12, n_items, seed=1)
    q = init_item_factors(jax.random.PRNGKey(2), n_items, dim, 0.3)
    rnd = fleet.compute(q, fleet.population, CLIP)
    n = rnd.device_ids.size
    exact = np.asarray(rnd.clipped_sum(), np.float64)
    for n_min, expect in ((5, sigma), (48, sigma * math.sqrt(n / 48))):
        agg = DistributedNoise(StructuredSum(n_items, dim), sigma, CLIP, n_min)
        s = distributed_noise_share_std(sigma, CLIP, n_min)
        assert agg.share_std == pytest.approx(sigma * CLIP / math.sqrt(n_min), rel=1e-12)
        out = agg.aggregate(0, rnd, jax.random.PRNGKey(n_min))
        assert out.noise_multiplier == pytest.approx(expect, rel=1e-12)
        assert_gaussian_std(out.total - exact, s * math.sqrt(n))


def test_distributed_noise_dense_plaintext_shares():
    """Each device adds its own share before sending: the sum carries std s*sqrt(n)."""
    n_items, dim, sigma, n_min = 1000, 50, 1.0, 4
    fleet = make_fleet(10, n_items, seed=2)
    q = init_item_factors(jax.random.PRNGKey(2), n_items, dim, 0.3)
    rnd = fleet.compute(q, fleet.population, CLIP)
    n = rnd.device_ids.size
    s = distributed_noise_share_std(sigma, CLIP, n_min)
    secure = PlaintextAggregation(n_items * dim, CLIP + 8 * s)
    agg = DistributedNoise(EncodedSum(secure, n_items, dim), sigma, CLIP, n_min)
    out = agg.aggregate(0, rnd, jax.random.PRNGKey(9))
    assert out.n_accepted == n and out.noise_multiplier == sigma
    assert_gaussian_std(out.total - exact_sum_of(rnd, n_items, dim), s * math.sqrt(n))


def test_dense_chunking_changes_nothing_not_even_the_noise_shares():
    """Each device's share comes from ``fold_in(key, device id)``: streaming the cohort one
    device at a time or 64 at a time sends the same rows (up to float32 rounding of the dense
    update, which XLA may order differently for other batch shapes), so the sums agree to 1e-6
    while the noise itself is of order 1."""
    n_items, dim, sigma, n_min = 200, 6, 1.0, 4
    fleet = make_fleet(30, n_items, seed=4)
    q = init_item_factors(jax.random.PRNGKey(5), n_items, dim, 0.3)
    rnd = fleet.compute(q, fleet.population, CLIP)
    s = distributed_noise_share_std(sigma, CLIP, n_min)
    totals = []
    for chunk in (1, 7, 64):
        secure = PlaintextAggregation(n_items * dim, CLIP + 8 * s)
        agg = DistributedNoise(
            EncodedSum(secure, n_items, dim, chunk=chunk), sigma, CLIP, n_min
        )
        totals.append(agg.aggregate(0, rnd, jax.random.PRNGKey(11)).total)
    np.testing.assert_allclose(totals[0], totals[1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(totals[0], totals[2], rtol=0, atol=1e-6)
    assert not np.allclose(totals[0], exact_sum_of(rnd, n_items, dim), atol=1e-3)  # noise added


def exact_sum_of(rnd: DeviceRound, n_items: int, dim: int) -> np.ndarray:
    rows = np.concatenate([rnd.dense(b) for b in range(len(rnd.batches))])
    return rows.astype(np.float64).sum(axis=0).reshape(n_items, dim)


@pytest.mark.parametrize("fixed", [None, 6.0])
def test_trainer_denominator_rule(fixed):
    """One sgd(lr=1) step moves Q by exactly total / denominator: the accepted count without
    DP, the fixed q*N under DP (noise wrapped)."""
    import optax

    fleet = make_fleet(N_USERS, N_ITEMS, seed=3)
    q0 = init_item_factors(jax.random.PRNGKey(4), N_ITEMS, DIM, 1.0)
    agg = StructuredSum(N_ITEMS, DIM)
    if fixed is not None:
        agg = CentralNoise(agg, 0.5, CLIP)
    server = Server(optax.sgd(1.0))
    trainer = FederatedTrainer(
        fleet,
        agg,
        server,
        sampling="poisson",
        sampling_rate=0.4,
        participants=0,
        dropout_rate=0.1,
        clip_norm=CLIP,
        fixed_denominator=fixed,
    )
    key = jax.random.PRNGKey(8)
    state, log = trainer.round(server.init(q0), 0, key)
    # replay the round's documented key schedule to get the very same aggregate
    k_sample, k_drop, k_agg = jax.random.split(jax.random.fold_in(key, 0), 3)
    cohort = sample_participants(k_sample, fleet.population, "poisson", 0.4, 0)
    surv, dropped = apply_dropout(k_drop, cohort, 0.1)
    out = agg.aggregate(0, fleet.compute(q0, surv, CLIP), k_agg)
    assert log.sampled == cohort.size and log.accepted == surv.size == out.n_accepted
    assert log.dropped == dropped.size
    denom = fixed if fixed is not None else surv.size
    if fixed is not None:
        assert fixed != surv.size  # the rule is observable in this round
    np.testing.assert_allclose(
        np.asarray(state.q, np.float64) - np.asarray(q0, np.float64),
        out.total / denom,
        rtol=1e-4,
        atol=1e-6,
    )
    assert log.noise_multiplier == (None if fixed is None else 0.5)

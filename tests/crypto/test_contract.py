"""One contract, two aggregators: CKKS secure aggregation and the plaintext twin."""

from __future__ import annotations

import numpy as np
import pytest
from crypto_testutils import SMALL_SIZE, clipped_updates

from ppr.crypto import CkksSecureAggregation, PlaintextAggregation, precision_bound

VALUE_BOUND = 0.5


@pytest.fixture(scope="module", params=["plaintext", "ckks"])
def aggregator(request):
    if request.param == "plaintext":
        agg = PlaintextAggregation(SMALL_SIZE, value_bound=VALUE_BOUND)
    else:
        agg = CkksSecureAggregation(SMALL_SIZE, value_bound=VALUE_BOUND)
    with agg:
        yield agg


@pytest.fixture
def round_idx(request):
    """A round index unique within the module (the key holder decrypts each round once)."""
    return abs(hash(request.node.name)) % 10**9


def _tol(agg, n: int) -> float:
    if isinstance(agg, PlaintextAggregation):
        return 1e-9
    return precision_bound(agg.spec.params, n) * VALUE_BOUND


def test_sum_matches_the_float64_sum_within_the_bound(aggregator, round_idx):
    u = clipped_updates(np.random.default_rng(1), 6, SMALL_SIZE, clip=VALUE_BOUND)
    res = aggregator.aggregate(u, np.arange(10, 16), round_idx)
    assert res.total.dtype == np.float64 and res.total.shape == (SMALL_SIZE,)
    assert res.n_accepted == 6 and not res.rejected and not res.dropped
    np.testing.assert_allclose(
        res.total, u.astype(np.float64).sum(0), rtol=0, atol=_tol(aggregator, 6)
    )
    assert res.upload_bytes == aggregator.channel.totals()["by_round"][round_idx]["update"]
    assert res.upload_bytes >= 6 * 4 * SMALL_SIZE


def test_noise_is_added_to_the_sum(aggregator, round_idx):
    rng = np.random.default_rng(2)
    u = clipped_updates(rng, 3, SMALL_SIZE, clip=VALUE_BOUND)
    noise = rng.normal(scale=2.0, size=SMALL_SIZE)
    res = aggregator.aggregate(u, np.array([1, 2, 3]), round_idx, noise=noise)
    expected = u.astype(np.float64).sum(0) + noise
    np.testing.assert_allclose(res.total, expected, rtol=0, atol=_tol(aggregator, 3))


@pytest.mark.parametrize(
    ("shape", "ids"),
    [
        ((2, SMALL_SIZE + 1), [1, 2]),
        ((SMALL_SIZE,), [1]),
        ((2, SMALL_SIZE), [1]),
        ((2, SMALL_SIZE), [1, 1]),
    ],
)
def test_wrong_shaped_input_is_refused(aggregator, round_idx, shape, ids):
    with pytest.raises(ValueError):
        aggregator.aggregate(np.zeros(shape, np.float32), np.array(ids), round_idx)


def test_wrong_noise_is_refused(aggregator, round_idx):
    u = np.zeros((1, SMALL_SIZE), np.float32)
    with pytest.raises(ValueError, match="noise"):
        aggregator.aggregate(u, np.array([1]), round_idx, noise=np.zeros(SMALL_SIZE - 1))


def test_bad_rows_are_rejected_and_the_round_goes_on(aggregator, round_idx):
    u = clipped_updates(np.random.default_rng(3), 3, SMALL_SIZE, clip=VALUE_BOUND)
    u[1, 5] = np.inf
    u[2, 0] = 3 * VALUE_BOUND
    res = aggregator.aggregate(u, np.array([7, 8, 9]), round_idx)
    assert res.n_accepted == 1 and set(res.rejected) == {8, 9}
    np.testing.assert_allclose(res.total, u[0].astype(np.float64), rtol=0, atol=_tol(aggregator, 1))


def test_dropout_is_fewer_rows(aggregator, round_idx):
    u = clipped_updates(np.random.default_rng(4), 4, SMALL_SIZE, clip=VALUE_BOUND)
    res = aggregator.aggregate(u[[0, 2]], np.array([0, 2]), round_idx)
    assert res.n_accepted == 2
    np.testing.assert_allclose(
        res.total, u[[0, 2]].astype(np.float64).sum(0), rtol=0, atol=_tol(aggregator, 2)
    )


def test_empty_cohort_returns_the_noise(aggregator, round_idx):
    noise = np.full(SMALL_SIZE, 0.75)
    res = aggregator.aggregate(
        np.zeros((0, SMALL_SIZE), np.float32), np.zeros(0, np.int64), round_idx, noise
    )
    assert res.n_accepted == 0 and res.upload_bytes == 0
    np.testing.assert_allclose(res.total, noise, rtol=0, atol=_tol(aggregator, 0))


def test_none_message_is_a_dropout(aggregator, round_idx):
    res = aggregator.aggregate_messages({4: None}, round_idx)
    assert res.dropped == [4] and res.n_accepted == 0
    np.testing.assert_allclose(res.total, 0.0, atol=_tol(aggregator, 0))


def test_a_streamed_round_equals_the_same_rows_at_once(aggregator, round_idx):
    """``aggregate_stream`` over chunks (one consumed at a time) gives ``aggregate``'s sum."""
    u = clipped_updates(np.random.default_rng(5), 7, SMALL_SIZE, clip=VALUE_BOUND)
    ids = np.arange(20, 27)
    pulled: list[int] = []

    def chunks():
        for lo in range(0, 7, 3):  # 3 + 3 + 1 rows
            pulled.append(lo)
            yield ids[lo : lo + 3], u[lo : lo + 3]

    res = aggregator.aggregate_stream(chunks(), 7, round_idx)
    assert pulled == [0, 3, 6] and res.n_accepted == 7 and not res.rejected
    np.testing.assert_allclose(
        res.total, u.astype(np.float64).sum(0), rtol=0, atol=_tol(aggregator, 7)
    )


@pytest.mark.parametrize(
    ("chunk_ids", "n_devices", "message"),
    [
        ([[1, 2], [2, 3]], 4, "must be unique within a round"),  # a repeat across chunks
        ([[1, 2], [3, 4]], 3, "more than 3 rows"),  # more rows than announced
    ],
)
def test_a_stream_that_breaks_the_contract_is_refused(
    aggregator, round_idx, chunk_ids, n_devices, message
):
    rng = np.random.default_rng(6)
    chunks = [
        (np.array(c), clipped_updates(rng, len(c), SMALL_SIZE, clip=VALUE_BOUND)) for c in chunk_ids
    ]
    with pytest.raises(ValueError, match=message):
        aggregator.aggregate_stream(iter(chunks), n_devices, round_idx)

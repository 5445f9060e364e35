"""Malformed device payloads are rejected with a logged reason; the round always completes.

A byte flipped in transport is caught by the frame's digest (before this, a flipped byte inside a
ciphertext usually still parsed, was accepted, and made the key holder refuse the whole round);
a device that flips a byte of its own ciphertext and frames it with a valid digest sends a
well-formed ciphertext of garbage, which nothing before decryption can tell apart: the key holder
then refuses the round (documented; tests/crypto/test_malicious.py measures the cost).
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
import tenseal as ts
from crypto_testutils import SMALL_SIZE, clipped_updates

from ppr.crypto import (
    AggregateRejectedError,
    AggregationSpec,
    Aggregator,
    CkksParams,
    CkksSecureAggregation,
    DeviceEncryptor,
    KeyHolder,
    decode_frame,
    encode_frame,
    precision_bound,
)

ROUNDS = itertools.count(100)


@pytest.fixture(scope="module")
def secure():
    with CkksSecureAggregation(SMALL_SIZE) as agg:
        yield agg


@pytest.fixture(scope="module")
def good_rows():
    return clipped_updates(np.random.default_rng(11), 2, SMALL_SIZE).astype(np.float64)


def _other_chunks(
    params: CkksParams, scale: float | None = None, n: int | None = None
) -> list[bytes]:
    holder = KeyHolder(AggregationSpec(SMALL_SIZE, 1.0, params))
    ctx = ts.context_from(holder.public_context())
    size = n or params.slots
    return [ts.ckks_vector(ctx, [0.1] * size, scale=scale).serialize() for _ in range(2)]


def _own_chunks(secure, scale: float | None = None, n: int | None = None) -> list[bytes]:
    ctx = ts.context_from(secure.public_context)
    size = n or secure.spec.params.slots
    return [ts.ckks_vector(ctx, [0.1] * size, scale=scale).serialize() for _ in range(2)]


def _flipped(frame: bytes, position: int) -> bytes:
    out = bytearray(frame)
    out[position] ^= 0x10
    return bytes(out)


def _bad_payload(case: str, secure, round_idx: int) -> object:
    rng = np.random.default_rng(0)
    dev = DeviceEncryptor(secure.public_context, secure.spec)
    good = dev.encrypt(np.full(SMALL_SIZE, 0.5), round_idx)
    _, chunks = decode_frame(good)
    return {
        "flipped_byte": _flipped(good, len(good) // 2),
        "garbage_bytes": rng.bytes(4000),
        "empty_bytes": b"",
        "garbage_chunks": [rng.bytes(60000), rng.bytes(60000)],
        "too_few_chunks": encode_frame(chunks[:1], round_idx),
        "too_many_chunks": encode_frame([*chunks, chunks[0]], round_idx),
        "truncated_chunk": [chunks[0][: len(chunks[0]) // 2], chunks[1]],
        "oversized_chunk": [b"\0" * 500_000, chunks[1]],
        "not_bytes": [123, None],
        "other_round": dev.encrypt(np.full(SMALL_SIZE, 0.5), round_idx + 1),
        "other_degree": _other_chunks(CkksParams(8192, (56, 60), 40)),
        "other_primes": _other_chunks(CkksParams(4096, (54, 55), 40)),
        "other_scale": _own_chunks(secure, scale=2.0**30),
        "wrong_size": _own_chunks(secure, n=100),
    }[case]


CASES = [
    ("flipped_byte", "digest mismatch"),
    ("garbage_bytes", "not a ppr ciphertext frame"),
    ("empty_bytes", "shorter than the frame header"),
    ("garbage_chunks", "not a ciphertext under the round's parameters"),
    ("too_few_chunks", "1 chunks, expected 2"),
    ("too_many_chunks", "3 chunks, expected 2"),
    ("truncated_chunk", "not a ciphertext under the round's parameters"),
    ("oversized_chunk", "limit"),
    ("not_bytes", "not bytes"),
    ("other_round", "frame is for round"),
    ("other_degree", "chunk 0"),
    ("other_primes", "not a ciphertext under the round's parameters"),
    ("other_scale", "scale 2^30"),
    ("wrong_size", "holds 100 values"),
]


@pytest.mark.parametrize(("case", "reason"), CASES)
def test_malformed_update_is_rejected_and_the_round_completes(
    case, reason, secure, good_rows, caplog
):
    caplog.set_level(logging.WARNING, logger="ppr.crypto")
    r = next(ROUNDS)
    dev = DeviceEncryptor(secure.public_context, secure.spec)
    messages = {
        1: dev.encrypt(good_rows[0], r),
        7: _bad_payload(case, secure, r),
        2: dev.encrypt(good_rows[1], r),
    }
    result = secure.aggregate_messages(messages, r)
    assert result.n_accepted == 2
    assert set(result.rejected) == {7}
    assert reason in result.rejected[7]
    assert any(
        "device 7" in rec.getMessage() and reason in rec.getMessage() for rec in caplog.records
    )
    bound = precision_bound(secure.spec.params, 2)
    np.testing.assert_allclose(result.total, good_rows.sum(axis=0), rtol=0, atol=bound)


def test_dropouts_do_not_stall_the_round(secure, good_rows):
    r = next(ROUNDS)
    dev = DeviceEncryptor(secure.public_context, secure.spec)
    result = secure.aggregate_messages({1: dev.encrypt(good_rows[0], r), 2: None, 3: None}, r)
    assert result.n_accepted == 1 and result.dropped == [2, 3] and not result.rejected
    np.testing.assert_allclose(
        result.total, good_rows[0], atol=precision_bound(secure.spec.params, 1)
    )


def test_all_devices_dropped_gives_the_noise_alone(secure):
    r = next(ROUNDS)
    noise = np.linspace(-3, 3, SMALL_SIZE)
    result = secure.aggregate_messages({1: None}, r, noise=noise)
    assert result.n_accepted == 0
    np.testing.assert_allclose(result.total, noise, atol=precision_bound(secure.spec.params, 0))


def test_device_refuses_non_finite_and_unclipped_updates(secure, good_rows, caplog):
    caplog.set_level(logging.WARNING, logger="ppr.crypto")
    rows = np.vstack([good_rows, good_rows[:1] * np.nan, good_rows[:1] * 0 + 2.0])
    result = secure.aggregate(rows, np.array([1, 2, 3, 4]), next(ROUNDS))
    assert result.n_accepted == 2
    assert "non-finite" in result.rejected[3] and "value bound" in result.rejected[4]
    np.testing.assert_allclose(
        result.total, good_rows.sum(0), atol=precision_bound(secure.spec.params, 2)
    )


def test_duplicate_payload_in_a_round_is_rejected(secure, good_rows):
    agg = Aggregator(secure.public_context, secure.spec)
    dev = DeviceEncryptor(secure.public_context, secure.spec)
    agg.start_round(0)
    assert agg.receive(5, dev.encrypt(good_rows[0], 0)) is None
    assert "duplicate" in agg.receive(5, dev.encrypt(good_rows[1], 0))
    assert agg.n_accepted == 1


def test_another_keys_ciphertext_passes_the_aggregator_but_the_key_holder_rejects_the_round(
    secure, good_rows
):
    """Same parameters, other key: undetectable before decryption (documented); the decrypted
    garbage exceeds what the accepted cohort can reach, so the key holder rejects the round."""
    r = next(ROUNDS)
    other = KeyHolder(secure.spec)
    intruder = DeviceEncryptor(other.public_context(), secure.spec)
    dev = DeviceEncryptor(secure.public_context, secure.spec)
    messages = {1: dev.encrypt(good_rows[0], r), 9: intruder.encrypt(good_rows[1], r)}
    with pytest.raises(AggregateRejectedError, match="exceeds the bound"):
        secure.aggregate_messages(messages, r)
    assert secure.aggregator.n_accepted == 2  # the aggregator could not tell


# header (magic, version, round, count), length table, digest, chunk start / middle / last byte
FLIP_AT = {"magic": 0, "version": 4, "round": 6, "count": 13, "lengths": 18, "digest": 30}


@pytest.mark.parametrize("where", [*FLIP_AT, "chunk_start", "chunk_middle", "last_byte"])
def test_a_byte_flipped_in_transport_costs_only_its_sender(where, secure, good_rows):
    r = next(ROUNDS)
    dev = DeviceEncryptor(secure.public_context, secure.spec)
    good = dev.encrypt(good_rows[1], r)
    header = 4 + 1 + 8 + 4 + 4 * secure.spec.n_chunks + 32
    position = {
        **FLIP_AT,
        "chunk_start": header + 3,
        "chunk_middle": (header + len(good)) // 2,
        "last_byte": len(good) - 1,
    }[where]
    result = secure.aggregate_messages(
        {1: dev.encrypt(good_rows[0], r), 7: _flipped(good, position)}, r
    )
    assert result.n_accepted == 1 and set(result.rejected) == {7}
    bound = precision_bound(secure.spec.params, 1)
    np.testing.assert_allclose(result.total, good_rows[0], rtol=0, atol=bound)


def test_a_device_that_frames_a_flipped_ciphertext_itself_costs_the_round(secure, good_rows):
    """Undetectable before decryption: a valid digest over a ciphertext of garbage. The
    aggregator accepts it (its coefficients look as random as any ciphertext's) and the key
    holder refuses the whole aggregate."""
    r = next(ROUNDS)
    dev = DeviceEncryptor(secure.public_context, secure.spec)
    _, chunks = decode_frame(dev.encrypt(good_rows[1], r))
    for offset in range(200, 20_000, 997):  # most single-bit flips still parse (~87 %)
        bad = [_flipped(chunks[0], len(chunks[0]) - offset), chunks[1]]
        probe = Aggregator(secure.public_context, secure.spec)
        probe.start_round(r)
        if probe.receive(9, encode_frame(bad, r)) is None:
            break
    else:
        pytest.fail("no flipped ciphertext parsed")
    messages = {1: dev.encrypt(good_rows[0], r), 9: encode_frame(bad, r)}
    with pytest.raises(AggregateRejectedError, match="well-formed ciphertext of garbage"):
        secure.aggregate_messages(messages, r)
    assert secure.aggregator.n_accepted == 2 and not secure.aggregator.rejected

"""Who holds what: public contexts, one decryption per round, no secret key in logs."""

from __future__ import annotations

import base64
import logging
import pickle

import numpy as np
import pytest
import tenseal as ts
from crypto_testutils import SMALL_SIZE, clipped_updates

from ppr.crypto import (
    Aggregator,
    CkksSecureAggregation,
    DeviceEncryptor,
    ProtocolError,
    decode_frame,
    default_params,
)


def _private_context_bytes() -> bytes:
    p = default_params()
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS, p.poly_modulus_degree, coeff_mod_bit_sizes=list(p.coeff_mod_bit_sizes)
    )
    ctx.global_scale = p.scale
    return ctx.serialize(save_secret_key=True)


def test_public_context_holds_no_secret_and_no_evaluation_keys(key_holder):
    ctx = ts.context_from(key_holder.public_context())
    assert not ctx.is_private()
    assert ctx.is_public()
    assert not ctx.has_secret_key()
    assert not ctx.has_relin_keys()
    assert not ctx.has_galois_keys()


def test_aggregator_context_is_public_and_decrypting_with_it_fails(spec, key_holder, device):
    agg = Aggregator(key_holder.public_context(), spec)
    assert agg.context.is_public() and not agg.context.has_secret_key()
    _, chunks = decode_frame(device.encrypt(np.full(SMALL_SIZE, 0.25), 0))
    vec = ts.ckks_vector_from(agg.context, chunks[0])
    with pytest.raises(ValueError, match="secret"):
        vec.decrypt()


@pytest.mark.parametrize("role", [Aggregator, DeviceEncryptor])
def test_roles_refuse_a_context_with_a_secret_key(spec, role):
    with pytest.raises(ProtocolError, match="public context only"):
        role(_private_context_bytes(), spec)


def test_key_holder_decrypts_once_per_round(spec, key_holder, device):
    agg = Aggregator(key_holder.public_context(), spec)
    x = np.linspace(-1, 1, SMALL_SIZE)
    agg.start_round(41)
    assert agg.receive(1, device.encrypt(x, 41)) is None
    payload = agg.finish()
    released = key_holder.decrypt_aggregate(payload, 41, n_summed=1)
    total = released.total
    assert total.dtype == np.float64 and total.shape == (SMALL_SIZE,)
    np.testing.assert_allclose(total, x, atol=released.flooding.error_bound)
    assert key_holder.has_decrypted(41)
    with pytest.raises(ProtocolError, match="already decrypted"):
        key_holder.decrypt_aggregate(payload, 41, n_summed=1)


def test_orchestrator_refuses_to_aggregate_a_round_twice():
    rng = np.random.default_rng(3)
    with CkksSecureAggregation(SMALL_SIZE) as agg:
        u = clipped_updates(rng, 2, SMALL_SIZE)
        agg.aggregate(u, np.array([1, 2]), round_idx=0)
        with pytest.raises(ProtocolError, match="already"):
            agg.aggregate(u, np.array([1, 2]), round_idx=0)


def test_key_holder_cannot_be_pickled_and_repr_shows_no_key(key_holder):
    with pytest.raises(TypeError, match="secret key"):
        pickle.dumps(key_holder)
    assert len(repr(key_holder)) < 200


def test_secret_key_is_never_logged_nor_in_the_public_context(caplog):
    caplog.set_level(logging.DEBUG)
    rng = np.random.default_rng(5)
    with CkksSecureAggregation(SMALL_SIZE) as agg:
        agg.aggregate(clipped_updates(rng, 3, SMALL_SIZE), np.array([1, 2, 3]), 0)
        bad = {1: rng.bytes(3000), 2: None, 3: [b"x"], 4: agg.public_context}
        agg.aggregate_messages(bad, 1)
        with pytest.raises(ProtocolError):
            agg.aggregate_messages(bad, 1)
        # Only the test reaches into the key holder, to know what must not leak.
        secret = agg._key_holder._ctx.serialize(
            save_public_key=False,
            save_secret_key=True,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        public = agg.public_context
        kh_repr = repr(agg._key_holder)
    assert caplog.records, "the rounds above must have logged rejections"
    text = caplog.text + kh_repr
    assert max(len(r.getMessage()) for r in caplog.records) < 400
    step = max(1, len(secret) // 16)
    for start in range(len(secret) // 2, len(secret) - 32, step):
        window = secret[start : start + 32]
        assert window not in public
        for form in (window.hex(), base64.b64encode(window).decode(), repr(window)[2:-1]):
            assert form not in text

"""BFV integer aggregation of packed DDG slots: exact modular sums, the role split, the limits."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts

from ppr.crypto.errors import ProtocolError
from ppr.crypto.integer import (
    MAX_SUMMANDS,
    POLY_MODULUS_DEGREE,
    IntegerAggregator,
    IntegerKeyHolder,
    _is_prime,
    batching_prime,
    encrypt_slots,
)
from ppr.federated.quantize import MAX_MODULUS_BITS, pack, packed_width, plain_modulus_bits


def test_batching_prime():
    for bits in (20, 42, 45):
        t = batching_prime(bits)
        assert t.bit_length() == bits and t % (2 * POLY_MODULUS_DEGREE) == 1 and _is_prime(t)
    assert not _is_prime(2**41 + 1) and _is_prime(2**61 - 1)
    with pytest.raises(ValueError):
        batching_prime(46)
    assert max(plain_modulus_bits(b) for b in range(8, 41)) <= MAX_MODULUS_BITS


@pytest.fixture(scope="module")
def holder() -> IntegerKeyHolder:
    return IntegerKeyHolder(plain_modulus_bits(20))


def test_encrypted_sum_is_bitwise_the_modular_sum(holder):
    rng = np.random.default_rng(0)
    bits = 20
    z = rng.integers(-(2**19), 2**19, size=(6, 2 * 5000))  # 5,000 slots: 2 ciphertexts each
    slots = pack(z, bits)
    assert packed_width(bits) == 2 and slots.shape == (6, 5000)
    uploads = [encrypt_slots(holder.public_context, s) for s in slots]
    assert all(len(u) == 2 for u in uploads)
    summed = IntegerAggregator(holder.public_context).sum(uploads)
    dec = holder.decrypt_sum(summed, 5000)
    assert np.array_equal(dec, np.mod(slots.sum(0), holder.modulus))


def test_public_context_has_no_secret_key(holder):
    assert not ts.context_from(holder.public_context).is_private()
    with pytest.raises(ProtocolError):
        IntegerAggregator(holder.public_context).sum(_bad(holder))


def _bad(holder):
    one = encrypt_slots(holder.public_context, np.zeros(10, np.int64))
    return [one, one + one]  # the second device sends two ciphertexts


def test_noise_budget_covers_max_summands_at_the_largest_modulus():
    """Doubling one ciphertext 14 times adds MAX_SUMMANDS copies of the *same* noise (linear
    growth, worse than independent uploads): the decryption is still exact at 45-bit t."""
    kh = IntegerKeyHolder(MAX_MODULUS_BITS)
    assert MAX_SUMMANDS == 2**14
    rng = np.random.default_rng(1)
    v = rng.integers(-(kh.modulus // 2**16), kh.modulus // 2**16, size=POLY_MODULUS_DEGREE)
    ctx = ts.context_from(kh.public_context)
    c = ts.bfv_vector_from(ctx, encrypt_slots(kh.public_context, v)[0])
    for _ in range(14):
        c = c + c
    dec = kh.decrypt_sum([c.serialize()], v.size)
    assert np.array_equal(dec, np.mod(v * MAX_SUMMANDS, kh.modulus))

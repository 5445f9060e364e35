"""Quantization of DDG uploads: rotation, conditional rounding, the exact overflow bound, packing.

The overflow tests are exact (integer arithmetic): adversarial devices at the largest possible
coordinate, as many as the cohort cap allows, sum without wrapping, and packed sums decode to
the true per-coordinate sums whenever every field is inside its range.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import hadamard

from ppr.crypto.integer import batching_prime
from ppr.federated.quantize import (
    decode_sum,
    encode_rows,
    fwht,
    pack,
    packed_width,
    padded_dim,
    plain_modulus_bits,
    rotation_signs,
    unpack_sum,
)
from ppr.privacy.ddg import ddg_params


def test_fwht_is_the_normalized_hadamard_and_an_involution():
    rng = np.random.default_rng(0)
    for d in (1, 2, 64, 1024, 2048):
        x = rng.normal(size=(3, d))
        np.testing.assert_allclose(fwht(x), x @ hadamard(d) / math.sqrt(d), atol=1e-12)
        np.testing.assert_allclose(fwht(fwht(x)), x, atol=1e-12)
    with pytest.raises(ValueError):
        fwht(np.zeros((1, 12)))
    assert padded_dim(26912) == 32768 and padded_dim(1024) == 1024


def test_rotation_signs_are_public_and_per_round():
    a, b = rotation_signs(0, 1, 64), rotation_signs(0, 2, 64)
    assert set(np.unique(a)) == {-1.0, 1.0}
    assert np.array_equal(a, rotation_signs(0, 1, 64)) and not np.array_equal(a, b)


def _max_coordinate_rows(params, signs, n: int, d: int, j: int) -> np.ndarray:
    """``n`` devices whose rotated update puts all of its norm C on coordinate ``j``."""
    e = np.zeros(params.dim)
    e[j] = params.clip_norm
    x = fwht(e[None, :])[0] * signs  # rotation^{-1}(C e_j)
    return np.repeat(x[None, :d], n, axis=0)


def test_rounding_norm_bound_holds_exactly():
    d = 256
    p = ddg_params(1.0, d, 14, 50, 50, 0.0, granularity=0.01)
    signs = rotation_signs(3, 0, d)
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(50, d))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)  # every device at the clip norm
    z = encode_rows(rows, p, signs, rng)
    assert z.dtype == np.int64
    assert np.linalg.norm(z, axis=1).max() <= p.l2_bound
    # unbiased: the rounded sum is the exact sum plus small rounding noise
    err = z.sum(0) - fwht(rows * 1.0 @ np.eye(d) * signs).sum(0) / p.granularity
    assert np.abs(err).max() < 6 * math.sqrt(50) / 2 + 1


@pytest.mark.parametrize("sigma", [0.0, 2.0])
def test_overflow_bound_is_exact_for_adversarial_max_inputs(sigma):
    """``n_cap`` devices all at the largest coordinate value: the signal part of the sum stays
    inside ``2^(b-1)`` in every coordinate (exactly), and the packed modular sum decodes to the
    true integer sum (the noise stays inside its tail bound)."""
    d, bits, n_cap = 1024, 16, 120  # d = D: no padding, so a row can hit one rotated axis
    D = padded_dim(d)
    p = ddg_params(1.0, D, bits, n_cap, n_cap, sigma)
    signs = rotation_signs(0, 5, D)
    rows = _max_coordinate_rows(p, signs, n_cap, D, j=7)
    rng = np.random.default_rng(2)
    q0 = ddg_params(1.0, D, bits, n_cap, n_cap, 0.0, granularity=p.granularity)
    signal = encode_rows(rows, q0, signs, rng)
    assert np.abs(signal).max() <= math.floor(p.coord_bound) + 1
    assert np.abs(signal[:, 7]).min() >= math.floor(p.coord_bound)  # they really are at the max
    assert int(np.abs(signal.sum(0)).max()) <= n_cap * (math.floor(p.coord_bound) + 1)
    assert n_cap * (math.floor(p.coord_bound) + 1) + p.noise_tail <= 2 ** (bits - 1) - 1
    z = encode_rows(rows, p, signs, rng)
    true = z.sum(0)
    assert np.abs(true).max() < 2 ** (bits - 1)
    t = batching_prime(plain_modulus_bits(bits))
    assert t > 2 ** (packed_width(bits) * bits + 1)
    decoded = unpack_sum(np.mod(pack(z, bits).sum(0), t), bits, t)
    assert np.array_equal(decoded, true)
    # the adversarial (non-flat) rows were clipped to L on their axis: a bias, not a wrap
    noise_sd = p.share_stddev * math.sqrt(n_cap)
    assert abs(decoded[7] - n_cap * p.coord_bound) <= n_cap + 6 * noise_sd
    est = decode_sum(decoded, p, signs, D)
    assert est @ rows[0] == pytest.approx(decoded[7] * p.granularity, rel=1e-9)


def test_packed_sums_decode_exactly_at_the_field_limits():
    """Any per-field sums in ``[-(2^(b-1) - 1), 2^(b-1) - 1]``, split over devices in any way,
    decode exactly from the sum of packed slots modulo t; a field beyond it wraps modulo 2^b
    and carries one step to the next field."""
    rng = np.random.default_rng(4)
    for bits in (8, 14, 20):
        k = packed_width(bits)
        t = batching_prime(plain_modulus_bits(bits))
        lim = 2 ** (bits - 1) - 1
        target = rng.integers(-lim, lim + 1, size=k * 64)
        target[:k] = lim  # extremes in the first slot of every field
        target[64 : 64 + 1] = -lim
        parts = rng.integers(-(2 ** (bits - 3)), 2 ** (bits - 3), size=(5, target.size))
        parts[-1] = target - parts[:-1].sum(0)  # only the field sums matter
        total = np.mod(pack(parts, bits).sum(0), t)
        assert np.array_equal(unpack_sum(total, bits, t), target)
    bits, t = 8, batching_prime(plain_modulus_bits(8))
    over = np.zeros((1, packed_width(bits) * 4), np.int64)
    over[0, 0] = 100
    twice = np.mod(pack(over, bits).sum(0) * 2, t)  # field 0 sums to 200 > 127
    dec = unpack_sum(twice, bits, t)
    assert dec[0] == 200 - 256 and dec[4] == 1  # wrapped mod 2^8, carry into field 1


def test_quantized_sum_estimates_the_float_sum():
    d, n = 1000, 200
    D = padded_dim(d)
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(n, d))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    p = ddg_params(1.0, D, 20, n, n, 0.0)
    signs = rotation_signs(1, 1, D)
    z = encode_rows(rows, p, signs, rng)
    est = decode_sum(z.sum(0), p, signs, d)
    # rounding noise: per coordinate std <= γ sqrt(n) / 2
    assert np.abs(est - rows.sum(0)).max() < 6 * p.granularity * math.sqrt(n) / 2

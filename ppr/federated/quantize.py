"""Device-side quantization of the distributed discrete Gaussian (KLS 2021) and its packing.

One device's upload (:func:`encode_rows`, vectorized over a chunk of devices)::

    x (clipped, ||x|| <= C)  ->  pad to D = 2^k, flip signs, normalized Hadamard (rotation)
      ->  / γ  ->  clip each coordinate to [-L, L]  ->  conditional randomized rounding
      (re-round until ||round|| <= the exact bound)  ->  + N_Z(0, s²) share  ->  int64

The rotation's signs are public, drawn per round from :func:`rotation_signs` (``seed``, round):
the server undoes the rotation of the sum (:func:`decode_sum`). The coordinate clip never
increases the norm, so the sensitivity analysis (:mod:`ppr.privacy.ddg`) is unchanged; with the
flattening it binds with probability ``<= FLATTEN_FAILURE`` per device; it makes the overflow
bound exact for the signal (``|Σ round| <= n (L + 1)``).

Packing (:func:`pack`, :func:`unpack_sum`): ``k`` signed ``b``-bit fields per integer slot,
``v = Σ_j z_j 2^{j b}``, coordinate ``j S + i`` in field ``j`` of slot ``i`` (``S = D / k``).
Sums of packed slots are taken modulo a plaintext modulus ``t > 2^{k b + 1}`` (BFV's, or the
same arithmetic in int64); the sum is decoded by signed digits: field 0 is the centered residue
of the sum mod ``2^b``, subtract it, shift, repeat. Decoding is exact whenever every field's
true sum lies in ``[-2^{b-1}, 2^{b-1})``, which is what the overflow bound of
:class:`~ppr.privacy.ddg.DdgParams` guarantees (exactly for the signal; for the noise except
with probability ``OVERFLOW_FAILURE``). A field that does wrap is decoded modulo ``2^b`` (the
paper's modular clipping) and passes a carry of ±1 grid step to the next field.
"""

from __future__ import annotations

import math

import numpy as np

from ppr.privacy.ddg import DdgParams, sample_discrete_gaussian

__all__ = [
    "decode_sum",
    "encode_rows",
    "fwht",
    "pack",
    "packed_width",
    "padded_dim",
    "plain_modulus_bits",
    "rotation_signs",
    "unpack_sum",
]

#: the largest plaintext modulus used for packed slots (BFV at N = 4096 decrypts sums of
#: >= 1024 ciphertexts exactly at 45 bits with the (36, 36, 37)-bit modulus)
MAX_MODULUS_BITS = 45


def padded_dim(d: int) -> int:
    """The Hadamard dimension: the next power of two ``>= d``."""
    return 1 << max(int(d) - 1, 0).bit_length()


def packed_width(bits: int) -> int:
    """``k``: fields of ``bits`` per slot so that ``k bits + 2 <= MAX_MODULUS_BITS``."""
    return max(1, (MAX_MODULUS_BITS - 2) // int(bits))


def plain_modulus_bits(bits: int) -> int:
    """Bit length of the plaintext modulus ``t`` of packed slots: ``k b + 2`` (``t > 2^{kb+1}``)."""
    return packed_width(bits) * int(bits) + 2


def rotation_signs(seed: int, round_idx: int, dim: int) -> np.ndarray:
    """The round's public random signs (±1.0, float64), from ``(seed, round)``."""
    rng = np.random.default_rng([int(seed), int(round_idx), 0x0DD6])
    return rng.choice(np.array([-1.0, 1.0]), size=int(dim))


def _hadamard(n: int) -> np.ndarray:
    """Sylvester's ``n x n`` Hadamard matrix (``n`` a power of two), entries ±1."""
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def fwht(x: np.ndarray) -> np.ndarray:
    """Normalized Walsh-Hadamard transform along the last axis (length a power of two): an
    orthogonal, symmetric involution (``fwht(fwht(x)) == x`` up to float rounding).

    Sylvester's ``H_{ab} = H_a ⊗ H_b``: the row is viewed as a tensor with axes of at most 32 and
    each axis is multiplied by its small Hadamard matrix (BLAS matmuls)."""
    x = np.asarray(x, dtype=np.float64)
    d = x.shape[-1]
    if d & (d - 1):
        raise ValueError(f"the Hadamard length must be a power of two. Found {d}.")
    m, sizes, rest = x.size // max(d, 1), [], d
    while rest > 1:
        sizes.append(min(32, rest))
        rest //= sizes[-1]
    y = x.reshape(m, *sizes)
    for axis, f in enumerate(sizes, start=1):  # contiguous GEMMs: the axis moved last
        v = np.moveaxis(y, axis, -1)
        y = np.moveaxis(v @ _hadamard(f), -1, axis)
    return (np.ascontiguousarray(y).reshape(x.shape) / math.sqrt(d))


def _rotate(rows: np.ndarray, signs: np.ndarray) -> np.ndarray:
    m, d = rows.shape
    padded = np.zeros((m, signs.size), np.float64)
    padded[:, :d] = rows
    return fwht(padded * signs)


def _conditional_round(rng: np.random.Generator, y: np.ndarray, l2_bound: float) -> np.ndarray:
    """Randomized rounding (``floor + Bernoulli(frac)``, unbiased) of each row, repeated for the
    rows whose rounded norm exceeds ``l2_bound`` until none does."""
    base = np.floor(y)
    frac = y - base
    out = base + (rng.random(y.shape) < frac)
    bad = np.flatnonzero(np.linalg.norm(out, axis=1) > l2_bound)
    for _ in range(1000):
        if bad.size == 0:
            return out.astype(np.int64)
        out[bad] = base[bad] + (rng.random((bad.size, y.shape[1])) < frac[bad])
        bad = bad[np.linalg.norm(out[bad], axis=1) > l2_bound]
    raise RuntimeError("conditional rounding did not meet its norm bound in 1000 tries.")


def encode_rows(
    rows: np.ndarray, params: DdgParams, signs: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """What a chunk of devices sends before packing: ``(m, D)`` int64 (module docstring).
    ``rows`` are the clipped float updates ``(m, d)``; ``rng`` their secret randomness."""
    y = _rotate(np.asarray(rows, np.float64), signs) / params.granularity
    np.clip(y, -params.coord_bound, params.coord_bound, out=y)
    z = _conditional_round(rng, y, params.l2_bound)
    if params.share_stddev > 0:
        z += sample_discrete_gaussian(rng, params.share_stddev, z.size).reshape(z.shape)
    return z


def pack(z: np.ndarray, bits: int) -> np.ndarray:
    """``(m, D)`` signed integers -> ``(m, D / k)`` int64 slots ``Σ_j z[:, j S + i] 2^{j b}``.
    Every ``|z| < 2^{b-1}`` (one device's values) keeps ``|slot| < 2^{k b}``."""
    k = packed_width(bits)
    m, d = z.shape
    fields = np.asarray(z, np.int64).reshape(m, k, d // k)
    weights = np.left_shift(np.int64(1), np.arange(k, dtype=np.int64) * int(bits))
    return np.einsum("mks,k->ms", fields, weights)


def unpack_sum(total: np.ndarray, bits: int, modulus: int) -> np.ndarray:
    """Decode a sum of packed slots known modulo ``modulus`` into per-coordinate signed sums
    ``(D,)`` int64, by signed digits (module docstring)."""
    k, b = packed_width(bits), int(bits)
    t = int(modulus)
    v = np.mod(np.asarray(total, np.int64), t)
    v = np.where(v > t // 2, v - t, v)  # centered residue: the exact packed sum
    half, mask = 1 << (b - 1), (1 << b) - 1
    out = np.empty((k, v.size), np.int64)
    for j in range(k):
        digit = ((v + half) & mask) - half  # centered residue mod 2^b
        out[j] = digit
        v = (v - digit) >> b
    return out.reshape(-1)


def decode_sum(z_sum: np.ndarray, params: DdgParams, signs: np.ndarray, d: int) -> np.ndarray:
    """The server's estimate of the float sum ``(d,)``: rescale by γ, undo the rotation."""
    y = np.asarray(z_sum, np.float64) * params.granularity
    return (fwht(y[None, :])[0] * signs)[:d]


"""Exact integer secure aggregation: BFV batching (TenSEAL ``bfv_vector``) of packed slots.

Why BFV, and not integers packed into CKKS slots: BFV arithmetic on the plaintext slots is exact
modulo the plaintext modulus ``t`` (no approximation error, so no flooding at decryption and the
decrypted sum is *bitwise* the modular sum the plaintext simulation computes), and at
``N = 4096`` a ciphertext has 4,096 slots where CKKS has 2,048. Each slot carries ``k`` signed
``b``-bit fields (:mod:`ppr.federated.quantize`), e.g. two 20-bit values in a 42-bit ``t``.

Parameters: ``N = 4096``, coefficient modulus (36, 36, 37) bits (SEAL's 128-bit default for
``N = 4096``; the data level is the first two primes), ``t`` the smallest prime
``≡ 1 (mod 2N)`` above ``2^{bits - 1}`` (batching needs ``t ≡ 1 mod 2N``), ``bits <= 45``. Sums
of up to :data:`MAX_SUMMANDS` ciphertexts decrypt exactly at 45-bit ``t``
(``tests/crypto/test_integer.py``); the aggregator refuses more.

Roles: :class:`IntegerKeyHolder` makes the keys and decrypts only the sum;
:class:`IntegerAggregator` holds the public context and adds ciphertexts;
:func:`encrypt_slots` is the device side (public context only).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import tenseal as ts

from ppr.crypto.errors import ProtocolError

__all__ = [
    "MAX_SUMMANDS",
    "IntegerAggregator",
    "IntegerKeyHolder",
    "batching_prime",
    "encrypt_slots",
]

POLY_MODULUS_DEGREE = 4096
COEFF_MOD_BITS = (36, 36, 37)
MAX_SUMMANDS = 1 << 14

_SMALL_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for ``n < 3.3e24`` (the first 12 primes as bases)."""
    if n < 2:
        return False
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in _SMALL_PRIMES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def batching_prime(bits: int, n: int = POLY_MODULUS_DEGREE) -> int:
    """The smallest prime ``t ≡ 1 (mod 2n)`` with ``t >= 2^(bits-1)`` (``bits`` long)."""
    if not 20 <= int(bits) <= 45:
        raise ValueError(f"`bits` of the BFV plaintext modulus must be in [20, 45]. Found {bits}.")
    step = 2 * int(n)
    t = ((1 << (int(bits) - 1)) // step + 1) * step + 1
    while not _is_prime(t):
        t += step
    return t


def encrypt_slots(public_context: bytes, slots: np.ndarray) -> list[bytes]:
    """Device side: the int64 ``slots`` (``|v| < t/2``) as serialized BFV ciphertexts of
    :data:`POLY_MODULUS_DEGREE` slots each (the last zero-padded)."""
    ctx = ts.context_from(public_context)
    v = np.asarray(slots, np.int64).reshape(-1)
    n = POLY_MODULUS_DEGREE
    out = []
    for lo in range(0, v.size, n):
        part = np.zeros(n, np.int64)
        chunk = v[lo : lo + n]
        part[: chunk.size] = chunk
        out.append(ts.bfv_vector(ctx, part.tolist()).serialize())
    return out


class IntegerKeyHolder:
    """Holds the BFV secret key; gives out the public context; decrypts the aggregate only."""

    def __init__(self, modulus_bits: int) -> None:
        self.modulus = batching_prime(modulus_bits)
        self._ctx = ts.context(
            ts.SCHEME_TYPE.BFV,
            poly_modulus_degree=POLY_MODULUS_DEGREE,
            plain_modulus=self.modulus,
            coeff_mod_bit_sizes=list(COEFF_MOD_BITS),
        )
        pub = self._ctx.copy()
        pub.make_context_public()
        self.public_context = pub.serialize()

    def decrypt_sum(self, ciphertexts: Sequence[bytes], n_slots: int) -> np.ndarray:
        """The summed slots modulo ``t`` (int64 in ``[0, t)``), first ``n_slots`` of them."""
        parts = [
            np.asarray(ts.bfv_vector_from(self._ctx, c).decrypt(), np.int64) for c in ciphertexts
        ]
        return np.mod(np.concatenate(parts)[: int(n_slots)], self.modulus)


class IntegerAggregator:
    """Adds devices' ciphertexts under the public context (never sees a plaintext)."""

    def __init__(self, public_context: bytes) -> None:
        self._ctx = ts.context_from(public_context)

    def sum(self, uploads: Iterable[Sequence[bytes]]) -> list[bytes]:
        """The ciphertext-wise sum of every device's list (all of the same length)."""
        acc: list | None = None
        count = 0
        for upload in uploads:
            count += 1
            if count > MAX_SUMMANDS:
                raise ProtocolError(f"more than {MAX_SUMMANDS} uploads in one BFV sum.")
            vecs = [ts.bfv_vector_from(self._ctx, c) for c in upload]
            if acc is None:
                acc = vecs
            elif len(vecs) != len(acc):
                raise ProtocolError("an upload has the wrong number of ciphertexts.")
            else:
                for a, v in zip(acc, vecs, strict=True):
                    a += v
        return [] if acc is None else [a.serialize() for a in acc]

"""The Li-Micciancio passive key-recovery attack on CKKS, for real-slot releases (test helper).

Li and Micciancio (EUROCRYPT 2021, "On the security of homomorphic encryption on approximate
numbers"): a CKKS decryption is ``m' = c0 + c1 * s`` (mod Q) exactly, so whoever holds a
ciphertext and its exact decryption solves for the secret key ``s``. TenSEAL releases only the
real part of each slot, which is the "symmetric" part of ``m'``::

    t = m' + tau(m'),   tau(f)(X) = f(X^-1)   (the complex conjugation automorphism)

so at each pair of conjugate evaluation points (zeta, zeta^-1) of the NTT one ciphertext gives one
equation in the two unknowns s(zeta), s(zeta^-1)::

    t(zeta) - c0(zeta) - c0(zeta^-1) = c1(zeta) s(zeta) + c1(zeta^-1) s(zeta^-1)   (mod q)

and two ciphertexts under the same key (two chunks of one aggregate) give a 2x2 system per pair.
One data prime suffices: ``s`` is ternary, so ``s mod q0`` centred is ``s``.

Everything here is the attacker's arithmetic, in Python integers: SEAL's conventions are public
(its source): the primes of ``CoeffModulus::Create``, an NTT whose output ``i`` is the
evaluation at ``psi^(2 bitrev(i) + 1)`` with ``psi`` the smallest primitive 2N-th root of unity
mod q, and CKKS slot ``k`` at the complex root ``exp(i pi 3^k / N)``. Ciphertext and key words
are read through TenSEAL's own bindings (``Ciphertext.data(i)``, ``SecretKey.data()``): the
tests check the conventions against the real key (it must come out ternary) before relying on
them.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import tenseal as ts
import tenseal.sealapi as sa


@cache
def _seal_context(n: int, bit_sizes: tuple[int, ...]) -> sa.SEALContext:
    parms = sa.EncryptionParameters(sa.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(n)
    parms.set_coeff_modulus(sa.CoeffModulus.Create(n, list(bit_sizes)))
    return sa.SEALContext(parms, True, sa.SEC_LEVEL_TYPE.TC128)


def seal_primes(n: int, bit_sizes: tuple[int, ...]) -> list[int]:
    """The primes of SEAL's ``CoeffModulus::Create(n, bit_sizes)`` (public parameters)."""
    parms = _seal_context(n, tuple(bit_sizes)).key_context_data().parms()
    return [m.value() for m in parms.coeff_modulus()]


def _minimal_psi(n: int, q: int) -> int:
    """The smallest primitive 2n-th root of unity mod q (what SEAL's NTT tables use)."""
    g = 2
    while True:
        psi = pow(g, (q - 1) // (2 * n), q)
        if pow(psi, n, q) == q - 1:
            break
        g += 1
    best, x, step = psi, psi, psi * psi % q
    for _ in range(n - 1):
        x = x * step % q
        best = min(best, x)
    return best


def _bitrev(n: int) -> np.ndarray:
    bits = n.bit_length() - 1
    idx = np.arange(n)
    out = np.zeros(n, dtype=np.int64)
    for b in range(bits):
        out |= ((idx >> b) & 1) << (bits - 1 - b)
    return out


@cache
def _tables(n: int, q: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    psi = _minimal_psi(n, q)
    psi_pow = np.array([pow(psi, i, q) for i in range(n)], dtype=object)
    psi_inv = pow(psi, -1, q)
    psi_inv_pow = np.array([pow(psi_inv, i, q) for i in range(n)], dtype=object)
    return psi * psi % q, psi_pow, psi_inv_pow, _bitrev(n)


def _dft(x: np.ndarray, w: int, q: int) -> np.ndarray:
    """Cyclic DFT mod q (object array, power-of-two length), natural order in and out."""
    n = x.size
    if n == 1:
        return x
    even = _dft(x[0::2], w * w % q, q)
    odd = _dft(x[1::2], w * w % q, q)
    tw = np.array([pow(w, i, q) for i in range(n // 2)], dtype=object)
    t = odd * tw % q
    return np.concatenate([(even + t) % q, (even - t) % q])


def ntt(coeffs: np.ndarray, q: int) -> np.ndarray:
    """Evaluations ``f(psi^(2j+1))``, j = 0..n-1 (natural order) of a polynomial mod q."""
    n = coeffs.size
    w, psi_pow, _, _ = _tables(n, q)
    return _dft(np.asarray(coeffs, dtype=object) % q * psi_pow % q, w, q)


def intt(evals: np.ndarray, q: int) -> np.ndarray:
    """Inverse of :func:`ntt`: coefficients in [0, q)."""
    n = evals.size
    w, _, psi_inv_pow, _ = _tables(n, q)
    x = _dft(np.asarray(evals, dtype=object), pow(w, -1, q), q)
    return x * pow(n, -1, q) % q * psi_inv_pow % q


def from_seal_ntt(words: np.ndarray, q: int) -> np.ndarray:
    """SEAL's NTT words (bit-reversed order) -> evaluations in natural order."""
    return np.asarray(words, dtype=object)[_tables(words.size, q)[3]]


def centred(x: np.ndarray, q: int) -> np.ndarray:
    return np.array([int(v) - q if int(v) > q // 2 else int(v) for v in x], dtype=object)


def conj_index(n: int) -> np.ndarray:
    """Natural-order index of zeta^-1 for the evaluation point of index j: n - 1 - j."""
    return n - 1 - np.arange(n)


# --- reading TenSEAL objects -----------------------------------------------------------------


def ciphertext_words(vec: ts.CKKSVector, bit_sizes: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """Raw words of a one-ciphertext vector, shape (2, k, n) (NTT form, per data prime), and its
    scale. TenSEAL's binding gives one word per polynomial only, so the ciphertext goes through
    SEAL's own format into a ``tenseal.sealapi`` object, whose words are readable."""
    ct = vec.ciphertext()[0]
    n, k = ct.poly_modulus_degree(), ct.coeff_modulus_size()
    if ct.size() != 2 or not ct.is_ntt_form():
        raise ValueError("expected a fresh (size 2, NTT form) ciphertext")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "ct")
        ct.save(path)
        loaded = sa.Ciphertext()
        loaded.load(_seal_context(n, tuple(bit_sizes)), path)
    arr = loaded.dyn_array()
    words = np.array([arr.at(i) for i in range(arr.size())], dtype=object)
    return words.reshape(2, k, n), float(ct.scale)


def secret_key_words(ctx: ts.Context, n: int, k: int) -> np.ndarray:
    """The secret key's NTT words for the first ``k`` primes, shape (k, n) (test-side only)."""
    pt = ctx.secret_key().data.data()
    return np.array([pt.data(i) for i in range(k * n)], dtype=object).reshape(k, n)


def exact_plaintext_words(ctx: ts.Context, vec: ts.CKKSVector) -> np.ndarray:
    """SEAL's exact decryption (the plaintext polynomial, NTT form), shape (k, n): what a key
    holder that released exact decryptions would hold."""
    import _tenseal_cpp as tc  # TenSEAL's own SEAL bindings

    ct = vec.ciphertext()[0]
    n, k = ct.poly_modulus_degree(), ct.coeff_modulus_size()
    pt = tc.Plaintext()
    ctx.data.decryptor().decrypt(ct, pt)
    return np.array([pt.data(i) for i in range(k * n)], dtype=object).reshape(k, n)


# --- CKKS encoding conventions ---------------------------------------------------------------


def slot_roots(n: int) -> np.ndarray:
    """Natural-order evaluation index j (root exp(i pi (2j+1)/n)) of CKKS slot k."""
    pos = np.array([pow(3, k, 2 * n) for k in range(n // 2)], dtype=np.int64)
    return (pos - 1) // 2


def symmetric_from_slots(real_slots: np.ndarray, scale: float) -> np.ndarray:
    """``t = m' + tau(m')`` (integers) from the real parts of all n/2 slots of ``m' / scale``.

    ``t`` evaluates to ``2 Re(m'(xi))`` at each slot root and its conjugate: fill every one of
    the n roots and invert the canonical embedding, at scale ``2 * scale``; exact (after
    rounding) when the slots carry the exact decryption and ``2 * scale * |slots|`` stays well
    inside float64's 53 bits.
    """
    z = np.asarray(real_slots, dtype=np.float64)
    n = 2 * z.size
    evals = np.zeros(n, dtype=np.complex128)
    j = slot_roots(n)
    evals[j] = 2.0 * scale * z
    evals[n - 1 - j] = 2.0 * scale * z
    omega = np.exp(1j * np.pi * np.arange(n) / n)
    coeffs = np.fft.fft(evals) / n / omega  # evals[j] = sum_i c_i omega^i e^{2 pi i ij/n}
    return np.array([int(v) for v in np.rint(coeffs.real)], dtype=object)


def decode(coeffs: np.ndarray, scale: float) -> np.ndarray:
    """Real slot values of an integer plaintext polynomial (centred coefficients)."""
    c = np.array([float(v) for v in coeffs])
    n = c.size
    omega = np.exp(1j * np.pi * np.arange(n) / n)
    evals = n * np.fft.ifft(c * omega)
    return evals[slot_roots(n)].real / scale


# --- the attack ------------------------------------------------------------------------------


def recover_secret_ntt(
    c0: list[np.ndarray], c1: list[np.ndarray], t: list[np.ndarray], q: int
) -> np.ndarray:
    """Solve for ``s`` (natural-order evaluations mod q) from two ciphertexts (their ``c0``,
    ``c1`` and symmetric decryptions ``t``, all natural-order evaluations mod q)."""
    n = c0[0].size
    jc = conj_index(n)
    r = [(t[i] - c0[i] - c0[i][jc]) % q for i in range(2)]
    s = np.zeros(n, dtype=object)
    for j in range(n // 2):
        jj = int(jc[j])
        a, b = int(c1[0][j]), int(c1[0][jj])
        c, d = int(c1[1][j]), int(c1[1][jj])
        det = (a * d - b * c) % q
        inv = pow(det, -1, q)
        r0, r1 = int(r[0][j]), int(r[1][j])
        s[j] = (r0 * d - b * r1) * inv % q
        s[jj] = (a * r1 - c * r0) * inv % q
    return s


def decrypt_with(
    words: np.ndarray, s_coeffs: np.ndarray, primes: list[int], scale: float
) -> np.ndarray:
    """Decrypt a ciphertext's words (2, k, n) with a secret key given by its (small) integer
    coefficients: ``c0 + c1 s`` per prime, CRT, centre, decode."""
    k, n = words.shape[1], words.shape[2]
    big_q = 1
    for q in primes[:k]:
        big_q *= q
    total = np.zeros(n, dtype=object)
    for i, q in enumerate(primes[:k]):
        s_hat = ntt(np.array([int(v) % q for v in s_coeffs], dtype=object), q)
        m_hat = (from_seal_ntt(words[0, i], q) + from_seal_ntt(words[1, i], q) * s_hat) % q
        m = intt(m_hat, q)
        qi = big_q // q
        total = (total + m * qi % big_q * pow(qi, -1, q)) % big_q
    return decode(centred(total, big_q), scale)

"""CKKS parameters for secure aggregation: choice, security, precision, flooding and overflow.

Aggregation only adds ciphertexts (and one plaintext vector: the central-DP noise), so the
multiplicative depth is zero: the *data* primes carry the values and one *special* prime (the
last of ``coeff_mod_bit_sizes``) exists only because TenSEAL refuses contexts without key
switching. A fresh public-key ciphertext lives at the data level, so its size is about
``2 * N * data_bits`` bits for ``N/2`` real slots: bytes per value depend on the data primes'
total size only, not on ``N``.

Why the parameters are what they are: the key holder never releases an exact decryption (Li and
Micciancio, EUROCRYPT 2021: from a ciphertext and its exact CKKS decryption anybody recovers the
secret key, then decrypts every individual upload; ``tests/crypto/test_key_recovery.py`` runs that
attack). It adds fresh Gaussian noise ("noise flooding") whose standard deviation follows the rule
of Li, Micciancio, Schultz and Sorrell (CRYPTO 2022, "Securing approximate homomorphic encryption
using differential privacy", Cor. 2, with the correction implemented by OpenFHE's
``NOISE_FLOODING_DECRYPT`` mode: no ``sqrt(2N)`` factor)::

    sigma_flood = sqrt(12 * tau) * 2^(s / 2) * t

with ``s`` the statistical security parameter (:attr:`CkksParams.statistical_security`, 30 by
default, OpenFHE's recommended minimum: any adversary's advantage <= 2^-30), ``tau`` the number of
decryptions an adversary may see under one key (:attr:`CkksParams.max_decryptions`, every
ciphertext of every round counts; the key holder refuses to decrypt beyond it) and ``t`` the
bound on the decryption error (:func:`ckks_error_bound`). We flood the real slots that are
released (i.i.d. per slot) and take ``t`` as the per-slot bound: a coefficient of the error
polynomial is an average of its slot values, so ``t`` also bounds every coefficient, and i.i.d.
slot noise of std ``sigma`` is, on the released (real) part of the plaintext, coefficient noise
of std ``sigma * scale * sqrt(2 / N)`` while the error's coefficients are about ``t * scale /
sqrt(N)``: the ratio the rule asks for holds within a factor sqrt(2) in our favour.

The flooding std is ``2^(s/2) * sqrt(12 tau) ~= 2^26.8`` times the CKKS error, so the CKKS error
itself must be tiny: a scale of 2^40 (the previous default) would flood with ~30 C per
coordinate at 1,000 devices. Hence a second data prime and a 2^72 scale. Default (sizes and
speed measured with ``benchmarks/ckks.py``, TenSEAL 0.3.18 / SEAL 4.x):
``N = 4096, coeff_mod_bit_sizes = (60, 29, 20), scale = 2^72``.

* Security: 60 + 29 + 20 = 109 bits, exactly the 128-bit limit of the homomorphicencryption.org
  standard for N = 4096. The special prime may be small: a fresh public-key encryption is formed
  at the key level and divided by it, which leaves a rounding error independent of its size once
  it exceeds ~2^12. N = 8192 ((60, 40, 20), scale 2^74) gives about the same bytes per value per
  data bit, is about twice as slow per slot, and is offered for a larger capacity (2^23).
* Size: 2048 slots per ciphertext, about 102.8 kB serialized with SEAL's default (zstd)
  compression: 12.5-12.9x the float32 plaintext (the single 56-bit prime of the unflooded
  design gave 62.0 kB, 7.6-7.8x). Seeded (symmetric) ciphertexts would halve this, but they need
  the secret key, which devices must not hold; TenSEAL only encodes real slots, so complex packing
  (another 2x) is not available either.
* Precision: a fresh encryption adds, per slot, an error of standard deviation about
  ``sigma = 2^(9.5 - scale_bits)`` at N = 4096 (``2^(10.5 - scale_bits)`` at N = 8192: the
  rounding of the division by the special prime; measured, rounded up), in units of
  ``value_bound`` since values are encoded as ``x / value_bound``. The error is Gaussian within a
  slot but its spread differs between slots (it depends on the key's canonical embedding), so the
  worst coordinates sit far out (measured maximum over 1.2 million fresh errors: 11.3 sigma).
  Errors of independent devices add: :func:`ckks_error_bound` is ``12 * sigma * sqrt(n + 1)``
  for ``n`` devices (the ``+1`` covers the encoded noise vector). The released error adds the
  flooding: :func:`precision_bound` is ``ckks_error_bound + 10 * flooding_std`` plus float64
  rounding. With the defaults: flooding std 6.8e-9 * value_bound at 1,000 devices and 2.1e-8 *
  value_bound at 10,000, whose bound (2.1e-7 * value_bound) is inside the 1e-6 * C target.
* Overflow: decryption is correct while every coordinate of the (noised) sum satisfies
  ``|m| * 2^scale_bits < Q / 2``, ``Q`` the product of the ``k`` data primes; each has ``b_i``
  bits so ``Q >= 2^(data_bits - k)`` and the condition holds when ``|m| < 2^(data_bits - k - 1 -
  scale_bits)`` (:attr:`CkksParams.capacity`, 16,384 for the default). Since each coordinate is
  at most ``value_bound``, a cohort of ``n`` devices plus noise of magnitude ``z`` (in units of
  ``value_bound``) is safe when ``n + z < capacity``; the orchestrator checks this before every
  round, because an overflow would wrap silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ppr.errors import ConfigError

#: Largest total coefficient-modulus bits for 128-bit classical security (HE standard, ternary
#: secrets), by poly modulus degree.
MAX_COEFF_BITS_128: dict[int, int] = {
    1024: 27,
    2048: 54,
    4096: 109,
    8192: 218,
    16384: 438,
    32768: 881,
}

#: log2 of the measured per-slot standard deviation of a fresh encryption's error at scale 1
#: (i.e. error sigma = 2^(bits - scale_bits)), rounded up; the bound built on it is checked by
#: tests/crypto/test_precision.py and, exactly (through SEAL's decryptor), by
#: tests/crypto/test_key_recovery.py.
_FRESH_NOISE_BITS_4096 = 9.5

#: Multiple of sigma used by :func:`ckks_error_bound` (worst slot x Gaussian tail; measured).
PRECISION_SIGMAS = 12.0

#: Multiple of the flooding std in :func:`precision_bound`: a Gaussian coordinate passes it with
#: probability 1.5e-23.
FLOODING_SIGMAS = 10.0

#: Float64 rounding of a decoded value relative to its magnitude, with room for SEAL's FFT.
_FLOAT_RTOL = 2.0**-45


@dataclass(frozen=True)
class CkksParams:
    """CKKS parameters for depth-0 aggregation, and the key holder's flooding policy.

    Invariants (checked on construction): ``poly_modulus_degree`` is a power of two in
    ``MAX_COEFF_BITS_128`` and at least 4096; at least two primes (the last is the special
    prime); each prime has 20..60 bits; the total respects 128-bit security; the scale leaves a
    capacity of at least 2 (``global_scale_bits + k + 2 <= data_bits``, ``k`` data primes);
    ``statistical_security`` in 20..128; ``max_decryptions >= 1``.
    """

    poly_modulus_degree: int = 4096
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 29, 20)
    global_scale_bits: int = 72
    #: ``s`` of the flooding rule: bits of statistical security of every release.
    statistical_security: int = 30
    #: ``tau`` of the flooding rule: ciphertext decryptions one key may ever release.
    max_decryptions: int = 2**20

    def __post_init__(self) -> None:
        n = self.poly_modulus_degree
        bits = tuple(int(b) for b in self.coeff_mod_bit_sizes)
        object.__setattr__(self, "coeff_mod_bit_sizes", bits)
        if n not in MAX_COEFF_BITS_128 or n < 4096:
            raise ConfigError(
                "`poly_modulus_degree` must be one of 4096, 8192, 16384, 32768 (2048 leaves too "
                f"few modulus bits for a usable scale). Found {n}."
            )
        if len(bits) < 2:
            raise ConfigError(
                "`coeff_mod_bit_sizes` needs a data prime and a special prime (TenSEAL requires "
                f"key switching). Found {list(bits)}."
            )
        if any(b < 20 or b > 60 for b in bits):
            raise ConfigError(
                f"`coeff_mod_bit_sizes` must each be 20..60 bits. Found {list(bits)}."
            )
        if sum(bits) > MAX_COEFF_BITS_128[n]:
            raise ConfigError(
                f"`coeff_mod_bit_sizes` total {sum(bits)} bits exceeds the 128-bit security limit "
                f"of {MAX_COEFF_BITS_128[n]} bits for poly_modulus_degree {n}."
            )
        top = self.data_bits - self.n_data_primes - 2
        if not 20 <= self.global_scale_bits <= top:
            raise ConfigError(
                f"`global_scale_bits` must be in 20..{top} (data bits minus one per data prime "
                f"minus 2) to leave overflow headroom. Found {self.global_scale_bits}."
            )
        if not 20 <= int(self.statistical_security) <= 128:
            raise ConfigError(
                "`statistical_security` must be in 20..128 bits. "
                f"Found {self.statistical_security}."
            )
        if int(self.max_decryptions) < 1:
            raise ConfigError(f"`max_decryptions` must be positive. Found {self.max_decryptions}.")
        object.__setattr__(self, "statistical_security", int(self.statistical_security))
        object.__setattr__(self, "max_decryptions", int(self.max_decryptions))

    @property
    def slots(self) -> int:
        """Real values per ciphertext (``N / 2``)."""
        return self.poly_modulus_degree // 2

    @property
    def n_data_primes(self) -> int:
        """Primes a fresh ciphertext is reduced by (all but the special prime)."""
        return len(self.coeff_mod_bit_sizes) - 1

    @property
    def data_bits(self) -> int:
        """Bits of the data primes (all but the special prime)."""
        return sum(self.coeff_mod_bit_sizes[:-1])

    @property
    def scale(self) -> float:
        """The CKKS encoding scale ``2^global_scale_bits``."""
        return float(2**self.global_scale_bits)

    @property
    def capacity(self) -> float:
        """Largest safe ``|coordinate|`` of a decrypted sum, in units of ``value_bound``."""
        return float(2 ** (self.data_bits - self.n_data_primes - 1 - self.global_scale_bits))

    @property
    def flooding_factor(self) -> float:
        """``sqrt(12 * tau) * 2^(s / 2)``: flooding std over the CKKS error bound (module doc)."""
        return math.sqrt(12.0 * self.max_decryptions) * 2.0 ** (self.statistical_security / 2)

    def n_chunks(self, n_values: int) -> int:
        """Ciphertexts needed for ``n_values`` values (the last one zero-padded)."""
        return max(1, math.ceil(n_values / self.slots))


def default_params(poly_modulus_degree: int = 4096) -> CkksParams:
    """Recommended parameters: N=4096 (60, 29, 20) scale 2^72, or N=8192 (60, 40, 20) scale
    2^74; flooding at 30 bits of statistical security for 2^20 decryptions (see module doc)."""
    if poly_modulus_degree == 4096:
        return CkksParams(4096, (60, 29, 20), 72)
    if poly_modulus_degree == 8192:
        return CkksParams(8192, (60, 40, 20), 74)
    raise ConfigError(
        "`poly_modulus_degree` must be 4096 or 8192 for default_params. "
        f"Found {poly_modulus_degree}."
    )


def fresh_noise_sigma(params: CkksParams) -> float:
    """Per-slot std of one fresh encryption's error, in units of ``value_bound`` (measured)."""
    bits = _FRESH_NOISE_BITS_4096 + math.log2(params.poly_modulus_degree / 4096)
    return float(2 ** (bits - params.global_scale_bits))


def _check_cohort(cohort: int) -> int:
    if cohort < 0:
        raise ConfigError(f"`cohort` must be non-negative. Found {cohort}.")
    return int(cohort)


def ckks_error_bound(params: CkksParams, cohort: int) -> float:
    """Per-coordinate bound on the CKKS error of a sum of ``cohort`` fresh ciphertexts plus one
    encoded noise vector, before flooding, in units of ``value_bound`` (12 sigma; module doc).
    This is the ``t`` of the flooding rule."""
    n = _check_cohort(cohort)
    return PRECISION_SIGMAS * fresh_noise_sigma(params) * math.sqrt(n + 1)


def flooding_std(params: CkksParams, cohort: int) -> float:
    """Std of the Gaussian noise the key holder adds to each released coordinate of a sum of
    ``cohort`` ciphertexts, in units of ``value_bound``: ``sqrt(12 tau) 2^(s/2) t`` (LMSS 2022)."""
    return params.flooding_factor * ckks_error_bound(params, cohort)


def precision_bound(params: CkksParams, cohort: int) -> float:
    """Per-coordinate bound on ``|released_sum - exact_sum|`` for ``cohort`` devices plus one
    encoded noise vector, in units of ``value_bound``: the CKKS error, ten flooding stds and the
    float64 rounding (taken as 2^-45 relative) of values up to ``32 (cohort + 1)`` value bounds;
    larger ones, up to the capacity, round (about 2^-52 relative) below one flooding std."""
    n = _check_cohort(cohort)
    return (
        ckks_error_bound(params, n)
        + FLOODING_SIGMAS * flooding_std(params, n)
        + _FLOAT_RTOL * 32 * (n + 1)
    )

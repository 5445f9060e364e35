"""CKKS parameters for secure aggregation: choice, security, precision and overflow bounds.

Aggregation only adds ciphertexts (and one plaintext vector: the central-DP noise), so the
multiplicative depth is zero: one *data* prime carries the values and one *special* prime (the
last of ``coeff_mod_bit_sizes``) exists only because TenSEAL refuses contexts without key
switching. A fresh public-key ciphertext lives at the data level, so its size is
``2 * N * data_bits`` bits for ``N/2`` real slots: bytes per value depend on the data prime's
size only, not on ``N``.

Default (sizes and speed measured with ``benchmarks/ckks.py``, TenSEAL 0.3.18 / SEAL 4.x):
``N = 4096, coeff_mod_bit_sizes = (56, 53), scale = 2^40``.

* Security: 56 + 53 = 109 bits, exactly the 128-bit limit of the homomorphicencryption.org
  standard for N = 4096 (N = 2048 allows 54 bits in all, too few for a 40-bit scale with headroom;
  TenSEAL also needs at least two primes). N = 8192 ((56, 60) by default) gives the same bytes per
  value and is about twice as slow per slot; it is offered for larger headroom only.
* Size: 2048 slots per ciphertext, about 62.0 kB serialized with SEAL's default (zstd)
  compression: ~7.57x the float32 plaintext (TenSEAL's usual N=8192, (60,40,40,60) gives ~20x,
  because its ciphertexts carry three data primes). Seeded (symmetric) ciphertexts would halve
  this, but they need the secret key, which devices must not hold; TenSEAL only encodes real
  slots, so complex packing (another 2x) is not available either.
* Precision: a fresh encryption adds, per slot, an error of standard deviation about
  ``sigma = 2^(9.5 - scale_bits)`` at N = 4096 (``2^(10.5 - scale_bits)`` at N = 8192; measured,
  rounded up), in units of ``value_bound`` since values are encoded as ``x / value_bound``. The
  error is Gaussian within a slot but its spread differs between slots (it depends on the key's
  canonical embedding: measured per-slot std from 0.02 to 3.1 sigma), so the worst coordinates
  sit far out: the measured maximum over 1.2 million fresh-encryption errors was 11.3 sigma.
  Errors of independent devices add, so :func:`precision_bound` returns
  ``12 * sigma * sqrt(n + 1)`` for ``n`` devices (the ``+1`` covers the encoded noise vector).
  At 10,000 devices and scale 2^40 this is 7.9e-7 * value_bound, inside the 1e-6 * C target; a
  larger scale would shrink the capacity below a 10,000-device cohort (see below).
* Overflow: decryption is correct while every coordinate of the (noised) sum satisfies
  ``|m| * 2^scale_bits < q / 2``; the data prime ``q`` has ``data_bits`` bits so ``q >=
  2^(data_bits - 1)`` and the condition holds when ``|m| < 2^(data_bits - 2 - scale_bits)``
  (:attr:`CkksParams.capacity`, 16,384 for the default: i.e. ``scale_bits + log2(cohort) +
  log2(max |value|) + 2 <= data_bits``). Since each coordinate is at most ``value_bound``, a
  cohort of ``n`` devices plus noise of magnitude ``z`` (in units of ``value_bound``) is safe
  when ``n + z < capacity``; the orchestrator checks this before every round, because an
  overflow would wrap silently.
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
#: tests/crypto/test_precision.py.
_FRESH_NOISE_BITS_4096 = 9.5

#: Multiple of sigma used by :func:`precision_bound` (worst slot x Gaussian tail; measured).
PRECISION_SIGMAS = 12.0


@dataclass(frozen=True)
class CkksParams:
    """CKKS parameters for depth-0 aggregation.

    Invariants (checked on construction): ``poly_modulus_degree`` is a power of two in
    ``MAX_COEFF_BITS_128`` and at least 4096; at least two primes (the last is the special
    prime); each prime has 20..60 bits; the total respects 128-bit security; the scale leaves a
    capacity of at least 1 (``global_scale_bits + 2 < data_bits``).
    """

    poly_modulus_degree: int = 4096
    coeff_mod_bit_sizes: tuple[int, ...] = (56, 53)
    global_scale_bits: int = 40

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
        if not 20 <= self.global_scale_bits <= self.data_bits - 3:
            raise ConfigError(
                "`global_scale_bits` must be in 20..data_bits-3 "
                f"({self.data_bits - 3}) to leave overflow headroom. "
                f"Found {self.global_scale_bits}."
            )

    @property
    def slots(self) -> int:
        """Real values per ciphertext (``N / 2``)."""
        return self.poly_modulus_degree // 2

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
        return float(2 ** (self.data_bits - 2 - self.global_scale_bits))

    def n_chunks(self, n_values: int) -> int:
        """Ciphertexts needed for ``n_values`` values (the last one zero-padded)."""
        return max(1, math.ceil(n_values / self.slots))


def default_params(poly_modulus_degree: int = 4096) -> CkksParams:
    """Recommended parameters: N=4096 (56, 53) or N=8192 (56, 60), scale 2^40 (see module doc)."""
    if poly_modulus_degree == 4096:
        return CkksParams(4096, (56, 53), 40)
    if poly_modulus_degree == 8192:
        return CkksParams(8192, (56, 60), 40)
    raise ConfigError(
        "`poly_modulus_degree` must be 4096 or 8192 for default_params. "
        f"Found {poly_modulus_degree}."
    )


def fresh_noise_sigma(params: CkksParams) -> float:
    """Per-slot std of one fresh encryption's error, in units of ``value_bound`` (measured)."""
    bits = _FRESH_NOISE_BITS_4096 + math.log2(params.poly_modulus_degree / 4096)
    return float(2 ** (bits - params.global_scale_bits))


def precision_bound(params: CkksParams, cohort: int) -> float:
    """Per-coordinate bound on ``|ckks_sum - exact_sum|`` for ``cohort`` devices plus one
    encoded noise vector, in units of ``value_bound`` (12 sigma; see module docstring)."""
    if cohort < 0:
        raise ConfigError(f"`cohort` must be non-negative. Found {cohort}.")
    return PRECISION_SIGMAS * fresh_noise_sigma(params) * math.sqrt(cohort + 1)

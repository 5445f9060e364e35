"""All Gaussian noise of the DP mechanisms is generated here, and only here.

Security note: sampling Gaussian noise with floating-point arithmetic (``jax.random.normal``) has
known attacks: the low-order bits of a float sample, and the gaps in the set of representable
values, can reveal the un-noised value (Mironov, "On significance of the least significant bits
for differential privacy", CCS 2012; later attacks on naive Gaussian samplers). ppr uses float
sampling for simulation. A deployment should replace :func:`gaussian_noise` with a secure sampler
(e.g. a discrete Gaussian on a fixed-point grid, Canonne-Kamath-Steinke 2020); every other function
in this module derives from it, so that is a one-function change.

Central noise: the aggregator (or key holder) adds ``N(0, (σ·C)² I)`` once to the clipped sum.

Distributed noise: each device adds a share ``N(0, s² I)`` to its own clipped update before
encryption, so no single party ever sees the un-noised sum. The shares of the ``n`` devices that
survive a round sum to ``N(0, n·s² I)``; choosing ``s = σ·C / sqrt(n_min)`` gives the full ``σ·C``
whenever at least ``n_min`` devices survive.

Choice of ``n_min`` (see :func:`min_cohort_size`): a *data-independent* constant, the lower
``failure_prob`` quantile (default 1e-3) of the Binomial(N, q·(1 - dropout)) number of surviving
devices, computed from public quantities (population N, sampling rate q, planned dropout rate).
Every device uses the same share std in every round and needs no per-round message. We do not use
the per-round planned cohort size: with Poisson sampling it depends on whether the device under
protection was sampled, so the noise scale would depend on the data in a way the standard
PoissonSampled-Gaussian analysis does not model. The price is extra noise in typical rounds, a
factor ``sqrt(E[n] / n_min)`` on the std. A round with fewer survivors than ``n_min`` carries less
noise; it is charged at :func:`realized_noise_multiplier` (its own event in the ledger), and a
round with more survivors is charged at the planned σ (more noise than planned is never credited).
The analysis treats the noise of all survivors as protecting each device; a strict analysis would
exclude the protected device's own share, i.e. use ``n_survived - 1`` (pass that if you want it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ppr.privacy._checks import check_count, check_non_negative, check_positive, check_rate

Shape = int | Sequence[int]


def _shape(shape: Shape) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


def gaussian_noise(
    key: jax.Array, shape: Shape, std: float, dtype: jnp.dtype = jnp.float32
) -> jnp.ndarray:
    """``N(0, std²)`` samples of the given shape: THE noise source (replace for a secure sampler).

    ``std`` must be finite and ``>= 0``; ``std == 0`` gives exact zeros.
    """
    check_non_negative("std", std)
    return jnp.asarray(std, dtype) * jax.random.normal(key, _shape(shape), dtype)


def central_noise(
    key: jax.Array, size: Shape, noise_multiplier: float, clip_norm: float
) -> jnp.ndarray:
    """Noise added once to the clipped cohort sum: std ``σ·C``."""
    check_non_negative("noise_multiplier", noise_multiplier)
    check_positive("clip_norm", clip_norm)
    return gaussian_noise(key, size, noise_multiplier * clip_norm)


def min_cohort_size(n_population: int, rate: float, failure_prob: float = 1e-3) -> int:
    """Lower ``failure_prob`` quantile of Binomial(n_population, rate), at least 1.

    With ``rate = q·(1 - dropout)`` it is the ``n_min`` of distributed noise: the number of
    surviving devices falls below it in a round with probability at most ``failure_prob``.
    """
    from scipy.stats import binom

    check_count("n_population", n_population)
    check_rate("rate", rate)
    if not 0.0 < failure_prob < 1.0:
        raise ValueError(f"`failure_prob` must be in (0, 1). Found {failure_prob}.")
    # ppf(p) is the smallest k with CDF(k) >= p; P(X < k) = CDF(k-1) < p.
    return max(1, int(binom.ppf(failure_prob, n_population, rate)))


def distributed_noise_share_std(
    noise_multiplier: float, clip_norm: float, n_expected_min: int
) -> float:
    """Std of one device's share: ``σ·C / sqrt(n_min)`` so ``n_min`` shares carry full ``σ·C``."""
    check_non_negative("noise_multiplier", noise_multiplier)
    check_positive("clip_norm", clip_norm)
    check_count("n_expected_min", n_expected_min)
    return float(noise_multiplier) * float(clip_norm) / math.sqrt(int(n_expected_min))


def realized_noise_multiplier(
    noise_multiplier: float, n_planned_min: int, n_survived: int
) -> float:
    """Noise multiplier the sum actually carries: ``σ·sqrt(min(n_survived, n_min) / n_min)``.

    Equal to σ when at least ``n_planned_min`` devices survived (extra noise is not credited),
    lower after dropouts; 0 when nobody survived.
    """
    check_non_negative("noise_multiplier", noise_multiplier)
    check_count("n_planned_min", n_planned_min)
    check_count("n_survived", n_survived, minimum=0)
    ratio = min(int(n_survived), int(n_planned_min)) / int(n_planned_min)
    return float(noise_multiplier) * math.sqrt(ratio)


def device_noise_share(key: jax.Array, device_id: int, size: int, std: float) -> jnp.ndarray:
    """Device ``device_id``'s share of one round: ``N(0, std²)`` of length ``size`` from
    ``fold_in(key, device_id)`` (``key``: the round's secret noise key). Independent of how a
    round's devices are batched; :func:`device_noise_shares` is the same for many devices."""
    return gaussian_noise(jax.random.fold_in(key, int(device_id)), (int(size),), std)


def device_noise_shares(key: jax.Array, device_ids, size: int, std: float) -> jnp.ndarray:
    """:func:`device_noise_share` of every id in ``device_ids``, as rows (vectorized)."""
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.asarray(device_ids, jnp.uint32))
    return jax.vmap(lambda k: gaussian_noise(k, (int(size),), std))(keys)


#: Per-coordinate range of a device's message under distributed noise: C + this many share stds.
NOISE_SHARE_RANGE = 8.0

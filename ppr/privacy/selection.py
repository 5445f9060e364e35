"""A private choice among tuning runs: noisy validation sums and counts (Gaussian mechanism).

Tuning on validation data of the same users costs privacy (DESIGN.md, "Privacy semantics"). The
choice is made DP here by releasing, for each of the ``R`` tuning runs, its validation metric
*sum* over users and its number of evaluated users, each with Gaussian noise, and choosing on
``noisy sum / noisy count`` (post-processing).

Sensitivity. A user's metric value lies in ``[0, 1]`` (recall@k, NDCG@k), and adding or removing
one user changes each run's sum and each run's count by at most 1 *given the runs' models*: the
models are themselves DP releases (their ledgers), and the scores are computed from them and the
data, which is adaptive composition. The released vector of ``2R`` numbers therefore has L2
sensitivity ``sqrt(2R)``; noise of std ``z sqrt(2R)`` per number is one Gaussian mechanism of
noise multiplier ``z`` (:func:`selection_event`), composed with every run's ledger in the tuning's
privacy statement. The noise comes from a :class:`~ppr.privacy.randomness.NoiseSource` (secret
OS entropy unless a labelled seed is given).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import dp_accounting
import numpy as np

from ppr.privacy._checks import check_positive
from ppr.privacy.accounting import DEFAULT_ACCOUNTANT, calibrate_event
from ppr.privacy.randomness import NoiseSource

__all__ = ["calibrate_selection", "noisy_run_means", "selection_event", "selection_std"]


def selection_event(noise_multiplier: float) -> dp_accounting.DpEvent:
    """The DpEvent of one release of every run's noisy (sum, count): a Gaussian mechanism."""
    check_positive("noise_multiplier", noise_multiplier)
    return dp_accounting.GaussianDpEvent(float(noise_multiplier))


def calibrate_selection(
    epsilon: float, delta: float, accountant: str = DEFAULT_ACCOUNTANT
) -> float:
    """The smallest noise multiplier ``z`` whose selection release is ``(epsilon, delta)``-DP."""
    check_positive("epsilon", epsilon)
    return calibrate_event(selection_event, epsilon, delta, accountant)


def selection_std(noise_multiplier: float, n_runs: int) -> float:
    """Noise std of each released number: ``z`` times the L2 sensitivity ``sqrt(2 R)``."""
    if n_runs < 1:
        raise ValueError(f"`n_runs` must be at least 1. Found {n_runs}.")
    return float(noise_multiplier) * math.sqrt(2.0 * n_runs)


def noisy_run_means(
    means: Sequence[float],
    counts: Sequence[int],
    noise_multiplier: float,
    source: NoiseSource,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(noisy sums, noisy counts, noisy means)`` of runs whose exact metric means and evaluated
    user counts are ``means`` and ``counts`` (each mean in [0, 1]). A noisy count below 1 is
    read as 1 (post-processing)."""
    mean = np.asarray(means, np.float64)
    count = np.asarray(counts, np.float64)
    if mean.shape != count.shape or mean.ndim != 1 or mean.size == 0:
        raise ValueError("`means` and `counts` must be equally long, non-empty sequences.")
    if np.any((mean < 0) | (mean > 1)) or np.any(count < 0):
        raise ValueError("each mean must lie in [0, 1] and each count be non-negative.")
    std = selection_std(noise_multiplier, mean.size)
    noise = np.asarray(source.gaussian((0,), (2, mean.size), std), np.float64)
    sums = mean * count + noise[0]
    noisy_counts = count + noise[1]
    return sums, noisy_counts, sums / np.maximum(noisy_counts, 1.0)

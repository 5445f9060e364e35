"""The private choice's release: calibration meets its ε, the noise has the stated scale, the
means are noisy sum / noisy count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ppr.privacy.accounting import epsilon_of, gaussian_epsilon
from ppr.privacy.randomness import NoiseSource
from ppr.privacy.selection import (
    calibrate_selection,
    noisy_run_means,
    selection_event,
    selection_std,
)


@pytest.mark.parametrize("eps", [0.1, 1.0, 4.0])
def test_calibration_meets_the_target_and_is_tight(eps):
    z = calibrate_selection(eps, 1e-5)
    assert epsilon_of(selection_event(z), 1e-5) <= eps
    assert gaussian_epsilon(z / 1.002, 1e-5) > eps  # 0.2 % less noise would not do


def test_noise_has_the_stated_scale_and_means_are_ratios():
    runs = 4
    means, counts = [0.3, 0.31, 0.5, 0.0], [900, 900, 880, 880]
    z = 0.7
    draws = np.array(
        [noisy_run_means(means, counts, z, NoiseSource.seeded(s))[0] for s in range(2000)]
    )
    std = selection_std(z, runs)
    assert std == pytest.approx(z * math.sqrt(2 * runs))
    resid = draws - np.asarray(means) * np.asarray(counts)
    assert abs(resid.mean()) < 4 * std / math.sqrt(resid.size)
    assert resid.std() == pytest.approx(std, rel=0.05)  # 8,000 draws: ~1.6 % standard error
    sums, noisy_counts, noisy_means = noisy_run_means(means, counts, z, NoiseSource.seeded(0))
    assert np.allclose(noisy_means, sums / np.maximum(noisy_counts, 1.0))
    again = noisy_run_means(means, counts, z, NoiseSource.secret())[0]
    assert not np.array_equal(again, sums)  # secret noise: a fresh draw


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        noisy_run_means([1.5], [10], 1.0, NoiseSource.seeded(0))
    with pytest.raises(ValueError, match="equally long"):
        noisy_run_means([0.5, 0.2], [10], 1.0, NoiseSource.seeded(0))
    with pytest.raises(Exception, match="noise_multiplier"):
        selection_event(0.0)

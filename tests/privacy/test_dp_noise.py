"""Noise: the empirical std matches σ·C, checked by a chi-square test on the sample variance.

Each variance test has a false-failure rate of 1e-6 (two-sided, 5e-7 per tail): with n i.i.d.
N(0, s²) samples, (n-1)·S²/s² ~ χ²(n-1), so the test accepts when S²/s² lies between the
5e-7 and 1 - 5e-7 quantiles of χ²(n-1)/(n-1), computed with scipy (not eyeballed). The mean is
tested with the exact normal law of the sample mean at the same rate.
"""

import jax
import numpy as np
import pytest
from dp_stats import ALPHA, N, assert_gaussian_std
from scipy.stats import binom, chi2

from ppr.errors import ConfigError
from ppr.privacy import (
    central_noise,
    device_noise_shares,
    distributed_noise_share_std,
    gaussian_noise,
    min_cohort_size,
    realized_noise_multiplier,
)


def test_thresholds_are_tight_enough_to_catch_a_one_percent_error() -> None:
    # the test can fail: a 1% error in the std (2% in variance) is far outside the band
    hi = chi2.isf(ALPHA / 2, N - 1) / (N - 1)
    assert hi < 1.02


@pytest.mark.parametrize("std", [0.3, 2.5])
def test_gaussian_noise_std(std: float) -> None:
    assert_gaussian_std(gaussian_noise(jax.random.key(11), (N,), std), std)


def test_gaussian_noise_wrong_std_is_rejected_by_the_test() -> None:
    samples = gaussian_noise(jax.random.key(12), (N,), 1.0)
    with pytest.raises(AssertionError):
        assert_gaussian_std(samples, 1.02)


@pytest.mark.parametrize(("sigma", "clip"), [(1.1, 0.5), (0.7, 3.0)])
def test_central_noise_std_is_sigma_times_clip(sigma: float, clip: float) -> None:
    noise = central_noise(jax.random.key(3), N, sigma, clip)
    assert noise.shape == (N,)
    assert_gaussian_std(noise, sigma * clip)


def test_distributed_shares_sum_to_full_noise() -> None:
    sigma, clip, n_min, size = 1.3, 0.8, 16, N
    std = distributed_noise_share_std(sigma, clip, n_min)
    # the shares as the devices of one round draw them (one key per device id)
    shares = np.asarray(device_noise_shares(jax.random.PRNGKey(5), np.arange(n_min), size, std))
    assert std == pytest.approx(sigma * clip / 4.0)
    assert_gaussian_std(shares[0], std)
    assert_gaussian_std(shares.sum(axis=0), sigma * clip)


def test_zero_std_gives_zeros_and_negative_is_refused() -> None:
    assert not np.any(np.asarray(gaussian_noise(jax.random.key(0), (5,), 0.0)))
    with pytest.raises(ConfigError, match=r"`std` must be non-negative\. Found -1\."):
        gaussian_noise(jax.random.key(0), (5,), -1.0)
    with pytest.raises(ConfigError, match="`noise_multiplier` must be non-negative"):
        central_noise(jax.random.key(0), 5, -0.1, 1.0)


def test_realized_noise_multiplier() -> None:
    assert realized_noise_multiplier(2.0, 100, 100) == 2.0
    assert realized_noise_multiplier(2.0, 100, 150) == 2.0  # extra noise never credited
    assert realized_noise_multiplier(2.0, 100, 25) == pytest.approx(1.0)
    assert realized_noise_multiplier(2.0, 100, 0) == 0.0


@pytest.mark.parametrize(("n", "rate", "p"), [(943, 0.1, 1e-3), (6040, 0.02 * 0.9, 1e-4)])
def test_min_cohort_size_is_the_binomial_lower_quantile(n: int, rate: float, p: float) -> None:
    k = min_cohort_size(n, rate, p)
    assert binom.cdf(k - 1, n, rate) < p <= binom.cdf(k, n, rate)
    assert 1 <= k < n * rate

"""Statistical helper shared by the DP noise tests (imported, not collected)."""

import math

import numpy as np
from scipy.stats import chi2, norm

N = 200_000
ALPHA = 1e-6


def assert_gaussian_std(samples: np.ndarray, std: float) -> None:
    x = np.asarray(samples, dtype=np.float64).ravel()
    n = x.size
    ratio = x.var(ddof=1) / std**2
    lo = chi2.ppf(ALPHA / 2, n - 1) / (n - 1)
    hi = chi2.isf(ALPHA / 2, n - 1) / (n - 1)
    assert lo <= ratio <= hi, (ratio, lo, hi)
    z = norm.isf(ALPHA / 2)
    assert abs(x.mean()) <= z * std / math.sqrt(n)

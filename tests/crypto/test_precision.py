"""CKKS sums agree with plaintext sums within the documented bound (relative to the clip norm)."""

from __future__ import annotations

import numpy as np
import pytest
from crypto_testutils import clipped_updates

from ppr.crypto import CkksSecureAggregation, PlaintextAggregation, precision_bound

ML100K_SIZE = 1682 * 32


def test_ckks_aggregate_equals_plaintext_at_ml100k_size_with_two_workers():
    clip = 1.0
    rng = np.random.default_rng(2024)
    u = clipped_updates(rng, 200, ML100K_SIZE, clip)
    noise = rng.normal(scale=clip, size=ML100K_SIZE)
    ids = np.arange(200)
    with CkksSecureAggregation(ML100K_SIZE, workers=2, value_bound=clip) as ckks:
        res = ckks.aggregate(u, ids, 0, noise=noise)
        per_device = ckks.channel.bytes_per_device_upload(0)
    plain = PlaintextAggregation(ML100K_SIZE, value_bound=clip).aggregate(u, ids, 0, noise=noise)
    err = np.max(np.abs(res.total - plain.total))
    assert res.n_accepted == 200 and not res.rejected
    assert err <= precision_bound(ckks.spec.params, 200) * clip
    assert err <= 1e-6 * clip
    # upload expansion: ~12.6x with the flooding-safe parameters (7.6x before; params.py)
    assert per_device / (4 * ML100K_SIZE) <= 13.0
    assert res.flooding is not None and res.flooding.std < 1e-8 * clip


@pytest.mark.slow
def test_ckks_precision_at_a_cohort_of_10000_devices():
    """The largest configured cohort: 10,000 devices (one ciphertext each, to stay quick)."""
    size = 2048
    rng = np.random.default_rng(7)
    u = clipped_updates(rng, 10_000, size)
    u /= np.abs(u).max(axis=1, keepdims=True)  # every device at the coordinate bound somewhere
    with CkksSecureAggregation(size, workers=2) as ckks:
        res = ckks.aggregate(u, np.arange(10_000), 0)
    err = np.max(np.abs(res.total - u.astype(np.float64).sum(0)))
    assert res.n_accepted == 10_000
    assert err <= precision_bound(ckks.spec.params, 10_000) <= 1e-6

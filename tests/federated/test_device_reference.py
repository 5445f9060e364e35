"""The Device (dense NumPy reference) and the fleet's batched path send the same message."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from ppr.crypto import PlaintextAggregation
from ppr.federated import DeviceSettings, EncodedSum, RoundInstructions
from ppr.federated.fleet import DeviceFleet
from ppr.model.mf import MFHyper, init_item_factors
from tests.data_testutils import random_user_items

N_USERS, N_ITEMS, DIM, CLIP = 30, 25, 4, 0.05


@pytest.mark.parametrize("local_steps", [1, 3])
def test_device_message_equals_the_batched_path_device_by_device(local_steps):
    rng = np.random.default_rng(5)
    items = random_user_items(rng, rng.integers(1, 8, N_USERS), N_ITEMS)
    hyper = MFHyper(3.0, 2.0, local_steps, 0.1)
    fleet = DeviceFleet(items, np.ones(N_USERS, bool), hyper)
    q = np.asarray(init_item_factors(jax.random.PRNGKey(2), N_ITEMS, DIM, 1.0))
    share_std, key = 0.01, jax.random.PRNGKey(9)
    ids = fleet.population
    summation = EncodedSum(PlaintextAggregation(N_ITEMS * DIM, 10.0), N_ITEMS, DIM, chunk=7)
    batched = dict(
        (int(i), r)
        for ids_, rows in summation._chunks(fleet.compute(q, ids, CLIP), key, share_std)
        for i, r in zip(ids_, rows, strict=True)
    )
    ins = RoundInstructions(
        round=0,
        clip_norm=CLIP,
        alpha=3.0,
        reg=2.0,
        local_steps=local_steps,
        local_lr=0.1,
        noise_share_std=share_std,
    )
    clipped = 0
    for u in ids:
        msg = fleet.device(int(u)).message(q, ins, noise_key=key)
        assert msg is not None and msg.values.shape == (N_ITEMS * DIM,)
        np.testing.assert_allclose(msg.values, batched[int(u)], rtol=2e-4, atol=2e-6)
        clipped += msg.norm > CLIP
    assert clipped > 0  # the clipping branch ran


def test_an_opted_out_device_sends_nothing():
    rng = np.random.default_rng(1)
    items = random_user_items(rng, rng.integers(1, 8, 5), N_ITEMS)
    fleet = DeviceFleet(items, np.ones(5, bool), MFHyper(3.0, 2.0))
    q = np.asarray(init_item_factors(jax.random.PRNGKey(2), N_ITEMS, DIM, 1.0))
    ins = RoundInstructions(round=0, clip_norm=CLIP, alpha=3.0, reg=2.0)
    dev = fleet.device(int(fleet.population[0]), DeviceSettings(train=False))
    assert dev.message(q, ins) is None

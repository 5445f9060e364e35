"""Privacy properties of a federated round, checked on what crosses the Channel.

* raw events never leave a device: in a dense plaintext round every message from a ``device/*``
  sender is an ``update`` of exactly ``n_items * dim`` float32 values, equal to that device's
  clipped update (norm <= C);
* nothing but updates crosses from devices (channel counters by sender role and kind);
* the CKKS aggregator holds a public context only: decrypting with it raises.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tenseal as ts
from data_testutils import random_user_items

from ppr.crypto import Channel, CkksSecureAggregation, PlaintextAggregation, default_params
from ppr.crypto.channel import KIND_UPDATE, role_of
from ppr.federated import DeviceFleet, EncodedSum
from ppr.model.mf import MFHyper, init_item_factors

CLIP = 0.4
N_USERS, N_ITEMS, DIM = 20, 50, 6


class RecordingChannel(Channel):
    """The real Channel, additionally keeping a copy of every message (test observer)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str, str, bytes, int]] = []

    def send(self, sender, receiver, kind, payload, round_idx):
        out = super().send(sender, receiver, kind, payload, round_idx)
        self.log.append((sender, receiver, kind, out, round_idx))
        return out


@pytest.fixture(scope="module")
def fleet_items():
    rng = np.random.default_rng(0)
    lens = rng.integers(1, 15, N_USERS)
    items = random_user_items(rng, lens, N_ITEMS)
    return items, DeviceFleet(items, np.ones(N_USERS, bool), MFHyper(3.0, 1.0))


def test_devices_send_only_their_clipped_update(fleet_items):
    items, fleet = fleet_items
    q = init_item_factors(jax.random.PRNGKey(0), N_ITEMS, DIM, 1.0)
    ids = fleet.population[::2]
    rnd = fleet.compute(q, ids, CLIP)
    assert np.max(rnd.norms()) > CLIP
    expected = {}
    for b, batch in enumerate(rnd.batches):
        valid = batch.users[batch.valid > 0]
        for u, row in zip(valid, rnd.dense(b), strict=True):
            expected[int(u)] = row

    secure = PlaintextAggregation(N_ITEMS * DIM, CLIP)
    secure.channel = RecordingChannel()
    out = EncodedSum(secure, N_ITEMS, DIM).aggregate(7, rnd, jax.random.PRNGKey(1))
    assert out.n_accepted == ids.size

    from_devices = [m for m in secure.channel.log if role_of(m[0]) == "device"]
    assert sorted(int(m[0].split("/")[1]) for m in from_devices) == sorted(ids.tolist())
    for sender, receiver, kind, payload, r in from_devices:
        assert kind == KIND_UPDATE and receiver == "aggregator" and r == 7
        assert len(payload) == 4 * N_ITEMS * DIM  # exactly n_items * dim float32 values
        values = np.frombuffer(payload, dtype="<f4")
        dev = int(sender.split("/")[1])
        np.testing.assert_array_equal(values, expected[dev])
        assert np.linalg.norm(values.astype(np.float64)) <= CLIP * (1 + 1e-5)
        # the update is not the device's item indicator: an item the device does not hold
        # still gets a non-zero row (the dense -Q p part), so the message is not its item list
        mat = values.reshape(N_ITEMS, DIM)
        others = np.setdiff1d(np.arange(N_ITEMS), items.row(dev))
        assert np.any(mat[others] != 0)

    totals = secure.channel.totals()
    device_bytes = totals["by_sender"]["device"]
    assert device_bytes == ids.size * 4 * N_ITEMS * DIM
    assert totals["by_kind"][KIND_UPDATE] == device_bytes  # nothing but updates from devices
    assert set(totals["by_sender"]) == {"device", "aggregator"}
    assert set(totals["by_receiver"]) == {"aggregator", "server"}  # nothing is sent to devices


def test_ckks_round_messages_and_aggregator_holds_no_secret(fleet_items):
    _, fleet = fleet_items
    q = init_item_factors(jax.random.PRNGKey(0), N_ITEMS, DIM, 1.0)
    ids = fleet.population[:6]
    rnd = fleet.compute(q, ids, CLIP)
    secure = CkksSecureAggregation(N_ITEMS * DIM, default_params(), workers=1, value_bound=CLIP)
    try:
        pre = secure.channel.totals()
        out = EncodedSum(secure, N_ITEMS, DIM).aggregate(0, rnd, jax.random.PRNGKey(1))
        assert out.n_accepted == ids.size
        totals = secure.channel.totals()
        by_round = totals["by_round"][0]
        # devices only ever send updates; they receive only the public context (once)
        assert set(by_round) == {"update", "public_context", "aggregate", "result"}
        assert totals["by_sender"]["device"] == by_round["update"] == out.upload_bytes
        assert totals["by_receiver"]["device"] == ids.size * len(secure.public_context)
        assert pre["by_receiver"] == {"aggregator": len(secure.public_context)}

        ctx = secure.aggregator.context
        assert ctx.is_public() and not ctx.has_secret_key()
        vec = ts.ckks_vector(ctx, [0.5] * 8)
        with pytest.raises(ValueError, match="secret"):
            vec.decrypt()
    finally:
        secure.close()

"""The DP popularity counts of a CKKS run are summed under encryption (ppr.experiments.popularity):
the same release as the trusted-curator path, and no item id ever leaves a device."""

from __future__ import annotations

import math

import jax
import numpy as np

from ppr.config import load_config
from ppr.crypto.channel import KIND_PUBLIC_CONTEXT
from ppr.data.split import UserItems
from ppr.experiments.controls import KIND_POPULARITY
from ppr.experiments.popularity import secure_item_counts
from ppr.privacy.popularity import CsrItems, private_item_counts


class Recorder:
    """Wraps the aggregation's channel and keeps every payload a device sent."""

    def __init__(self, base):
        self.base, self.sent = base, []

    def send(self, sender, receiver, kind, payload, round_idx):
        if sender.startswith("device/"):
            self.sent.append((sender, kind, bytes(payload)))
        return self.base.send(sender, receiver, kind, payload, round_idx)

    def totals(self):
        return self.base.totals()


def test_encrypted_counts_equal_the_curators_and_devices_send_only_ciphertexts():
    rng = np.random.default_rng(0)
    n_users, n_items, m, sigma = 40, 300, 5, 2.0
    pairs = {(u, int(i)) for u in range(n_users) for i in rng.choice(n_items, rng.integers(1, 12))}
    u, i = np.array(sorted(pairs)).T
    items = UserItems.from_pairs(u.astype(np.int64), i.astype(np.int64), n_users, n_items)
    cfg = load_config(None, {"privacy.popularity_max_items": m, "aggregation.workers": 1})
    key = jax.random.PRNGKey(7)
    recorder = {}

    def wrap(channel):
        recorder["r"] = Recorder(channel)
        return recorder["r"]

    counts, event, totals = secure_item_counts(cfg, key, items, sigma, wrap)
    want, want_event = private_item_counts(
        key, CsrItems(items.indptr, items.indices), n_items, m, sigma
    )
    # the same noisy release (same keys), up to CKKS precision and the key holder's flooding
    assert np.max(np.abs(counts - want)) < 1e-3
    assert event == want_event
    # every device that holds an item sent exactly one ciphertext frame, labelled popularity
    sent = recorder["r"].sent
    assert {s for s, _, _ in sent} == {f"device/{d}" for d in range(n_users)}
    assert {k for _, k, _ in sent} == {KIND_POPULARITY}
    assert totals["by_kind"][KIND_POPULARITY] == sum(len(p) for _, _, p in sent)
    assert KIND_PUBLIC_CONTEXT in totals["by_kind"]
    # no frame carries the device's item ids in the clear (as int32 / int64 runs of >= 3 ids: a
    # shorter byte string turns up in 100 kB of ciphertext by chance)
    for sender, _, payload in sent:
        dev = int(sender.split("/")[1])
        own = items.row(dev)
        assert len(payload) > 10_000  # a CKKS ciphertext, not a list of ids
        for width in ("<i4", "<i8") if own.size >= 3 else ():
            assert np.asarray(own, width).tobytes() not in payload
    assert math.isfinite(float(np.sum(counts)))


def test_cohort_counts_summed_under_ckks_equal_the_curators():
    """The cold-start cohort release of a CKKS run: sizes, cohort x item and global counts summed
    under encryption equal the curator's sums (same keys), and devices send ciphertexts only."""
    from ppr.experiments.popularity import KIND_COHORT, secure_summation
    from ppr.privacy.cohorts import noisy_cohort_counts

    rng = np.random.default_rng(1)
    n_users, n_items, n_cohorts, m = 30, 50, 3, 4
    pairs = {(u, int(i)) for u in range(n_users) for i in rng.choice(n_items, rng.integers(1, 9))}
    u, i = np.array(sorted(pairs)).T
    csr = UserItems.from_pairs(u.astype(np.int64), i.astype(np.int64), n_users, n_items)
    csr = CsrItems(csr.indptr, csr.indices)
    cohort = rng.integers(-1, n_cohorts, n_users)  # -1: no cohort (counted globally only)
    cfg = load_config(None, {"aggregation.workers": 1})
    recorder = {}

    def wrap(channel):
        recorder["r"] = Recorder(channel)
        return recorder["r"]

    args = (jax.random.PRNGKey(3), cohort, csr, n_cohorts, n_items, m, 1.5)
    secure = noisy_cohort_counts(*args, summation=secure_summation(cfg, KIND_COHORT, wrap))
    plain = noisy_cohort_counts(*args)
    for a, b in zip(secure, plain, strict=True):
        assert a.shape == b.shape and np.max(np.abs(a - b)) < 1e-3
    sent = recorder["r"].sent
    assert {k for _, k, _ in sent} == {KIND_COHORT}
    assert len(sent) == n_users and all(len(p) > 10_000 for _, _, p in sent)

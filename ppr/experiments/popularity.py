"""Count releases of a CKKS run (DP popularity, cold-start cohorts), summed under encryption.

In ``aggregation.mode = "ckks"`` no plaintext leaves a device, the count releases included: each
device encrypts its contribution, a 0/1 vector (for popularity: over the catalog, at most
``privacy.popularity_max_items`` ones, its own items or a random subset; for cohorts: its cohort's
size slot, its items in its cohort's block and in the global block), under the CKKS context of an
aggregation of its own (own key holder, own public context); the aggregator sums ciphertexts it
cannot read, and the key holder releases only the *noised* sum, flooded, as for the model
updates. The noise is the mechanism's own (:func:`ppr.privacy.private_item_counts`,
:func:`ppr.privacy.cohorts.noisy_cohort_counts`, same keys), so each release, its DpEvent and the
ledger entry are those of the curator path; only who sees what changes. (In plaintext mode the
server plays the trusted curator, as it does for the model updates.)

The devices' encryption runs in the main process (one small ciphertext per device, a few ms each):
with a second worker pool that starts and stops before training's own, a Ctrl-C during this stage
crashed the process at exit (SIGSEGV in native teardown, 3 of 7 tries; tests/cli/test_interrupt.py).

Invariant: what a device sends for a count release is one CKKS ciphertext frame, on the channel
under the release's own kind (``popularity``, ``cohort``), never an item id or a cohort label.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from dp_accounting import dp_event

from ppr.config import Config
from ppr.crypto import CkksSecureAggregation
from ppr.crypto.channel import KIND_UPDATE, Channel
from ppr.crypto.params import default_params
from ppr.data.split import UserItems
from ppr.experiments.controls import KIND_POPULARITY, popularity_event
from ppr.privacy.cohorts import Summation
from ppr.privacy.noise import gaussian_noise
from ppr.privacy.popularity import CsrItems, bounded_contributions

KIND_COHORT = "cohort"
CHUNK = 64  # devices whose contribution rows are materialized at once
WrapChannel = Callable[[Channel], Any]


class LabelledChannel:
    """Sends through ``base`` (a :class:`~ppr.crypto.channel.Channel`, whose counters stay the
    record) with the devices' ciphertexts labelled ``kind`` instead of ``update``."""

    def __init__(self, base: Any, kind: str) -> None:
        self.base, self.kind = base, kind

    def send(self, sender: str, receiver: str, kind: str, payload: bytes, round_idx: int) -> bytes:
        label = self.kind if kind == KIND_UPDATE else kind
        return self.base.send(sender, receiver, label, payload, round_idx)

    def totals(self) -> dict[str, Any]:
        return self.base.totals()


def _rows(
    owners: np.ndarray, cols: np.ndarray, n_values: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(device ids, 0/1 rows)`` chunks, ``CHUNK`` devices at a time: device ``owners[j]``
    has a one at ``cols[j]``."""
    order = np.argsort(owners, kind="stable")
    owners, cols = np.asarray(owners, np.int64)[order], np.asarray(cols, np.int64)[order]
    devices = np.unique(owners)
    for s in range(0, devices.size, CHUNK):
        ids = devices[s : s + CHUNK]
        lo, hi = np.searchsorted(owners, ids[0]), np.searchsorted(owners, ids[-1], side="right")
        rows = np.zeros((ids.size, n_values), np.float64)
        rows[np.searchsorted(ids, owners[lo:hi]), cols[lo:hi]] = 1.0
        yield ids, rows


def secure_sum(
    cfg: Config,
    owners: np.ndarray,
    cols: np.ndarray,
    n_values: int,
    noise: np.ndarray,
    kind: str,
    wrap_channel: WrapChannel | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """``noise`` plus a one at ``cols[j]`` for each entry (device ``owners[j]``), summed under
    CKKS; returns ``(total, channel totals)``. Each device's row is 0/1 with L2 norm at most
    ``sqrt(max ones per device)``, which the key holder's aggregate check enforces."""
    per_device = np.bincount(np.unique(np.stack([owners, cols]), axis=1)[0])
    agg = CkksSecureAggregation(
        int(n_values),
        params=default_params(cfg.aggregation.poly_modulus_degree),
        workers=1,  # in process: one small ciphertext per device, no second worker pool
        value_bound=1.0,
        l2_clip=math.sqrt(max(int(per_device.max(initial=1)), 1)),
    )
    base = wrap_channel(agg.channel) if wrap_channel is not None else agg.channel
    agg.channel = LabelledChannel(base, kind)  # type: ignore[assignment]
    n_devices = int(np.unique(owners).size)
    with agg:
        res = agg.aggregate_stream(_rows(owners, cols, n_values), n_devices, -1, noise)
    return res.total, base.totals()


def secure_summation(cfg: Config, kind: str, wrap_channel: WrapChannel | None = None) -> Summation:
    """:func:`secure_sum` as the ``summation`` of a count mechanism (``ppr.privacy.cohorts``)."""

    def summation(owners: np.ndarray, cols: np.ndarray, n_values: int, noise: np.ndarray):
        return secure_sum(cfg, owners, cols, n_values, noise, kind, wrap_channel)[0]

    return summation


def secure_item_counts(
    cfg: Config,
    key: jax.Array,
    items: UserItems,
    noise_multiplier: float,
    wrap_channel: WrapChannel | None = None,
) -> tuple[np.ndarray, dp_event.DpEvent, dict[str, Any]]:
    """The DP popularity counts of the devices holding ``items`` (rows with no item send
    nothing), summed under CKKS: ``(counts, event, channel totals)``, the release of
    :func:`ppr.privacy.private_item_counts` with the same key."""
    m, n_items = cfg.privacy.popularity_max_items, items.n_items
    k_sample, k_noise = jax.random.split(key)
    csr = CsrItems(items.indptr, items.indices)
    users, chosen = bounded_contributions(k_sample, csr, n_items, m)
    noise = np.asarray(gaussian_noise(k_noise, (n_items,), noise_multiplier * math.sqrt(m)))
    total, totals = secure_sum(cfg, users, chosen, n_items, noise, KIND_POPULARITY, wrap_channel)
    return total.astype(np.float32), popularity_event(noise_multiplier), totals

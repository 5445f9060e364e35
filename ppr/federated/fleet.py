"""Simulated devices: one user per device, each holding only its own training items.

Invariants:

* a device's raw items never leave :class:`DeviceFleet`; what leaves is the device's *update* of
  the item matrix (clipped to ``clip_norm``), from which the aggregation strategy forms the sum;
* the user vector ``p_u`` is solved on the device and kept there (it is returned only to the
  simulation's evaluation, which plays the device ranking its own items);
* a round's participants: Poisson sampling includes each eligible device independently with
  probability ``q`` (the sampling the DP analysis of :func:`ppr.privacy.dpfedavg_event` assumes),
  or a fixed-size sample drawn uniformly without replacement (non-private runs only). Every random
  choice comes from an explicit key (the run's secret key under DP).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppr.data.split import UserItems
from ppr.federated.device import Device, DeviceSettings
from ppr.model.mf import (
    BatchUpdate,
    DeviceBatch,
    MFHyper,
    batch_update,
    dense_updates,
    gram,
    pack_buckets,
    preconditioner,
)


def sample_participants(
    key: jax.Array, population: np.ndarray, sampling: str, rate: float, participants: int
) -> np.ndarray:
    """Device ids of this round's participants (sorted).

    ``sampling="poisson"``: each id in ``population`` independently with probability ``rate``;
    ``"fixed"``: ``min(participants, len(population))`` ids uniformly without replacement.
    """
    population = np.asarray(population, dtype=np.int64)
    if sampling == "poisson":
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"`sampling_rate` must be in (0, 1]. Found {rate}.")
        if rate == 1.0:
            return population.copy()
        keep = np.asarray(jax.random.bernoulli(key, rate, (population.size,)))
        return population[keep]
    if sampling == "fixed":
        n = min(int(participants), population.size)
        idx = np.asarray(jax.random.choice(key, population.size, (n,), replace=False))
        return np.sort(population[idx])
    raise ValueError(f"`sampling` must be 'poisson' or 'fixed'. Found {sampling!r}.")


def apply_dropout(
    key: jax.Array, participants: np.ndarray, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``participants`` into (survivors, dropped): each drops out with prob. ``rate``."""
    if rate <= 0 or participants.size == 0:
        return participants, participants[:0]
    drop = np.asarray(jax.random.bernoulli(key, rate, (participants.size,)))
    return participants[~drop], participants[drop]


class DeviceRound(NamedTuple):
    """What the round's participating devices computed, bucketed for vectorization.

    ``batches[b].users`` are the device ids of bucket ``b`` (-1 = padding); ``updates[b]`` their
    clipped updates in outer-product form (see :mod:`ppr.model.mf`)."""

    batches: list[DeviceBatch]
    updates: list[BatchUpdate]
    q: jax.Array | None = None

    @property
    def device_ids(self) -> np.ndarray:
        ids = [b.users[b.valid > 0] for b in self.batches]
        return np.concatenate(ids) if ids else np.zeros(0, np.int64)

    def clipped_sum(self) -> jax.Array:
        """``sum_u f_u v_u p_u^T`` over the round's devices (no dense per-device matrix)."""
        total = self.updates[0].total
        for u in self.updates[1:]:
            total = total + u.total
        return total

    def dense(self, bucket: int) -> np.ndarray:
        """Flat clipped updates ``f_u vec(v_u p_u^T)`` of the valid devices of one bucket: what
        those devices send when the sum is formed by encryption (float32, ``(n, n_items*dim)``)."""
        batch, upd = self.batches[bucket], self.updates[bucket]
        valid = np.flatnonzero(batch.valid > 0)
        return np.asarray(dense_updates(upd, self.q, batch.items))[valid]

    def dense_chunks(self, chunk: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(device ids, flat clipped updates)`` of the round's devices, at most ``chunk`` at a
        time, in :attr:`device_ids` order: what the devices send when the sum is formed by
        encryption. Memory is bounded by ``chunk`` rows however many devices take part; every
        chunk of a bucket has the same shape (the last one overlaps the one before it and yields
        only its new rows), so a bucket compiles once.
        """
        if int(chunk) < 1:
            raise ValueError(f"`chunk` must be at least 1. Found {chunk}.")
        for batch, upd in zip(self.batches, self.updates, strict=True):
            n = batch.users.shape[0]
            step = min(int(chunk), n)
            for lo in range(0, n, step):
                start = min(lo, n - step)
                part = slice(start, start + step)
                fresh = (np.arange(start, start + step) >= lo) & (batch.valid[part] > 0)
                if not fresh.any():
                    continue
                sub = upd._replace(
                    factors=upd.factors[part],
                    p=upd.p[part],
                    obs=upd.obs[part],
                    v=None if upd.v is None else upd.v[part],
                )
                rows = np.asarray(dense_updates(sub, self.q, batch.items[part]))
                yield batch.users[part][fresh], rows[fresh]

    def norms(self) -> np.ndarray:
        """Update norms before clipping, one per device (in :attr:`device_ids` order)."""
        out = [
            np.asarray(u.norms)[b.valid > 0]
            for b, u in zip(self.batches, self.updates, strict=True)
        ]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


class DeviceFleet:
    """All simulated devices of a run, batched. Device ``u`` holds ``items.row(u)`` and nothing
    else; :meth:`device` gives the same device as a reference :class:`~ppr.federated.device.Device`.

    ``members`` are the training devices (training users with at least one item). A member is
    *eligible* for a round unless it opted out of training (``opted_out``) or was retired
    (:meth:`retire`: a personal ε cap reached, or deleted); eligibility depends only on settings
    and planned quantities, never on data, so it may steer sampling and accounting.
    """

    def __init__(
        self,
        items: UserItems,
        train_users: np.ndarray,
        hyper: MFHyper,
        opted_out: np.ndarray | None = None,
    ) -> None:
        self._items = items
        counts = items.counts()
        mask = np.asarray(train_users, dtype=bool) & (counts > 0)
        self.members = np.flatnonzero(mask).astype(np.int64)
        out = np.zeros(items.n_users, bool) if opted_out is None else np.asarray(opted_out, bool)
        self._eligible = ~out[self.members]
        self.hyper = hyper
        self._packed: tuple[bytes, list[DeviceBatch]] | None = None

    @property
    def population(self) -> np.ndarray:
        """Ids of the devices eligible for the next round (sorted)."""
        return self.members[self._eligible]

    def retire(self, device_ids: np.ndarray) -> None:
        """Make ``device_ids`` ineligible from now on."""
        self._eligible &= ~np.isin(self.members, np.asarray(device_ids, np.int64))

    def device(self, device_id: int, settings: DeviceSettings | None = None) -> Device:
        """Device ``device_id`` as the reference :class:`Device` (its own items only)."""
        return Device(device_id, self._items.row(int(device_id)), self.n_items, settings)

    def _pack(self, device_ids: np.ndarray) -> list[DeviceBatch]:
        """Padded buckets of ``device_ids``; the last round's packing is reused when the same
        participants comes again (every round with q = 1): it depends only on the devices' items."""
        key = device_ids.tobytes()
        if self._packed is None or self._packed[0] != key:
            self._packed = (key, pack_buckets(self._items, device_ids))
        return self._packed[1]

    @property
    def n_devices(self) -> int:
        """Training devices, eligible or not (the ``N`` of the DP analysis)."""
        return int(self.members.size)

    @property
    def n_items(self) -> int:
        return self._items.n_items

    @property
    def n_users(self) -> int:
        """User ids ``0 .. n_users - 1`` (devices or not; public: the enrolment range)."""
        return self._items.n_users

    def compute(
        self, q: jax.Array, device_ids: np.ndarray, clip_norm: float, hyper: MFHyper | None = None
    ) -> DeviceRound:
        """Each device solves its user vector from ``q`` and its own items and computes its
        clipped update. ``Q^T Q`` is computed once and shared (it is a function of ``q`` only).
        ``hyper`` overrides the fleet's (e.g. a device tier's budget of local steps)."""
        hyper = self.hyper if hyper is None else hyper
        if np.asarray(device_ids).size == 0:
            return DeviceRound([], [], q)
        g = gram(q)
        m_inv = preconditioner(g, hyper.reg)
        batches = self._pack(np.asarray(device_ids, dtype=np.int64))
        clip = jnp.float32(clip_norm)
        updates = [batch_update(q, g, b, hyper, clip, m_inv=m_inv) for b in batches]
        return DeviceRound(batches, updates, q)

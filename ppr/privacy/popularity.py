"""DP item-popularity counts: the prior a device can blend into its ranking.

Each device contributes at most ``max_items`` *distinct* items, each counted once (+1). A device
with more items keeps a uniformly random subset of ``max_items`` of them (drawn with the given
key). Adding or removing one device therefore changes the count vector by a 0/1 vector with at
most ``max_items`` ones: L2 sensitivity ``sqrt(max_items)``. Gaussian noise of std
``σ_pop·sqrt(max_items)`` on every count makes the release ``GaussianDpEvent(σ_pop)``, which
must be composed into the run's ledger. Everything is vectorized (sorts and ``np.bincount``); no
Python loop over devices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import dp_accounting
import jax
import numpy as np
from dp_accounting import dp_event

from ppr.errors import PprError
from ppr.privacy._checks import check_count, check_non_negative
from ppr.privacy.noise import gaussian_noise


class CsrItems(NamedTuple):
    """Each device's item ids, CSR style: device u holds ``indices[indptr[u]:indptr[u+1]]``."""

    indptr: np.ndarray
    indices: np.ndarray


def csr_from_pairs(users: np.ndarray, items: np.ndarray, n_users: int) -> CsrItems:
    """Group ``(user, item)`` pairs by user (stable), as :class:`CsrItems`."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if users.shape != items.shape or users.ndim != 1:
        raise PprError("`users` and `items` must be 1-D arrays of the same length.")
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise PprError(f"user ids must lie in [0, {n_users}).")
    order = np.argsort(users, kind="stable")
    counts = np.bincount(users, minlength=n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return CsrItems(indptr, items[order])


def _as_csr(user_items: CsrItems | Sequence[np.ndarray]) -> CsrItems:
    if isinstance(user_items, CsrItems):
        return CsrItems(np.asarray(user_items.indptr, np.int64), np.asarray(user_items.indices))
    arrays = [np.asarray(a, dtype=np.int64).ravel() for a in user_items]
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    return CsrItems(indptr, indices)


def bounded_contributions(
    key: jax.Array, user_items: CsrItems | Sequence[np.ndarray], n_items: int, max_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``(user, item)`` pairs that are counted: distinct per device, at most ``max_items``.

    Devices with more than ``max_items`` distinct items keep a uniformly random subset (random
    priorities from ``key``, the lowest ``max_items`` per device). Returns sorted-by-user arrays.
    """
    check_count("n_items", n_items)
    check_count("max_items", max_items)
    csr = _as_csr(user_items)
    n_users = csr.indptr.size - 1
    items = np.asarray(csr.indices, dtype=np.int64)
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise PprError(f"item ids must lie in [0, {n_items}).")
    users = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(csr.indptr))
    pairs = np.unique(users * int(n_items) + items)  # distinct (user, item), sorted by user
    users, items = pairs // n_items, pairs % n_items
    priority = np.asarray(jax.random.uniform(key, (pairs.size,), dtype=np.float32))
    order = np.lexsort((priority, users))  # by user, then random priority
    users, items = users[order], items[order]
    starts = np.searchsorted(users, users, side="left")
    keep = (np.arange(users.size) - starts) < max_items
    return users[keep], items[keep]


def private_item_counts(
    key: jax.Array,
    user_items: CsrItems | Sequence[np.ndarray],
    n_items: int,
    max_items: int,
    noise_multiplier: float,
) -> tuple[np.ndarray, dp_event.DpEvent]:
    """Noisy per-item counts and the DpEvent to put in the ledger.

    Noise std is ``noise_multiplier·sqrt(max_items)`` (L2 sensitivity ``sqrt(max_items)``); the
    event is ``GaussianDpEvent(noise_multiplier)`` (``NonPrivateDpEvent`` when it is 0).
    Returns float32 counts of shape ``(n_items,)`` (they can be negative: post-process freely).
    """
    check_non_negative("noise_multiplier", noise_multiplier)
    k_sample, k_noise = jax.random.split(key)
    _, items = bounded_contributions(k_sample, user_items, n_items, max_items)
    counts = np.bincount(items, minlength=n_items).astype(np.float32)
    std = float(noise_multiplier) * math.sqrt(int(max_items))
    noise = np.asarray(gaussian_noise(k_noise, (int(n_items),), std))
    event: dp_event.DpEvent = (
        dp_accounting.GaussianDpEvent(float(noise_multiplier))
        if noise_multiplier > 0
        else dp_accounting.NonPrivateDpEvent()
    )
    return counts + noise, event

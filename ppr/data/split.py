"""Implicit positives and train / validation / test splits.

Protocols (``split.protocol``):
- ``random``: each user's positives are split at random, ``test_fraction`` to test (seeded);
- ``leave_last``: each user's last ``leave_last_k`` positives by timestamp go to test;
- ``held_out_users``: a ``held_out_fraction`` of users never train; their positives are split
  ``fold_in_fraction`` / rest into fold-in (used only to solve their user vector at evaluation,
  as in the private ALS literature) and test.
Validation is carved from train the same way as test (``validation_fraction`` of each user's train
positives), for tuning; test is touched only for reporting.

Invariants (tested): train, validation and test are disjoint per user; every user with test (or
validation) items keeps at least ``min_train`` train items, otherwise the user's held-out items move
back to train and the user is not evaluated; devices hold only their own train items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ppr.config import SplitConfig
from ppr.data.interactions import Interactions
from ppr.errors import DataError


@dataclass(frozen=True)
class UserItems:
    """Per-user item lists in CSR form: user ``u`` holds ``indices[indptr[u]:indptr[u+1]]``
    (sorted)."""

    indptr: np.ndarray
    indices: np.ndarray
    n_items: int

    @property
    def n_users(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def row(self, u: int) -> np.ndarray:
        return self.indices[self.indptr[u] : self.indptr[u + 1]]

    def to_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        users = np.repeat(np.arange(self.n_users, dtype=np.int32), self.counts())
        return users, self.indices

    @staticmethod
    def from_pairs(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> UserItems:
        order = np.lexsort((items, users))
        users = np.asarray(users)[order]
        items = np.asarray(items, dtype=np.int32)[order]
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.add.at(indptr, users + 1, 1)
        return UserItems(np.cumsum(indptr), items, n_items)

    def union(self, other: UserItems) -> UserItems:
        u1, i1 = self.to_pairs()
        u2, i2 = other.to_pairs()
        return UserItems.from_pairs(
            np.concatenate([u1, u2]), np.concatenate([i1, i2]), self.n_users, self.n_items
        )

    def dense(self, users: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
        users = np.arange(self.n_users) if users is None else np.asarray(users)
        out = np.zeros((users.shape[0], self.n_items), dtype=dtype)
        for r, u in enumerate(users):
            out[r, self.row(int(u))] = 1
        return out


@dataclass(frozen=True)
class Split:
    """Train / validation / test positives of every user.

    ``train`` is what the devices hold (for held-out users: their fold-in items, which never enter
    training). ``train_users`` marks users whose devices take part in training.
    ``fit`` returns the train set to fit on and the split to evaluate: train minus validation when
    tuning, train plus validation when reporting test.
    """

    train: UserItems
    validation: UserItems
    test: UserItems
    train_users: np.ndarray
    n_users: int
    n_items: int
    item_ids: np.ndarray | None = None  # original item ids (display; the released model)
    item_titles: np.ndarray | None = None
    user_attributes: object | None = None  # the data set's coarse user attributes, if any

    def for_evaluation(self, on: str) -> tuple[UserItems, UserItems]:
        """(items to train on, items to evaluate against) for ``on`` in {"test", "validation"}."""
        if on == "validation":
            return self.train, self.validation
        return self.train.union(self.validation), self.test


def positives(inter: Interactions, threshold: float) -> Interactions:
    """Keep the interactions with rating >= threshold (implicit positives)."""
    keep = inter.ratings >= threshold
    if not np.any(keep):
        raise DataError(
            f"{inter.source}: no rating >= {threshold} (`split.positive_threshold`): no positives"
        )
    return Interactions(
        users=inter.users[keep],
        items=inter.items[keep],
        ratings=inter.ratings[keep],
        timestamps=inter.timestamps[keep],
        n_users=inter.n_users,
        n_items=inter.n_items,
        user_ids=inter.user_ids,
        item_ids=inter.item_ids,
        item_titles=inter.item_titles,
        user_attributes=inter.user_attributes,
        source=inter.source,
    )


def _holdout_mask(
    users: np.ndarray, scores: np.ndarray, n_users: int, fraction: float | None, k: int | None
) -> np.ndarray:
    """Per user, mark the items with the highest ``scores`` as held out: ``round(fraction * n)``
    of them (at least one when the user has >= 2 items), or exactly ``k`` (leaving >= 1 behind)."""
    order = np.lexsort((-scores, users))
    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(users.shape[0], dtype=np.int64)
    rank[order] = np.arange(users.shape[0]) - np.repeat(starts, counts)
    if k is not None:
        n_out = np.minimum(k, np.maximum(counts - 1, 0))
    else:
        n_out = np.where(counts >= 2, np.maximum(1, np.rint(fraction * counts)), 0).astype(np.int64)
        n_out = np.minimum(n_out, np.maximum(counts - 1, 0))
    return rank < n_out[users]


def make_split(inter: Interactions, cfg: SplitConfig, seed: int) -> Split:
    """Split the positives of ``inter`` according to ``cfg`` (deterministic for a seed)."""
    pos = positives(inter, cfg.positive_threshold)
    if cfg.users_without_positives == "error":
        lacking = np.flatnonzero(np.bincount(pos.users, minlength=inter.n_users) == 0)
        if lacking.size:
            first = inter.user_ids[lacking[0]] if inter.user_ids is not None else lacking[0]
            raise DataError(
                f"{inter.source}: {lacking.size} user(s) have no rating >= "
                f"{cfg.positive_threshold:g} (first: user {first}); set "
                '`split.users_without_positives = "drop"` to leave them out'
            )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E1]))
    users, items = pos.users.astype(np.int64), pos.items
    n_users, n_items = inter.n_users, inter.n_items
    train_users = np.ones(n_users, dtype=bool)

    if cfg.protocol == "random":
        test = _holdout_mask(users, rng.random(users.shape[0]), n_users, cfg.test_fraction, None)
    elif cfg.protocol == "leave_last":
        jitter = rng.random(users.shape[0]) * 1e-3  # random tie-break among equal timestamps
        test = _holdout_mask(users, pos.timestamps + jitter, n_users, None, cfg.leave_last_k)
    else:
        held = rng.random(n_users) < cfg.held_out_fraction
        train_users = ~held
        fold_out = _holdout_mask(
            users, rng.random(users.shape[0]), n_users, 1.0 - cfg.fold_in_fraction, None
        )
        test = fold_out & held[users]

    # validation: carved from the remaining train items of training users
    rest = ~test
    val = np.zeros_like(test)
    if cfg.validation_fraction > 0:
        sub = np.flatnonzero(rest & train_users[users])
        vmask = _holdout_mask(
            users[sub], rng.random(sub.shape[0]), n_users, cfg.validation_fraction, None
        )
        val[sub[vmask]] = True
    train = rest & ~val

    # every evaluated user keeps >= min_train train items: otherwise move held-out items back
    train_counts = np.bincount(users[train], minlength=n_users)
    starved = train_counts < cfg.min_train
    if np.any(starved):
        back = starved[users]
        train |= back
        test &= ~back
        val &= ~back

    def csr(mask: np.ndarray) -> UserItems:
        return UserItems.from_pairs(users[mask], items[mask], n_users, n_items)

    return Split(
        csr(train),
        csr(val),
        csr(test),
        train_users,
        n_users,
        n_items,
        inter.item_ids,
        inter.item_titles,
        inter.user_attributes,
    )

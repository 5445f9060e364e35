"""The one typed interaction table every loader produces.

Invariants (checked by :meth:`Interactions.validate`):
- ``users`` and ``items`` are dense ``int32`` indices in ``[0, n_users)`` and ``[0, n_items)``;
- ``ratings`` are finite ``float32``; ``timestamps`` are ``int64`` seconds;
- no ``(user, item)`` pair appears twice;
- ``user_ids[u]`` / ``item_ids[i]`` give the original ids for display;
- ``item_titles`` (when present) has ``n_items`` entries, ``user_attributes`` (when present) has
  ``n_users`` rows indexed by the dense user index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ppr.errors import DataError


@dataclass(frozen=True)
class Interactions:
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    n_users: int
    n_items: int
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_titles: np.ndarray | None = None
    user_attributes: pd.DataFrame | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def density(self) -> float:
        return len(self) / max(1, self.n_users * self.n_items)

    def validate(self) -> Interactions:
        n = len(self)
        for name in ("items", "ratings", "timestamps"):
            if getattr(self, name).shape != (n,):
                raise DataError(f"{self.source}: column `{name}` has the wrong length")
        if n == 0:
            raise DataError(f"{self.source}: no interactions")
        if self.users.min() < 0 or self.users.max() >= self.n_users:
            raise DataError(f"{self.source}: user index out of range")
        if self.items.min() < 0 or self.items.max() >= self.n_items:
            raise DataError(f"{self.source}: item index out of range")
        if not np.all(np.isfinite(self.ratings)):
            raise DataError(f"{self.source}: non-finite rating")
        key = self.users.astype(np.int64) * self.n_items + self.items
        if np.unique(key).shape[0] != n:
            raise DataError(f"{self.source}: duplicate (user, item) rows")
        return self

    @staticmethod
    def from_arrays(
        users,
        items,
        ratings,
        timestamps=None,
        *,
        item_titles: dict | None = None,
        user_attributes: pd.DataFrame | None = None,
        source: str = "",
    ) -> Interactions:
        """Re-index raw ids densely (sorted by original id) and build the table.

        ``item_titles`` maps original item id -> title; ``user_attributes`` is indexed by the
        original user id. Both are re-aligned to the dense indices.
        """
        users = np.asarray(users)
        items = np.asarray(items)
        user_ids, u = np.unique(users, return_inverse=True)
        item_ids, i = np.unique(items, return_inverse=True)
        ts = (
            np.zeros(users.shape[0], dtype=np.int64)
            if timestamps is None
            else np.asarray(timestamps, dtype=np.int64)
        )
        titles = None
        if item_titles is not None:
            titles = np.array(
                [str(item_titles.get(k, "")) for k in item_ids.tolist()], dtype=object
            )
        attrs = None
        if user_attributes is not None:
            attrs = user_attributes.reindex(user_ids).reset_index(drop=True)
        return Interactions(
            users=u.astype(np.int32),
            items=i.astype(np.int32),
            ratings=np.asarray(ratings, dtype=np.float32),
            timestamps=ts,
            n_users=int(user_ids.shape[0]),
            n_items=int(item_ids.shape[0]),
            user_ids=user_ids,
            item_ids=item_ids,
            item_titles=titles,
            user_attributes=attrs,
            source=source,
        ).validate()

"""Structured synthetic item catalogs for serving tests and benchmarks.

Nearest-neighbour search behaves very differently on i.i.d. isotropic noise (where every item is
about as far as every other, and no index beats a scan) than on trained embeddings, which have
latent structure. A catalog here is built the way trained factors look:

* item *directions* scatter around ``n_clusters`` random unit centres (genres, tastes):
  ``dir_i = normalize(c_{k(i)} + spread * g_i / sqrt(dim))``, ``g_i`` standard normal, cluster
  sizes Zipf-like (a few big genres, many niches);
* item *norms* follow a truncated power law (popularity): ``norm_i ∝ (u_i + floor)^-power`` with
  ``u_i`` uniform, rescaled to median 1. With the defaults the spread is close to that of
  implicit ALS on MovieLens (max / median ≈ 10, 90th percentile / median ≈ 2.5).

Users hold items from one to three clusters, drawn with probability proportional to the item norm
(popular items are held more often); their vectors come from the closed-form solve, as on a
device. Deterministic for a given ``numpy.random.Generator`` state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Catalog:
    """Item matrix ``q`` (float32, ``(n_items, dim)``) and each item's cluster ``cluster``."""

    q: np.ndarray
    cluster: np.ndarray

    @property
    def n_items(self) -> int:
        return int(self.q.shape[0])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def clustered_catalog(
    rng: np.random.Generator,
    n_items: int,
    dim: int = 32,
    n_clusters: int = 256,
    spread: float = 0.8,
    norm_power: float = 0.4,
    norm_floor: float = 2e-3,
) -> Catalog:
    """A catalog of ``n_items`` items in ``dim`` dimensions (see the module docstring)."""
    centres = _unit(rng.normal(size=(n_clusters, dim)))
    weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.7
    cluster = rng.choice(n_clusters, size=n_items, p=weights / weights.sum()).astype(np.int32)
    q = np.empty((n_items, dim), dtype=np.float32)
    step = 1 << 17
    for s in range(0, n_items, step):  # in blocks: float64 temporaries stay small at 1M items
        e = min(s + step, n_items)
        noise = rng.normal(size=(e - s, dim)) * (spread / np.sqrt(dim))
        q[s:e] = _unit(centres[cluster[s:e]] + noise)
    norms = (rng.random(n_items) + norm_floor) ** -norm_power
    q *= (norms / np.median(norms)).astype(np.float32)[:, None]
    return Catalog(q, cluster)


def sample_user_items(
    rng: np.random.Generator,
    catalog: Catalog,
    n_users: int,
    items_per_user: tuple[int, int] = (10, 80),
    clusters_per_user: tuple[int, int] = (1, 3),
) -> list[np.ndarray]:
    """``n_users`` sorted, distinct item lists: each user picks 1-3 clusters (by cluster size) and
    ``items_per_user`` items among them, with probability proportional to the item's norm."""
    order = np.argsort(catalog.cluster, kind="stable")
    bounds = np.searchsorted(catalog.cluster[order], np.arange(catalog.cluster.max() + 2))
    sizes = np.diff(bounds).astype(np.float64)
    norms = np.linalg.norm(catalog.q, axis=1).astype(np.float64)
    users = []
    for _ in range(n_users):
        n_c = int(rng.integers(clusters_per_user[0], clusters_per_user[1] + 1))
        chosen = rng.choice(sizes.size, size=n_c, replace=False, p=sizes / sizes.sum())
        pool = np.concatenate([order[bounds[c] : bounds[c + 1]] for c in chosen])
        n = min(int(rng.integers(items_per_user[0], items_per_user[1] + 1)), pool.size)
        w = norms[pool] / norms[pool].sum()
        users.append(np.sort(rng.choice(pool, size=n, replace=False, p=w)))
    return users

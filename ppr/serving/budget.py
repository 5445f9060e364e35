"""Fit the serving model into the device's memory budget.

The device holds the stored item matrix (float32 / float16 / int8, :mod:`ppr.serving.codecs`)
plus its index's own data: the norm order of the pruned exact scan (int32, 4 bytes/item) or the
Annoy file (float32 vectors plus trees, several times the float32 matrix). :func:`plan_device`
picks, in this order of preference,

1. the most precise format (float32, then float16, then int8), and for that format
2. the preferred index: Annoy when the catalog has at least ``annoy_from_items`` items (the
   measured crossover; ``None``: never by default), then the pruned exact scan (from
   ``PRUNE_FROM_ITEMS`` items, its measured crossover with the full scan), then the plain scan,

taking the first option whose size fits ``device_budget_mb``; if none does it raises
:class:`BudgetError` naming the budget and the smallest option. :func:`build_for_budget` builds
the plan and checks the *measured* size (Annoy's file size is only estimated beforehand), moving
on to the next option if the estimate was short.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ppr.serving.codecs import FORMATS, bytes_per_row, encode
from ppr.serving.errors import BudgetError
from ppr.serving.index import AnnoyIndex, ExactIndex, LocalIndex

#: A phone-sized budget for the recommender's model and index.
DEFAULT_BUDGET_MB = 64.0

#: Catalog size from which Annoy is preferred over the exact scan. ``None``: never by default,
#: because ``benchmarks/serving.py`` finds no Annoy setting that reaches recall 0.95 faster than
#: the pruned exact scan on ALS-like factors up to 1M items (see its crossover output).
ANNOY_CROSSOVER_ITEMS: int | None = None

#: Catalog size from which the norm-pruned exact scan is preferred over the plain full scan
#: (below it the full scan's single matrix-vector product is faster; ``benchmarks/serving.py``).
PRUNE_FROM_ITEMS = 300_000  # measured: full scan ahead at 100k, pruned 4x ahead at 1M

#: Default Annoy parameters (the benchmark's tuning; ``search_k`` per query).
ANNOY_N_TREES = 10


@dataclass(frozen=True)
class DevicePlan:
    """A storage format and an index kind (``annoy``, ``exact-pruned`` or ``exact``) with their
    estimated size in bytes, within ``budget_bytes``."""

    format: str
    index: str
    nbytes: int
    budget_bytes: int


def annoy_nbytes(n_items: int, dim: int, n_trees: int) -> int:
    """Estimated size of Annoy's ``dot`` file: nodes of ``16 + 4 dim`` bytes, one per item plus
    about ``3.6 n / (dim + 3)`` per tree (measured 3.2-3.4 at dim 8 and 32; the check after
    building is what counts)."""
    node = 16 + 4 * dim
    per_tree = int(np.ceil(3.6 * n_items / (dim + 3)))
    return node * (n_items + n_trees * per_tree)


def estimate_nbytes(n_items: int, dim: int, fmt: str, index: str, n_trees: int) -> int:
    """Device bytes of the matrix in ``fmt`` plus the index ``index``."""
    base = n_items * bytes_per_row(fmt, dim)
    if index == "annoy":
        return base + annoy_nbytes(n_items, dim, n_trees)
    return base + (4 * n_items if index == "exact-pruned" else 0)


def _options(
    n_items: int, dim: int, annoy_from: int | None, n_trees: int
) -> list[tuple[str, str, int]]:
    kinds = ["exact-pruned", "exact"] if n_items >= PRUNE_FROM_ITEMS else ["exact"]
    if annoy_from is not None and n_items >= annoy_from:
        kinds.insert(0, "annoy")
    return [
        (fmt, kind, estimate_nbytes(n_items, dim, fmt, kind, n_trees))
        for fmt in FORMATS
        for kind in kinds
    ]


def plan_device(
    n_items: int,
    dim: int,
    device_budget_mb: float = DEFAULT_BUDGET_MB,
    annoy_from_items: int | None = ANNOY_CROSSOVER_ITEMS,
    n_trees: int = ANNOY_N_TREES,
) -> DevicePlan:
    """The first option (module docstring) that fits; :class:`BudgetError` if none does."""
    budget = int(device_budget_mb * 2**20)
    options = _options(n_items, dim, annoy_from_items, n_trees)
    for fmt, kind, size in options:
        if size <= budget:
            return DevicePlan(fmt, kind, size, budget)
    smallest = min(size for _, _, size in options)
    raise BudgetError(
        f"device_budget_mb={device_budget_mb:g} MB is too small for {n_items} items of dim {dim}: "
        f"the smallest option (int8, exact scan) needs {smallest / 2**20:.2f} MB"
    )


def build_index(q: np.ndarray, plan: DevicePlan, search_k: int = -1, seed: int = 0) -> LocalIndex:
    """Build the index ``plan`` describes from the float32 item matrix ``q``."""
    items = encode(q, plan.format)
    if plan.index == "annoy":
        return AnnoyIndex.build(items, n_trees=ANNOY_N_TREES, search_k=search_k, seed=seed)
    return ExactIndex.build(items, prune=plan.index == "exact-pruned")


def build_for_budget(
    q: np.ndarray,
    device_budget_mb: float = DEFAULT_BUDGET_MB,
    annoy_from_items: int | None = ANNOY_CROSSOVER_ITEMS,
    search_k: int = -1,
    seed: int = 0,
) -> LocalIndex:
    """The index of the first plan that fits, its size *measured* after building (an Annoy
    file larger than estimated moves on to the next option). Invariant: the returned index's
    ``nbytes <= device_budget_mb * 2**20``."""
    n_items, dim = q.shape
    budget = int(device_budget_mb * 2**20)
    for fmt, kind, size in _options(n_items, dim, annoy_from_items, ANNOY_N_TREES):
        if size > budget:
            continue
        index = build_index(q, DevicePlan(fmt, kind, size, budget), search_k, seed)
        if index.nbytes <= budget:
            return index
    plan_device(n_items, dim, device_budget_mb, annoy_from_items)  # raises the BudgetError
    raise BudgetError(f"device_budget_mb={device_budget_mb:g} MB: no built index fits")

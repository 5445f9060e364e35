"""The serving Device: one user's phone holding the released model, its own items and its index.

State (everything stays on the device):

* ``items``: the user's own item ids (catalog positions; sorted, distinct) — its events;
* ``settings``: :class:`DeviceSettings` (budget, storage format, index kind, k, refinement
  allowed or not, how many own items an explanation lists);
* ``recommender``: the local :class:`~ppr.serving.recommender.Recommender` — the released item
  matrix stored in the planned format plus the local index, within ``settings.budget_mb``;
* ``user_vector``: ``p_u`` solved on the device from the stored item matrix and ``items``
  (:meth:`ServingDevice.solve`, the closed form of training), cached until the items change.

Actions: :meth:`ServingDevice.solve`, :meth:`ServingDevice.recommend` (never one of ``items``),
:meth:`ServingDevice.explain` (shares that add up to the score).

The local index is built once per model version and kept in a folder
(:func:`open_local`: ``<root>/<format>-<kind>/``, memory-mapped on later opens). It is built in a
hidden temporary folder and renamed into place, so a folder that exists is complete; a folder
built for another model version is rebuilt.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ppr.io import read_json
from ppr.model.release import ReleasedModel
from ppr.serving.budget import (
    ANNOY_N_TREES,
    PRUNE_FROM_ITEMS,
    DevicePlan,
    build_index,
    estimate_nbytes,
)
from ppr.serving.codecs import FORMATS
from ppr.serving.errors import BudgetError, ServingError
from ppr.serving.index import check_item_ids
from ppr.serving.recommender import MODEL_FILE, Explanation, PriorRecommender, Recommender

#: What ``format = "auto"`` / ``index = "auto"`` may pick, in order of preference.
AUTO = "auto"


@dataclass(frozen=True)
class DeviceSettings:
    """The device's serving settings (``[serving]`` of the config, plus the user's choices).

    ``budget_mb`` bounds the bytes of the stored matrix plus the index (``Q^T Q``, 8 dim^2 bytes,
    is not counted); ``format`` / ``index`` are ``"auto"`` or a fixed choice; ``refine``: the user
    allows server refinement (hybrid serving); ``candidates``: local top-N a refinement scores."""

    budget_mb: float = 64.0
    format: str = AUTO
    index: str = AUTO
    k: int = 10
    refine: bool = False
    candidates: int = 200
    explain_top: int = 5

    @classmethod
    def from_config(cls, serving: Any, **choices: Any) -> DeviceSettings:
        """Settings from a ``[serving]`` config section, with per-user overrides ``choices``."""
        base = cls(
            budget_mb=float(serving.device_budget_mb),
            format=str(serving.format),
            index=str(serving.index),
            k=int(serving.k),
            candidates=int(serving.candidates),
            explain_top=int(serving.explain_top),
        )
        return replace(base, **choices)


def plan_local(n_items: int, dim: int, settings: DeviceSettings) -> DevicePlan:
    """The storage format and index kind the device uses: among the allowed ones (``auto``: all
    formats from the most precise; kinds exact(-pruned from ``PRUNE_FROM_ITEMS`` items)), the
    first whose estimated size fits ``settings.budget_mb``; :class:`BudgetError` otherwise."""
    budget = int(settings.budget_mb * 2**20)
    formats = FORMATS if settings.format == AUTO else (settings.format,)
    if settings.index == "annoy":
        kinds = ["annoy"]
    else:
        kinds = ["exact-pruned", "exact"] if n_items >= PRUNE_FROM_ITEMS else ["exact"]
    sizes = []
    for fmt in formats:
        for kind in kinds:
            size = estimate_nbytes(n_items, dim, fmt, kind, ANNOY_N_TREES)
            if size <= budget:
                return DevicePlan(fmt, kind, size, budget)
            sizes.append((size, fmt, kind))
    size, fmt, kind = min(sizes)
    raise BudgetError(
        f"serving.device_budget_mb={settings.budget_mb:g} is too small for {n_items} items of "
        f"dim {dim}: the smallest allowed option ({fmt}, {kind}) needs {size / 2**20:.2f} MiB"
    )


def _folder_name(plan: DevicePlan) -> str:
    return f"{plan.format}-{plan.index}"


def _saved_version(folder: Path) -> str | None:
    try:
        return str(read_json(folder / MODEL_FILE).get("model_version"))
    except (OSError, ValueError, AttributeError):
        return None


def build_local(model: ReleasedModel, plan: DevicePlan) -> Recommender:
    """The recommender of ``plan`` over the released matrix (in memory, not saved); its measured
    bytes must fit the plan's budget (an Annoy file larger than estimated raises)."""
    index = build_index(np.asarray(model.item_factors, np.float32), plan)
    if index.nbytes > plan.budget_bytes:
        raise BudgetError(
            f"the built {plan.format} {plan.index} index takes {index.nbytes / 2**20:.2f} MiB, "
            f"over serving.device_budget_mb={plan.budget_bytes / 2**20:g}"
        )
    return Recommender._KINDS[index.kind](index, model.alpha, model.reg)


def open_local(model: ReleasedModel, root: Path, plan: DevicePlan) -> Recommender:
    """The recommender of ``plan`` saved under ``root/<format>-<kind>/`` for ``model.version``:
    loaded memory-mapped when present, else built, saved atomically (temporary folder, then one
    rename) and loaded. Invariant: the folder that exists belongs to one complete build."""
    folder = Path(root) / _folder_name(plan)
    if _saved_version(folder) == model.version:
        return Recommender.load(folder, mmap=True)
    rec = build_local(model, plan)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        rec.save(tmp, {"model_version": model.version, "budget_mb": plan.budget_bytes / 2**20})
        tmp.chmod(0o755)  # mkdtemp makes it private; the index is not secret
        if folder.exists():
            shutil.rmtree(folder)  # a build for an older model version
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Recommender.load(folder, mmap=True)


class ServingDevice:
    """One device serving its user (module docstring). Items are catalog positions."""

    def __init__(
        self,
        recommender: Recommender | PriorRecommender,
        items: np.ndarray,
        settings: DeviceSettings | None = None,
    ) -> None:
        self.recommender = recommender
        self.settings = settings or DeviceSettings()
        self._items = check_item_ids(items, recommender.n_items)
        self._p: np.ndarray | None = None

    @property
    def items(self) -> np.ndarray:
        return self._items

    @property
    def nbytes(self) -> int:
        """Bytes held for serving: the stored matrix, the index, ``Q^T Q`` and ``p_u``."""
        return self.recommender.nbytes + 8 * self.recommender.index.dim

    def add_items(self, new: np.ndarray) -> None:
        """New events on the device: the items join its own, ``p_u`` is solved again."""
        merged = np.concatenate([self._items, np.asarray(new, np.int64).ravel()])
        self._items = check_item_ids(merged, self.recommender.n_items)
        self._p = None

    def solve(self) -> np.ndarray:
        """``p_u`` from the stored item matrix and the device's items (cached)."""
        if self._p is None:
            self._p = self.recommender.recalculate_user(self._items)
        return self._p

    def recommend(
        self, k: int | None = None, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(ids, scores)`` (``settings.k`` by default), never one of the device's own
        items nor of ``exclude``."""
        k = self.settings.k if k is None else int(k)
        if k < 1:
            raise ServingError(f"k must be at least 1, got {k}")
        hidden = self._items if exclude is None else np.concatenate([self._items, exclude])
        return self.recommender.rank(self.solve(), k, hidden)

    def explain(self, item: int) -> Explanation:
        """The score of ``item`` split into one share per own item (shares sum to the score)."""
        return self.recommender.explain(self._items, item)


__all__ = [
    "DeviceSettings",
    "ServingDevice",
    "build_local",
    "open_local",
    "plan_local",
]

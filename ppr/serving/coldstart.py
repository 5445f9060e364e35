"""Cold start on the device: cohort prior first, then on-device fold-in.

A new device holds the released item matrix ``Q`` (with the model's ``alpha`` and ``lambda``) and
the run's cohort release (:class:`~ppr.privacy.cohorts.CohortRelease`, ``cohorts.json``). It
sends nothing to get recommendations:

* **no history**: it names its cohort *locally* (from its coarse attributes, or, anonymous, from
  its items: none yet, so none) and ranks by that cohort's DP prior; when its cohort was not
  released (noisy size below K) or it has none, by the global DP popularity (the fallback);
* **after its first interactions** ``u``: the closed-form user vector of
  :meth:`ppr.serving.recommender.Recommender.recalculate_user`,
  ``p_u = (Q^T Q + alpha Q_u^T Q_u + lambda I)^-1 (1 + alpha) sum_{j in u} q_j``, scores
  ``p_u . q_i / max_j |p_u . q_j| + blend * prior_i / max(prior)`` (both scaled to at most 1,
  so ``blend`` means the same for every model; the cohort prior, anonymous cohorts assigned from
  ``u``); its own items are never recommended.

Everything here is post-processing of DP releases plus the device's own data: no privacy cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ppr.privacy.cohorts import CohortRelease
from ppr.serving.errors import ServingError
from ppr.serving.index import check_item_ids


class ColdStartDevice:
    """One new user's device (module docstring). ``item_factors``: the released ``Q``."""

    def __init__(
        self,
        release: CohortRelease,
        item_factors: np.ndarray,
        alpha: float,
        reg: float,
        blend: float = 0.0,
    ) -> None:
        q = np.asarray(item_factors, np.float64)
        if q.ndim != 2 or q.shape[0] != release.global_counts.size:
            raise ServingError(
                f"the item matrix has {q.shape[0] if q.ndim == 2 else '?'} rows but the cohort "
                f"release counts {release.global_counts.size} items"
            )
        if not (alpha >= 0 and reg > 0 and blend >= 0):
            raise ServingError(f"need alpha >= 0, reg > 0, blend >= 0; got {alpha}, {reg}, {blend}")
        self.release, self.q = release, q
        self.alpha, self.reg, self.blend = float(alpha), float(reg), float(blend)
        self.gram = q.T @ q

    @property
    def n_items(self) -> int:
        return int(self.q.shape[0])

    def cohort(self, attributes: Mapping[str, Any] | None = None, items=()) -> int:
        """The released cohort this device is in, computed locally; -1: none (fallback)."""
        own = check_item_ids(items, self.n_items) if len(items) else None
        return self.release.cohort_of(attributes, own, self.q)

    def prior(self, attributes: Mapping[str, Any] | None = None, items=()) -> np.ndarray:
        """The cohort prior (global private popularity when the device has no released cohort)."""
        return self.release.scores(self.cohort(attributes, items))

    def user_vector(self, items) -> np.ndarray:
        """``p_u`` in closed form (float64; duplicates count once; no items: zeros)."""
        own = check_item_ids(items, self.n_items)
        q_u = self.q[own]
        a = self.gram + self.alpha * (q_u.T @ q_u) + self.reg * np.eye(self.q.shape[1])
        return np.linalg.solve(a, (1.0 + self.alpha) * q_u.sum(axis=0))

    def scores(
        self, attributes: Mapping[str, Any] | None = None, items=(), blend: float | None = None
    ) -> np.ndarray:
        """Scores of every item: the prior with no items; fold-in (+ blended prior) otherwise."""
        prior = self.prior(attributes, items)
        if not len(items):
            return prior
        w = self.blend if blend is None else float(blend)
        s = self.q @ self.user_vector(items)
        top, scale = float(prior.max()) if prior.size else 0.0, float(np.abs(s).max())
        if w <= 0 or top <= 0:
            return s
        return (s / scale if scale > 0 else s) + w * prior / top

    def recommend(
        self, k: int = 10, attributes: Mapping[str, Any] | None = None, items=()
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(item indices, scores)``, never one of ``items``."""
        s = np.array(self.scores(attributes, items), np.float64)
        if len(items):
            s[check_item_ids(items, self.n_items)] = -np.inf
        k = min(int(k), int(np.isfinite(s).sum()))
        top = np.argpartition(-s, k - 1)[:k] if k > 0 else np.zeros(0, np.int64)
        top = top[np.argsort(-s[top], kind="stable")]
        return top, s[top]

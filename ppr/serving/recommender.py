"""The device's recommender, modelled on ``implicit``'s ``RecommenderBase``.

A device holds the released item matrix (stored compressed, :mod:`ppr.serving.codecs`), the
model's ``alpha`` and ``reg`` (lambda), and a local index. For one user (its own items ``u``):

* :meth:`Recommender.recalculate_user`: the closed form of :mod:`ppr.model.mf`,
  ``p_u = W_u (1 + alpha) sum_{j in u} q_j`` with ``W_u = (Q^T Q + alpha Q_u^T Q_u + lambda I)^-1``,
  in float64 NumPy on the *decoded* stored matrix (``Q^T Q`` computed once, in float64);
* :meth:`Recommender.recommend`: the top-k items by ``p_u . q_hat_i``, never one of ``u``;
* :meth:`Recommender.explain`: ``score(i) = q_i . p_u = sum_{j in u} (1 + alpha) q_i^T W_u q_j``,
  one share per own item; the shares add up to the score (float64, up to rounding).

One subclass per way of scoring: :class:`ExactRecommender` (the exact scan) and
:class:`AnnoyRecommender` (Annoy's inner-product search); later ways (e.g. CKKS refinement) add
theirs. Saved as a folder: the index's files, ``gram.npy`` and ``model.json`` (written last).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ppr.io import atomic_write_json, read_json
from ppr.serving.budget import DEFAULT_BUDGET_MB, build_for_budget
from ppr.serving.codecs import Encoded, save_npy
from ppr.serving.errors import ServingError
from ppr.serving.index import (
    AnnoyIndex,
    ExactIndex,
    LocalIndex,
    check_item_ids,
    score_all,
    top_k,
)

MODEL_FILE = "model.json"
GRAM_FILE = "gram.npy"


@dataclass(frozen=True)
class Explanation:
    """Why ``item`` scores ``score`` for a user: ``contributions[j]`` is the share of own item
    ``own_items[j]``, ``(1 + alpha) q_item^T W_u q_j``; ``contributions.sum() == score`` up to
    float64 rounding."""

    item: int
    score: float
    own_items: np.ndarray
    contributions: np.ndarray

    def top(self, n: int = 10) -> list[tuple[int, float]]:
        """The ``n`` own items with the largest shares, as ``(item, share)``."""
        order = np.argsort(-self.contributions, kind="stable")[:n]
        return [(int(self.own_items[j]), float(self.contributions[j])) for j in order]


def gram_matrix(items: Encoded, block_rows: int = 65536) -> np.ndarray:
    """``Q_hat^T Q_hat`` in float64 from the decoded stored matrix, ``block_rows`` at a time."""
    dim = items.shape[1]
    g = np.zeros((dim, dim), dtype=np.float64)
    for s in range(0, items.shape[0], block_rows):
        block = items.decode(slice(s, s + block_rows), dtype=np.float64)
        g += block.T @ block
    return g


class Recommender:
    """One user's recommender on the device (module docstring); subclasses fix the index kind."""

    index_kind: ClassVar[type[LocalIndex]] = LocalIndex
    _KINDS: ClassVar[dict[str, type[Recommender]]] = {}

    def __init__(
        self, index: LocalIndex, alpha: float, reg: float, gram: np.ndarray | None = None
    ) -> None:
        if type(self) is Recommender:
            raise TypeError("Recommender is abstract: use ExactRecommender or AnnoyRecommender")
        if not isinstance(index, self.index_kind):
            raise ServingError(f"{type(self).__name__} needs a {self.index_kind.__name__}")
        if not (alpha >= 0 and reg > 0):
            raise ServingError(f"need alpha >= 0 and reg > 0, got alpha={alpha}, reg={reg}")
        self.index, self.alpha, self.reg = index, float(alpha), float(reg)
        self.gram = gram_matrix(index.items) if gram is None else np.asarray(gram, np.float64)
        if self.gram.shape != (index.dim, index.dim):
            raise ServingError(f"Q^T Q has shape {self.gram.shape}, expected {index.dim} square")

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        Recommender._KINDS[cls.index_kind.kind] = cls

    @property
    def items(self) -> Encoded:
        return self.index.items

    @property
    def n_items(self) -> int:
        return self.index.n_items

    @property
    def nbytes(self) -> int:
        """Device bytes: the index (matrix included) plus ``Q^T Q``."""
        return self.index.nbytes + int(self.gram.nbytes)

    def _system(self, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``A_u = Q^T Q + alpha Q_u^T Q_u + lambda I`` and the decoded own rows ``Q_u``."""
        q_u = self.items.decode(own, dtype=np.float64)
        a = self.gram + self.alpha * (q_u.T @ q_u) + self.reg * np.eye(self.index.dim)
        return a, q_u

    def recalculate_user(self, item_ids: np.ndarray) -> np.ndarray:
        """The user vector ``p_u`` (float64, ``(dim,)``) of a user holding ``item_ids``
        (duplicates count once; no items: the zero vector)."""
        own = check_item_ids(item_ids, self.n_items)
        a, q_u = self._system(own)
        return np.linalg.solve(a, (1.0 + self.alpha) * q_u.sum(axis=0))

    def recommend(
        self, user_items: np.ndarray, k: int = 10, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(ids, scores)`` for the user holding ``user_items``; never one of
        ``user_items`` nor of ``exclude`` (e.g. items the app hides)."""
        own = check_item_ids(user_items, self.n_items)
        p = self.recalculate_user(own)
        hidden = own if exclude is None else np.concatenate([own, np.asarray(exclude).ravel()])
        return self.rank(p, k, hidden)

    def rank(self, p: np.ndarray, k: int, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(ids, scores)`` for the solved user vector ``p``, never one of ``hidden``."""
        return self.index.query(p, k, exclude=hidden)

    def explain(self, user_items: np.ndarray, item: int) -> Explanation:
        """Per-own-item shares of ``item``'s score (see :class:`Explanation`)."""
        own = check_item_ids(user_items, self.n_items)
        it = int(check_item_ids([item], self.n_items)[0])
        a, q_u = self._system(own)
        q_i = self.items.decode(np.array([it]), dtype=np.float64)[0]
        w = np.linalg.solve(a, q_i)  # W_u q_i (A_u is symmetric)
        p = np.linalg.solve(a, (1.0 + self.alpha) * q_u.sum(axis=0))
        shares = (1.0 + self.alpha) * (q_u @ w)
        return Explanation(it, float(q_i @ p), own, shares)

    def save(self, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the index, ``gram.npy`` and ``model.json`` (last) into ``folder``."""
        folder = self.index.save(folder)
        save_npy(folder / GRAM_FILE, self.gram)
        meta = {"recommender": self.index.kind, "alpha": self.alpha, "reg": self.reg}
        atomic_write_json(folder / MODEL_FILE, meta | (extra or {}))
        return folder

    @staticmethod
    def load(folder: str | Path, mmap: bool = True) -> Recommender:
        """The recommender saved in ``folder`` (its class from the saved index kind)."""
        folder = Path(folder)
        if not (folder / MODEL_FILE).is_file():
            raise ServingError(f"{folder}: no {MODEL_FILE}: not a saved recommender")
        meta = read_json(folder / MODEL_FILE)
        index = LocalIndex.load(folder, mmap=mmap)
        cls = Recommender._KINDS[index.kind]
        return cls(index, meta["alpha"], meta["reg"], np.load(folder / GRAM_FILE))


class ExactRecommender(Recommender):
    """Ranks by the exact scan of the stored matrix (:class:`ExactIndex`)."""

    index_kind = ExactIndex


class AnnoyRecommender(Recommender):
    """Ranks with Annoy's inner-product search (:class:`AnnoyIndex`), exact re-scoring."""

    index_kind = AnnoyIndex


class PriorRecommender:
    """``base`` with a public per-item prior added to every score, ``p_u . q_hat_i + bias_i``
    (e.g. a run's DP popularity prior times its blend weight), ranked by the exact full scan.
    Same interface as :class:`Recommender`; :meth:`explain` splits the model part ``p_u . q_i``
    (the prior is one more term, ``bias[item]``, outside the shares)."""

    def __init__(self, base: Recommender, bias: np.ndarray) -> None:
        self.base = base
        self.bias = np.asarray(bias, np.float32).ravel()
        if self.bias.shape != (base.n_items,) or not np.all(np.isfinite(self.bias)):
            raise ServingError(f"the prior must be {base.n_items} finite numbers")
        self.index = base.index

    @property
    def n_items(self) -> int:
        return self.base.n_items

    @property
    def items(self) -> Encoded:
        """The base recommender's stored matrix (the prior holds no item vectors)."""
        return self.base.items

    @property
    def nbytes(self) -> int:
        return self.base.nbytes + int(self.bias.nbytes)

    def recalculate_user(self, item_ids: np.ndarray) -> np.ndarray:
        return self.base.recalculate_user(item_ids)

    def recommend(
        self, user_items: np.ndarray, k: int = 10, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by ``p_u . q_hat_i + bias_i``; never one of ``user_items`` / ``exclude``."""
        own = check_item_ids(user_items, self.n_items)
        hidden = check_item_ids(
            own if exclude is None else np.concatenate([own, np.asarray(exclude).ravel()]),
            self.n_items,
        )
        return self.rank(self.recalculate_user(own), k, hidden)

    def rank(self, p: np.ndarray, k: int, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by ``p . q_hat_i + bias_i`` (exact scan), never one of ``hidden``."""
        if int(k) < 1:
            raise ServingError(f"k must be at least 1, got {k}")
        hidden = check_item_ids(hidden, self.n_items)
        scores = score_all(self.base.items, p) + self.bias
        scores[hidden] = -np.inf
        return top_k(scores, min(int(k), self.n_items - np.unique(hidden).size))

    def explain(self, user_items: np.ndarray, item: int) -> Explanation:
        return self.base.explain(user_items, item)


def load_recommender(folder: str | Path, mmap: bool = True) -> Recommender:
    """Alias of :meth:`Recommender.load`."""
    return Recommender.load(folder, mmap)


def recommender_for_budget(
    q: np.ndarray,
    alpha: float,
    reg: float,
    device_budget_mb: float = DEFAULT_BUDGET_MB,
    **build: Any,
) -> Recommender:
    """The recommender whose index :func:`ppr.serving.budget.build_for_budget` picks for ``q``
    (float32 ``(n_items, dim)``, the released model). ``Q^T Q`` (``8 dim^2`` bytes, 8 KB at
    dim 32) is held beside it and not counted in the budget."""
    index = build_for_budget(q, device_budget_mb, **build)
    return Recommender._KINDS[index.kind](index, alpha, reg)

"""Local top-k indexes over the device's (compressed) item matrix, behind one interface.

Every index answers ``query(user_vector, k, exclude) -> (ids, scores)``:

* ``ids`` are distinct item ids, never one of ``exclude`` (the user's own items), sorted by
  decreasing score (ties by increasing id), and there are exactly ``min(k, n_items - |exclude|)``;
* ``scores`` are ``user_vector . q_hat_i`` in float32 on the device's stored matrix (the same for
  every index, so an index changes *which* items are found, never their scores).

Indexes:

* :class:`ExactIndex`: a matrix-vector product on the stored matrix (float32 directly; float16 and
  int8 decoded on the fly in blocks, int8 scaled after the product), then ``argpartition``. With
  ``prune=True`` it scans items in decreasing norm order and stops as soon as the k-th best score
  reaches ``||p|| max_{rest} ||q_hat||`` (Cauchy-Schwarz): still exact, and on trained factors,
  whose top items are the high-norm ones, it scans a few per cent of the catalog.
* :class:`AnnoyIndex`: Annoy's ``dot`` metric (maximum inner product search through the norm
  augmentation ``x_i = (q_i, sqrt(M^2 - ||q_i||^2))``), over-fetching ``k + |exclude|`` plus a
  margin, filtering the user's items, re-scoring the candidates on the stored matrix, and falling
  back to the exact scan if too few remain. Annoy stores float32 vectors itself: its file counts
  in :attr:`LocalIndex.nbytes` on top of the stored matrix (kept for re-scoring, the fallback and
  the user solve).

An index is built once per model version, saved into a folder (``index.json`` written last, so a
folder with it is complete) and loaded memory-mapped (``np.load(mmap_mode='r')``; Annoy maps its
file itself).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import annoy
import numpy as np

from ppr.io import atomic_write, atomic_write_json, read_json
from ppr.serving.codecs import Encoded, encode, load_encoded, save_encoded, save_npy
from ppr.serving.errors import ServingError

MANIFEST = "index.json"
#: Rows decoded at a time by the exact scan of a float16 / int8 matrix (~2 MB of float32).
BLOCK_ROWS = 16384

_KINDS: dict[str, type[LocalIndex]] = {}


def score_all(items: Encoded, p: np.ndarray, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """``q_hat_i . p`` for every item (float32); float16 / int8 are decoded ``block_rows`` at a time
    (int8: ``(codes . p) * scale``), so no full-size float32 copy of the matrix is made."""
    p32 = np.asarray(p, dtype=np.float32)
    if items.format == "float32":
        return np.asarray(items.codes @ p32, dtype=np.float32)
    n = items.shape[0]
    out = np.empty(n, dtype=np.float32)
    for s in range(0, n, block_rows):
        e = min(s + block_rows, n)
        out[s:e] = items.codes[s:e].astype(np.float32) @ p32
    if items.scale is not None:
        out *= items.scale
    return out


def score_rows(items: Encoded, p: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``q_hat_i . p`` (float32) for the item ids ``rows``: the same values as :func:`score_all`."""
    p32 = np.asarray(p, dtype=np.float32)
    out = items.codes[rows].astype(np.float32) @ p32
    if items.scale is not None:
        out *= items.scale[rows]
    return out


def top_k(
    scores: np.ndarray, k: int, ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ``(ids, scores)`` (``ids`` default to positions; ``-inf`` scores are chosen
    only when nothing else remains), sorted by decreasing score then increasing id."""
    if scores.size > k:
        part = np.argpartition(scores, scores.size - k)[scores.size - k :]
        ids = part if ids is None else ids[part]
        scores = scores[part]
    elif ids is None:
        ids = np.arange(scores.size)
    order = np.lexsort((ids, -scores))
    return ids[order].astype(np.int64), scores[order].astype(np.float32)


class LocalIndex(ABC):
    """A top-k index over a stored item matrix (see the module docstring for the invariants)."""

    kind: ClassVar[str]

    def __init__(self, items: Encoded) -> None:
        self.items = items

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        _KINDS[cls.kind] = cls

    @property
    def n_items(self) -> int:
        return self.items.shape[0]

    @property
    def dim(self) -> int:
        return self.items.shape[1]

    @property
    def format(self) -> str:
        return self.items.format

    @property
    def nbytes(self) -> int:
        """Bytes the device holds for this index: the stored matrix plus the index's own data."""
        return self.items.nbytes + self._extra_nbytes()

    @abstractmethod
    def _extra_nbytes(self) -> int: ...

    @abstractmethod
    def _search(
        self, p: np.ndarray, k: int, exclude: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The index's build / search parameters (written to ``index.json``)."""

    def query(
        self, user_vector: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top-``k`` items for ``user_vector``, never one of ``exclude`` (module docstring)."""
        p, k_eff, excl = self._check_query(user_vector, k, exclude)
        if k_eff == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return self._search(p, k_eff, excl)

    def _check_query(
        self, user_vector: np.ndarray, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, int, np.ndarray]:
        p = np.asarray(user_vector, dtype=np.float32)
        if p.shape != (self.dim,) or not np.all(np.isfinite(p)):
            raise ServingError(f"user vector must be {self.dim} finite numbers, got {p.shape}")
        if int(k) < 1:
            raise ServingError(f"k must be at least 1, got {k}")
        excl = check_item_ids(exclude, self.n_items)
        return p, min(int(k), self.n_items - excl.size), excl

    def exact_search(
        self, p: np.ndarray, k: int, exclude: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Full scan of the stored matrix (the reference every index must agree with)."""
        scores = score_all(self.items, p)
        scores[exclude] = -np.inf
        return top_k(scores, k)

    def save(self, folder: str | Path) -> Path:
        """Write the index into ``folder`` (created); ``index.json`` last."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_encoded(self.items, folder)
        self._save_extra(folder)
        manifest = {"kind": self.kind, "format": self.format, "n_items": self.n_items}
        manifest |= {"dim": self.dim, "nbytes": self.nbytes, "params": self.params()}
        atomic_write_json(folder / MANIFEST, manifest)
        return folder

    def _save_extra(self, folder: Path) -> None:
        return None

    @staticmethod
    def load(folder: str | Path, mmap: bool = True) -> LocalIndex:
        """The index saved in ``folder``, whatever its kind; ``mmap`` maps the files read-only."""
        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            raise ServingError(f"{folder}: no {MANIFEST}: not a saved index (or a partial one)")
        manifest = read_json(folder / MANIFEST)
        cls = _KINDS.get(manifest.get("kind", ""))
        if cls is None:
            raise ServingError(f"{folder / MANIFEST}: unknown index kind {manifest.get('kind')!r}")
        items = load_encoded(folder, manifest["format"], mmap=mmap)
        if items.shape != (manifest["n_items"], manifest["dim"]):
            raise ServingError(f"{folder}: matrix shape {items.shape} disagrees with {MANIFEST}")
        return cls._load(folder, items, manifest["params"], mmap)

    @classmethod
    @abstractmethod
    def _load(
        cls, folder: Path, items: Encoded, params: dict[str, Any], mmap: bool
    ) -> LocalIndex: ...


def check_item_ids(ids: np.ndarray | None, n_items: int) -> np.ndarray:
    """``ids`` as a sorted, duplicate-free int64 array; :class:`ServingError` if one is out of
    ``[0, n_items)``."""
    arr = np.unique(np.asarray([] if ids is None else ids).astype(np.int64).ravel())
    if arr.size and (arr[0] < 0 or arr[-1] >= n_items):
        bad = arr[0] if arr[0] < 0 else arr[-1]
        raise ServingError(f"item id {bad} is outside the catalog [0, {n_items})")
    return arr


def _as_items(q: np.ndarray | Encoded, fmt: str) -> Encoded:
    return q if isinstance(q, Encoded) else encode(q, fmt)


def load_index(folder: str | Path, mmap: bool = True) -> LocalIndex:
    """Alias of :meth:`LocalIndex.load`."""
    return LocalIndex.load(folder, mmap)


class ExactIndex(LocalIndex):
    """Exact top-k by scanning the stored matrix (see the module docstring).

    ``prune=True`` stores ``order`` (item ids by decreasing decoded norm, int32: 4 bytes/item)
    and scans in that order in growing blocks, stopping when no unscanned item can beat the k-th
    best score; past ``full_scan_fraction`` of the catalog it finishes with a full scan. The answer
    is the full scan's answer either way (a margin of ``1e-5`` relative covers float32 rounding).
    """

    kind = "exact"

    def __init__(
        self, items: Encoded, order: np.ndarray | None = None, full_scan_fraction: float = 0.25
    ) -> None:
        super().__init__(items)
        self.order = order
        self.full_scan_fraction = float(full_scan_fraction)
        self.last_scanned = 0  # items the last query scored (diagnostics)

    @classmethod
    def build(
        cls, q: np.ndarray | Encoded, fmt: str = "float32", prune: bool = False
    ) -> ExactIndex:
        """Index of ``q`` (float32 matrix, encoded into ``fmt``; or an already encoded matrix)."""
        items = _as_items(q, fmt)
        order = None
        if prune:
            norms = np.empty(items.shape[0], dtype=np.float32)
            for s in range(0, norms.size, BLOCK_ROWS):
                block = items.decode(slice(s, s + BLOCK_ROWS))
                norms[s : s + BLOCK_ROWS] = np.linalg.norm(block, axis=1)
            order = np.argsort(-norms, kind="stable").astype(np.int32)
        return cls(items, order)

    def params(self) -> dict[str, Any]:
        return {"prune": self.order is not None, "full_scan_fraction": self.full_scan_fraction}

    def _extra_nbytes(self) -> int:
        return 0 if self.order is None else int(self.order.nbytes)

    def _save_extra(self, folder: Path) -> None:
        if self.order is not None:
            save_npy(folder / "order.npy", self.order)

    @classmethod
    def _load(cls, folder: Path, items: Encoded, params: dict[str, Any], mmap: bool) -> ExactIndex:
        order = None
        if params.get("prune"):
            order = np.load(folder / "order.npy", mmap_mode="r" if mmap else None)
        return cls(items, order, params.get("full_scan_fraction", 0.25))

    def _search(self, p: np.ndarray, k: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.order is None:
            self.last_scanned = self.n_items
            return self.exact_search(p, k, exclude)
        return self._pruned_search(p, k, exclude)

    def _pruned_search(
        self, p: np.ndarray, k: int, exclude: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self.order is not None
        n, p_norm = self.n_items, float(np.linalg.norm(p.astype(np.float64)))
        best_ids, best = np.zeros(0, np.int64), np.zeros(0, np.float32)
        start, size = 0, max(1024, 8 * (k + exclude.size))
        while start < n:
            if start > self.full_scan_fraction * n:
                self.last_scanned = n
                return self.exact_search(p, k, exclude)
            ids = np.asarray(self.order[start : start + size], dtype=np.int64)
            scores = score_rows(self.items, p, ids)
            scores[np.isin(ids, exclude, assume_unique=True)] = -np.inf
            best, best_ids = np.concatenate([best, scores]), np.concatenate([best_ids, ids])
            best_ids, best = top_k(best, k, best_ids)
            start, size = start + ids.size, 2 * size
            if start < n and best.size == k and np.isfinite(best[-1]):
                head = self.items.decode(self.order[start : start + 1], dtype=np.float64)
                bound = p_norm * float(np.linalg.norm(head))
                if best[-1] >= bound * (1.0 + 1e-5) + 1e-30:
                    break
        self.last_scanned = min(start, n)
        return best_ids, best


class AnnoyIndex(LocalIndex):
    """Approximate top-k with Annoy's ``dot`` metric (see the module docstring).

    ``n_trees`` trades build time and bytes for recall; ``search_k`` (nodes inspected per query;
    Annoy's default ``n_trees * n`` when -1) trades latency for recall. A query asks Annoy for
    ``candidates = k + |exclude| + overfetch`` items, drops the user's own, re-scores the rest on
    the stored matrix and falls back to the exact scan when fewer than ``k`` remain
    (``fallbacks`` counts those).
    """

    kind = "annoy"
    FILE = "annoy.ann"

    def __init__(
        self,
        items: Encoded,
        ann: annoy.AnnoyIndex,
        path: Path,
        n_trees: int,
        search_k: int,
        overfetch: int = 20,
        tmp: tempfile.TemporaryDirectory | None = None,
    ) -> None:
        super().__init__(items)
        self.ann, self.path, self.n_trees = ann, path, int(n_trees)
        self.search_k, self.overfetch = int(search_k), int(overfetch)
        self._tmp = tmp  # keeps the built file alive until save() copies it
        self.fallbacks = 0

    @classmethod
    def build(
        cls,
        q: np.ndarray | Encoded,
        fmt: str = "float32",
        n_trees: int = 10,
        search_k: int = -1,
        seed: int = 0,
        n_jobs: int = -1,
    ) -> AnnoyIndex:
        """Annoy index of the *stored* (decoded) matrix, so Annoy and the re-scoring see the same
        vectors. Deterministic for ``seed`` with ``n_jobs=1``."""
        items = _as_items(q, fmt)
        ann = annoy.AnnoyIndex(items.shape[1], "dot")
        ann.set_seed(int(seed))
        for s in range(0, items.shape[0], BLOCK_ROWS):
            block = items.decode(slice(s, s + BLOCK_ROWS))
            for j, row in enumerate(block):
                ann.add_item(s + j, row)
        ann.build(int(n_trees), n_jobs=int(n_jobs))
        tmp = tempfile.TemporaryDirectory(prefix="ppr-annoy-")
        path = Path(tmp.name) / cls.FILE
        ann.save(str(path))  # Annoy then unloads and memory-maps the saved file
        return cls(items, ann, path, n_trees, search_k, tmp=tmp)

    def params(self) -> dict[str, Any]:
        return {"n_trees": self.n_trees, "search_k": self.search_k, "overfetch": self.overfetch}

    def _extra_nbytes(self) -> int:
        return int(os.path.getsize(self.path))

    def _save_extra(self, folder: Path) -> None:
        dest = folder / self.FILE
        if dest.resolve() != self.path.resolve():
            with open(self.path, "rb") as src:
                atomic_write(dest, lambda f: shutil.copyfileobj(src, f, 1 << 20))

    @classmethod
    def _load(cls, folder: Path, items: Encoded, params: dict[str, Any], mmap: bool) -> AnnoyIndex:
        path = folder / cls.FILE
        ann = annoy.AnnoyIndex(items.shape[1], "dot")
        if not ann.load(str(path), prefault=not mmap):
            raise ServingError(f"{path}: Annoy could not load the index")
        if ann.get_n_items() != items.shape[0]:
            raise ServingError(f"{path}: {ann.get_n_items()} items, matrix has {items.shape[0]}")
        return cls(items, ann, path, params["n_trees"], params["search_k"], params["overfetch"])

    def _search(self, p: np.ndarray, k: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_cand = k + exclude.size + self.overfetch
        found = self.ann.get_nns_by_vector(p, n_cand, search_k=self.search_k)
        ids = np.asarray(found, dtype=np.int64)
        ids = ids[~np.isin(ids, exclude, assume_unique=True)]
        if ids.size < k:
            self.fallbacks += 1
            return self.exact_search(p, k, exclude)
        return top_k(score_rows(self.items, p, ids), k, ids)

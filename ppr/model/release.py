"""The released model: what a finished run hands to serving, explanations and transparency.

File ``model.msgpack`` of a run directory, written with flax's msgpack serialization (typed
arrays, no pickle: loading a model file never executes code). Format ``ppr.model/1``::

    {"format": "ppr.model/1",
     "version": "<run name>@<model version>",     # changes whenever the item matrix changes
     "item_factors": float32 (n_items, dim),       # the DP-released Q (or non-private, see privacy)
     "item_ids": int64 (n_items,),                 # original item ids, for display
     "titles": [str] * n_items | [],               # when the data set has titles
     "hyper": {"alpha", "reg", "dim"},             # what a device needs to solve p_u
     "privacy": {"epsilon", "delta", "accountant", "noise_secret"},
     "prior": float32 (n_items,)                   # optional: the run's DP popularity prior
     "prior_blend": float}                         # its weight in scores (0: unused)

Invariants: ``item_factors`` is the matrix the run released (the last server state); a device
solves its user vector from it and its own items (:func:`ppr.model.mf.solve_user_factors`); the
``privacy`` block repeats the run ledger's guarantee for the model (``epsilon = inf``: non-private).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization, struct

from ppr.errors import PprError
from ppr.io import atomic_write_bytes

MODEL_FORMAT = "ppr.model/1"
MODEL_FILE = "model.msgpack"


@struct.dataclass
class ReleasedModel:
    """The item matrix with what is needed to use it (static fields are not arrays)."""

    item_factors: np.ndarray
    item_ids: np.ndarray
    alpha: float = struct.field(pytree_node=False, default=1.0)
    reg: float = struct.field(pytree_node=False, default=1.0)
    version: str = struct.field(pytree_node=False, default="")
    titles: tuple[str, ...] = struct.field(pytree_node=False, default=())
    privacy: dict[str, Any] = struct.field(pytree_node=False, default_factory=dict)
    prior: np.ndarray | None = None  # the run's DP popularity prior (released, in the ledger)
    prior_blend: float = struct.field(pytree_node=False, default=0.0)

    def bias(self) -> np.ndarray | None:
        """The per-item score offset ``prior_blend * prior`` (``None`` when unused)."""
        if self.prior is None or self.prior_blend == 0:
            return None
        return float(self.prior_blend) * np.asarray(self.prior, np.float32)

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.item_factors.shape[1])

    def to_bytes(self) -> bytes:
        eps = self.privacy.get("epsilon", math.inf)
        privacy = {**self.privacy, "epsilon": "inf" if eps == math.inf else float(eps)}
        extra: dict[str, Any] = {}
        if self.prior is not None:
            extra = {"prior": np.asarray(self.prior, np.float32), "prior_blend": self.prior_blend}
        return serialization.msgpack_serialize(
            extra
            | {
                "format": MODEL_FORMAT,
                "version": self.version,
                "item_factors": np.asarray(self.item_factors, np.float32),
                "item_ids": np.asarray(self.item_ids, np.int64),
                "titles": list(self.titles),
                "hyper": {"alpha": float(self.alpha), "reg": float(self.reg), "dim": self.dim},
                "privacy": privacy,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "model") -> ReleasedModel:
        try:
            raw = serialization.msgpack_restore(data)
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise PprError(f"{where}: not a ppr model file ({type(exc).__name__}).") from None
        if not isinstance(raw, dict) or raw.get("format") != MODEL_FORMAT:
            raise PprError(f"{where}: not a ppr model file (expected format {MODEL_FORMAT!r}).")
        q = np.asarray(raw["item_factors"], np.float32)
        if q.ndim != 2 or len(raw["item_ids"]) != q.shape[0]:
            raise PprError(f"{where}: item_factors and item_ids do not match.")
        prior = raw.get("prior")
        if prior is not None and np.asarray(prior).shape != (q.shape[0],):
            raise PprError(f"{where}: prior and item_factors do not match.")
        privacy = dict(raw.get("privacy", {}))
        if privacy.get("epsilon") == "inf":
            privacy["epsilon"] = math.inf
        return cls(
            item_factors=q,
            item_ids=np.asarray(raw["item_ids"], np.int64),
            alpha=float(raw["hyper"]["alpha"]),
            reg=float(raw["hyper"]["reg"]),
            version=str(raw["version"]),
            titles=tuple(str(t) for t in raw.get("titles", [])),
            privacy=privacy,
            prior=None if prior is None else np.asarray(prior, np.float32),
            prior_blend=float(raw.get("prior_blend", 0.0)),
        )

    def save(self, run_dir: str | Path) -> Path:
        """Write ``<run_dir>/model.msgpack`` atomically."""
        return atomic_write_bytes(Path(run_dir) / MODEL_FILE, self.to_bytes())


def load_model(path: str | Path) -> ReleasedModel:
    """The model of a run directory (or a ``model.msgpack`` file): one-line errors."""
    p = Path(path)
    f = p / MODEL_FILE if p.is_dir() else p
    if not f.is_file():
        raise PprError(f"{p}: no released model ({MODEL_FILE}); was the run finished?")
    return ReleasedModel.from_bytes(f.read_bytes(), str(f))

"""The public constants of one secure-aggregation deployment, shared by every role."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ppr.crypto.errors import UpdateRejected
from ppr.crypto.params import CkksParams, default_params

_DEFAULT_PARAMS = default_params()

#: Relative slack on ``value_bound`` for float32 rounding after clipping.
VALUE_BOUND_RTOL = 1e-5


@dataclass(frozen=True)
class AggregationSpec:
    """Update length, per-coordinate bound and CKKS parameters.

    Invariants: ``n_values >= 1``; ``value_bound`` finite and positive. Devices encode
    ``x / value_bound`` (so every encoded coordinate is in [-1, 1]); the key holder multiplies
    back.
    """

    n_values: int
    value_bound: float = 1.0
    params: CkksParams = _DEFAULT_PARAMS

    def __post_init__(self) -> None:
        if int(self.n_values) < 1:
            raise ValueError(f"`update_size` must be positive. Found {self.n_values}.")
        if not (math.isfinite(self.value_bound) and self.value_bound > 0):
            raise ValueError(
                f"`value_bound` must be positive and finite. Found {self.value_bound}."
            )
        object.__setattr__(self, "n_values", int(self.n_values))
        object.__setattr__(self, "value_bound", float(self.value_bound))

    @property
    def n_chunks(self) -> int:
        """Ciphertexts per update."""
        return self.params.n_chunks(self.n_values)


def check_update(update: np.ndarray, spec: AggregationSpec) -> np.ndarray:
    """What an honest device checks before sending: shape, finiteness, ``|x| <= value_bound``.

    Returns the update as a flat float64 array; raises :class:`UpdateRejected` with the reason.
    """
    x = np.asarray(update)
    if x.ndim != 1 or x.shape[0] != spec.n_values:
        raise UpdateRejected(f"update has shape {x.shape}, expected ({spec.n_values},)")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise UpdateRejected(f"update has dtype {x.dtype}, expected a real number type")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise UpdateRejected("update has non-finite values")
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > spec.value_bound * (1.0 + VALUE_BOUND_RTOL):
        raise UpdateRejected(f"update exceeds the value bound {spec.value_bound:g} (not clipped)")
    return x

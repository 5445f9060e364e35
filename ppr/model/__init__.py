"""Model: implicit matrix factorization (weighted loss), its closed-form user solve, the device
update of the item matrix, and the baselines (popularity, centralized ALS with the same code)."""

from ppr.model.mf import (
    BatchUpdate,
    DeviceBatch,
    MFHyper,
    batch_update,
    dense_updates,
    init_item_factors,
    pack_buckets,
    solve_user_factors,
)

__all__ = [
    "BatchUpdate",
    "DeviceBatch",
    "MFHyper",
    "batch_update",
    "dense_updates",
    "init_item_factors",
    "pack_buckets",
    "solve_user_factors",
]

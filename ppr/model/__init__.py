"""Model: implicit matrix factorization (weighted loss), its closed-form user solve, the device
update of the item matrix, and the baselines (popularity, centralized ALS with the same code)."""

from ppr.model.mf import (
    CohortBatch,
    CohortUpdate,
    MFHyper,
    cohort_update,
    dense_updates,
    init_item_factors,
    pack_buckets,
    solve_user_factors,
)

__all__ = [
    "CohortBatch",
    "CohortUpdate",
    "MFHyper",
    "cohort_update",
    "dense_updates",
    "init_item_factors",
    "pack_buckets",
    "solve_user_factors",
]

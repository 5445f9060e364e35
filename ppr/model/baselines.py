"""Non-federated reference recommenders, built from the same model code.

* :func:`popularity_scores`: items ranked by how many users hold them in train (the same list for
  every user). The DP variant is :func:`ppr.privacy.private_item_counts`.
* :func:`centralized_als`: implicit ALS on the pooled training data (a server that sees every
  event). The user step is :func:`ppr.model.mf.solve_user_factors`; the item step is the same
  closed form with the roles swapped (item ``i`` "holds" the users that hold ``i``), so both
  sides minimise exactly the federated loss ``sum_u L_u(p_u, Q) + item_reg ||Q||^2``.
"""

from __future__ import annotations

import jax
import numpy as np

from ppr.data.split import UserItems
from ppr.model.mf import MFHyper, init_item_factors, solve_user_factors


def popularity_scores(train: UserItems, users: np.ndarray | None = None) -> np.ndarray:
    """Number of users (all, or only ``users``: the training devices) holding each item, as
    float32 scores (length ``n_items``)."""
    holders, items = train.to_pairs()
    if users is not None:
        keep = np.zeros(train.n_users, dtype=bool)
        keep[np.asarray(users)] = True
        items = items[keep[holders]]
    return np.bincount(items, minlength=train.n_items).astype(np.float32)


def transpose(items: UserItems) -> UserItems:
    """Item -> users lists of a user -> items CSR."""
    users, its = items.to_pairs()
    return UserItems.from_pairs(its.astype(np.int64), users, items.n_items, items.n_users)


def centralized_als(
    key: jax.Array,
    train: UserItems,
    users: np.ndarray,
    dim: int,
    hyper: MFHyper,
    iterations: int,
    init_scale: float,
    item_reg: float | None = None,
) -> np.ndarray:
    """Item matrix ``Q`` after ``iterations`` ALS sweeps on the rows ``users`` of ``train``.

    ``item_reg`` defaults to ``hyper.reg``. Deterministic for a key.
    """
    users = np.asarray(users, dtype=np.int64)
    mask = np.zeros(train.n_users, dtype=bool)
    mask[users] = True
    u, i = train.to_pairs()
    keep = mask[u]
    sub = UserItems.from_pairs(u[keep].astype(np.int64), i[keep], train.n_users, train.n_items)
    item_side = transpose(sub)
    all_items = np.arange(train.n_items)
    item_hyper = hyper._replace(reg=hyper.reg if item_reg is None else item_reg)
    q = init_item_factors(key, train.n_items, dim, init_scale)
    p_full = np.zeros((train.n_users, dim), np.float32)
    for _ in range(int(iterations)):
        p_full[users] = solve_user_factors(q, sub, users, hyper)
        q = solve_user_factors(p_full, item_side, all_items, item_hyper)
    return np.asarray(q)

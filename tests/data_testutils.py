"""Test data shared across test folders (imported by name: ``tests/`` holds the root conftest,
so pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

import numpy as np

from ppr.data.split import UserItems


def random_user_items(rng: np.random.Generator, lens: np.ndarray, n_items: int) -> UserItems:
    """User ``u`` holds ``lens[u]`` distinct items drawn uniformly from ``n_items`` (drawn from
    ``rng`` in user order, so a seed gives the same table)."""
    users = np.repeat(np.arange(len(lens)), lens)
    its = np.concatenate([rng.choice(n_items, n, replace=False) for n in lens])
    return UserItems.from_pairs(users, its, len(lens), n_items)


#: The tiny synthetic run every sweep test starts from (``--set`` overrides); each test adds its
#: own ``sweep.*`` keys.
TINY_SWEEP_BASE = [
    "data.synthetic.n_users=60",
    "data.synthetic.n_items=40",
    "data.synthetic.n_interactions=1500",
    "model.dim=4",
    "federated.rounds=2",
    "privacy.clip_norm=1.0",
    "evaluation.k=10",
]

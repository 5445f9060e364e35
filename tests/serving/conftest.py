"""Shared fixtures of the serving tests: a small structured catalog and its users; a small
trained run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ppr.config import load_config
from ppr.experiments import simulate
from ppr.serving.catalog import Catalog, clustered_catalog, sample_user_items


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return clustered_catalog(np.random.default_rng(7), 3000, dim=16, n_clusters=64)


@pytest.fixture(scope="session")
def users(catalog: Catalog) -> list[np.ndarray]:
    return sample_user_items(np.random.default_rng(8), catalog, 60, items_per_user=(5, 40))


#: A small non-private plaintext run (real federated training, ~10 s): serving tests open it.
SMALL_RUN = {
    "name": "serve",
    "aggregation.mode": "plaintext",
    "privacy.epsilon": "inf",
    "privacy.popularity_blend": 0.0,
    "federated.rounds": 15,
    "federated.sampling_rate": 1.0,
    "baselines.centralized": False,
    "data.synthetic.n_users": 300,
    "data.synthetic.n_items": 120,
    "data.synthetic.n_interactions": 9000,
    "model.dim": 16,
}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """The directory of a finished ``simulate`` run (config, ledger, model, summary)."""
    cfg = load_config(None, SMALL_RUN | {"output.runs_dir": str(tmp_path_factory.mktemp("runs"))})
    res = simulate(cfg, write=True)
    assert res.run_dir is not None
    return res.run_dir

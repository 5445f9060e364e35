"""Fixtures shared by the serving commands' CLI tests (recommend, evaluate, explain)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ppr.config import load_config
from ppr.experiments import simulate

#: A tiny finished run (real federated training, non-private plaintext).
TINY_SERVING_RUN = {
    "name": "cli",
    "aggregation.mode": "plaintext",
    "privacy.epsilon": "inf",
    "privacy.popularity_blend": 0.0,
    "federated.rounds": 5,
    "baselines.centralized": False,
    "data.synthetic.n_users": 120,
    "data.synthetic.n_items": 60,
    "data.synthetic.n_interactions": 3000,
    "model.dim": 8,
}


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """The directory of the tiny finished run (read-only for the tests that use it)."""
    runs = tmp_path_factory.mktemp("runs")
    cfg = load_config(None, TINY_SERVING_RUN | {"output.runs_dir": str(runs)})
    return simulate(cfg, write=True).run_dir

"""Regression floors of DP federated MF on MovieLens 100K (real data: marked slow).

Runs a reduced set of points of ``configs/sweep_ml100k.toml`` (seed 0, plaintext, no popularity
prior) through :func:`ppr.pipeline.run_simulation` and fails when test recall@20 drops below the
floor recorded in ``tests/regression/ml100k_dp.toml``, or when the ledger's epsilon (from the
accountant) exceeds the target. Skipped when the MovieLens files are absent.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from ppr.config import load_config
from ppr.pipeline import prepare_data, run_simulation

ROOT = Path(__file__).resolve().parents[2]
FLOORS = tomllib.loads((ROOT / "tests/regression/ml100k_dp.toml").read_text(encoding="utf-8"))
POINTS = ("inf", "8", "1")  # the reduced set (~1-3 s each); the sweep covers all epsilons


@pytest.fixture(scope="module")
def setup():
    cfg = load_config(
        ROOT / FLOORS["config"],
        {"seed": FLOORS["seed"], "privacy.popularity_blend": 0.0, "evaluation.split": "test",
         "baselines.popularity": False, "baselines.centralized": False},
    )
    if not cfg.data.resolved_path().exists():
        pytest.skip(f"MovieLens 100K not found at {cfg.data.resolved_path()} (set PPR_DATA_DIR)")
    return cfg, prepare_data(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("eps", POINTS)
def test_dp_recall_floor(setup, eps: str) -> None:
    cfg, split = setup
    cfg = cfg.replace(**{"privacy.epsilon": float(eps)})
    res = run_simulation(cfg, write=False, split=split)
    recall = res.summary["metrics"][FLOORS["metric"]]
    floor = FLOORS["floors"][eps]["floor"]
    assert recall >= floor, f"eps={eps}: recall@20 {recall:.4f} < floor {floor}"
    if math.isfinite(cfg.privacy.epsilon):
        spent = res.ledger.epsilon(res.summary["privacy"]["delta"], cfg.privacy.accountant)
        assert spent <= cfg.privacy.epsilon * (1 + 1e-9)
        assert res.summary["privacy"]["noise_multiplier"] > 0

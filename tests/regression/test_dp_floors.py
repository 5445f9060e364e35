"""CI regression: a reduced ``ppr sweep`` of DP federated MF on MovieLens 100K (real data, slow).

Runs ``configs/sweep_ml100k.toml`` reduced to seed 0, ε ∈ {inf, 8, 1}, no popularity prior,
plaintext, through :func:`ppr.experiments.run_sweep` (the library behind ``ppr sweep``), and fails
when a point's test recall@20 drops below its floor in ``tests/regression/ml100k_dp.toml`` or when
the ledger's ε (from the accountant) exceeds the target. A missing data set is a failure, not a
skip (CI checks that the files are present).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from ppr.config import load_config
from ppr.experiments import run_sweep

ROOT = Path(__file__).resolve().parents[2]
FLOORS = tomllib.loads((ROOT / "tests/regression/ml100k_dp.toml").read_text(encoding="utf-8"))
POINTS = ("inf", "8", "1")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(ml100k_dir, tmp_path_factory):
    cfg = load_config(
        ROOT / FLOORS["config"],
        {
            "privacy.popularity_blend": 0.0,
            "evaluation.split": "test",
            "aggregation.mode": "plaintext",
            "sweep.epsilons": [float(e) for e in POINTS],
            "sweep.seeds": [FLOORS["seed"]],
            "sweep.grid": {},
            "privacy.noise_seed": FLOORS["noise_seed"],  # the labelled reproducible mode
        },
    )
    return run_sweep(cfg, tmp_path_factory.mktemp("sweep"), workers=1, plot=False)


def _eps(point: dict) -> str:
    e = point["epsilon"]
    return "inf" if e == "inf" or (isinstance(e, float) and math.isinf(e)) else f"{float(e):g}"


@pytest.mark.parametrize("eps", POINTS)
def test_dp_recall_floor(sweep, eps: str) -> None:
    point = next(p for p in sweep.points if _eps(p) == eps)
    recall = point[FLOORS["metric"]]
    floor = FLOORS["floors"][eps]["floor"]
    assert recall >= floor, f"eps={eps}: {FLOORS['metric']} {recall:.4f} < floor {floor}"
    if eps != "inf":
        assert point["noise_multiplier"] > 0
        assert point["epsilon_spent"] <= float(eps) * (1 + 1e-9)

"""Real MovieLens-100K runs (slow). Data from ``$PPR_DATA_DIR`` (default ``../shared/datasets``,
relative to the repo root); a missing data set is a failure, not a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ppr.config import load_config
from ppr.pipeline import run_simulation

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir() -> Path:
    d = Path(os.environ.get("PPR_DATA_DIR", "../shared/datasets"))
    d = d if d.is_absolute() else ROOT / d
    if not (d / "ml-100k").is_dir():
        pytest.fail(f"MovieLens-100K not found at {d / 'ml-100k'}: set PPR_DATA_DIR")
    os.environ["PPR_DATA_DIR"] = str(d)  # configs/ml100k.toml reads $PPR_DATA_DIR/ml-100k
    return d


def test_ml100k_federated_recall(data_dir):
    cfg = load_config(ROOT / "configs" / "ml100k.toml", {"baselines.centralized": False})
    res = run_simulation(cfg, write=False)
    recall = res.summary["metrics"]["recall@20"]
    assert res.summary["data"]["users"] == 943 and res.summary["evaluated_on"] == "test"
    assert recall >= 0.34, recall


def test_ml100k_ckks_equals_plaintext(data_dir):
    over = {
        "federated.rounds": 2,
        "federated.sampling_rate": 0.3,
        "privacy.clip_norm": 1.0,
        "aggregation.workers": 2,
        "baselines.centralized": False,
        "baselines.popularity": False,
    }
    path = ROOT / "configs" / "ml100k.toml"
    plain = run_simulation(load_config(path, over), write=False)
    ckks = run_simulation(load_config(path, {**over, "aggregation.mode": "ckks"}), write=False)
    # both runs clip at the same C (plaintext applies privacy.clip_norm too)
    assert [lg.clipped_fraction for lg in plain.rounds] == [
        lg.clipped_fraction for lg in ckks.rounds
    ]
    assert [lg.accepted for lg in plain.rounds] == [lg.accepted for lg in ckks.rounds]
    r_p, r_c = plain.summary["metrics"]["recall@20"], ckks.summary["metrics"]["recall@20"]
    assert abs(r_p - r_c) <= 0.002, (r_p, r_c)

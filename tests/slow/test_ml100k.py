"""Real MovieLens-100K runs (slow). Data from ``$PPR_DATA_DIR`` (default ``../shared/datasets``,
relative to the repo root); a missing data set is a failure, not a skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from ppr.config import load_config
from ppr.experiments.simulate import simulate

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_ml100k_federated_recall(ml100k_dir):
    cfg = load_config(ROOT / "configs" / "ml100k.toml", {"baselines.centralized": False})
    res = simulate(cfg, write=False)
    recall = res.summary.to_dict()["metrics"]["recall@20"]
    assert res.summary.data.users == 943 and res.summary.evaluated_on == "test"
    assert recall >= 0.34, recall


def test_ml100k_ckks_equals_plaintext(ml100k_dir):
    over = {
        "federated.rounds": 2,
        "federated.sampling_rate": 0.3,
        "privacy.clip_norm": 1.0,
        "aggregation.workers": 2,
        "baselines.centralized": False,
        "baselines.popularity": False,
    }
    path = ROOT / "configs" / "ml100k.toml"
    plain = simulate(load_config(path, over), write=False)
    ckks = simulate(load_config(path, {**over, "aggregation.mode": "ckks"}), write=False)
    # both runs clip at the same C (plaintext applies privacy.clip_norm too)
    assert [lg.clipped_fraction for lg in plain.rounds] == [
        lg.clipped_fraction for lg in ckks.rounds
    ]
    assert [lg.accepted for lg in plain.rounds] == [lg.accepted for lg in ckks.rounds]
    r_p, r_c = plain.summary.recall(20), ckks.summary.recall(20)
    assert abs(r_p - r_c) <= 0.002, (r_p, r_c)

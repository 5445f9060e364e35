"""CI regression: local serving recall on MovieLens 100K (real data).

Trains ``configs/ml100k.toml`` (non-private, plaintext) for 15 rounds, then serves every evaluated
user through the recommender interface: full-server scoring (float32, exact scan) and the
device's local serving within the budget, in its default (float32 at 64 MiB) and in int8 (the
smallest format). Fails when local recall@20 drops below its floor or moves more than 0.005 from
full-server scoring. Measured (2026-12-02): recall@20 0.3620 exact, float32 0.3620, float16 0.3620,
int8 0.3616. A missing data set is a failure, not a skip.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ppr.config import load_config
from ppr.experiments import simulate
from ppr.experiments.serving import evaluate_serving, open_run

ROOT = Path(__file__).resolve().parents[2]
FLOOR = 0.34  # recall@20 of local serving (measured 0.362)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(ml100k_dir, tmp_path_factory):
    cfg = load_config(
        ROOT / "configs/ml100k.toml",
        {
            "federated.rounds": 15,
            "baselines.centralized": False,
            "output.runs_dir": str(tmp_path_factory.mktemp("runs")),
        },
    )
    return open_run(simulate(cfg, write=True).run_dir)


@pytest.mark.parametrize("fmt", ["auto", "int8"])
def test_local_serving_recall_floor(run, fmt: str) -> None:
    exact = evaluate_serving(run, "exact")
    local_run = replace(run, cfg=run.cfg.replace(**{"serving.format": fmt}))
    local = evaluate_serving(local_run, "local")
    assert local["format"] == ("float32" if fmt == "auto" else fmt)
    assert local["evaluated_users"] == exact["evaluated_users"] > 900
    assert local["device_bytes"] <= run.cfg.serving.device_budget_mb * 2**20
    recall = local["recall@20"]
    assert recall >= FLOOR, f"local ({fmt}) recall@20 {recall:.4f} < floor {FLOOR}"
    assert abs(recall - exact["recall@20"]) <= 0.005

"""Device tiers end to end: round metrics, the summary's tier diagnostics, the ledger, config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ppr_cli.main import app
from typer.testing import CliRunner

from ppr.config import load_config
from ppr.experiments.factories import noise_floor
from ppr.experiments.simulate import simulate
from ppr.experiments.summary import RELEASED
from ppr.privacy import min_cohort_size, plan_privacy

BASE = {
    "data.synthetic.n_users": 120,
    "data.synthetic.n_items": 100,
    "data.synthetic.n_interactions": 4000,
    "federated.rounds": 3,
    "model.dim": 8,
    "model.local_steps": 2,
    "model.local_lr": 0.1,
    "baselines.centralized": False,
}
# Catalog 100 x dim 8: solve 14,571 FLOP, step 3,200 FLOP, float32 upload 3,200 B. "slow" takes
# 2.10 s at one step and 2.42 s at two: it meets the 2.2 s deadline only by adapting; "late"
# needs 14.9 s: it always straggles.
TIERS = {
    "tiers.enabled": True,
    "tiers.names": ["fast", "slow", "late"],
    "tiers.shares": [0.5, 0.3, 0.2],
    "tiers.flops": [1e9, 1e4, 1e3],
    "tiers.uplink": [1e8, 1e4, 1e4],
    "tiers.dropout": [0.0, 0.1, 0.0],
    "tiers.deadline_s": 2.2,
}


def cfg_of(**kw):
    return load_config(None, {**BASE, **TIERS, **kw})


def test_tiers_in_round_metrics_and_summary(tmp_path):
    cfg = cfg_of(**{"output.runs_dir": str(tmp_path), "name": "tiers"})
    res = simulate(cfg)
    for log in res.rounds:
        assert log.released  # stragglers were dropped, every round completed
        assert log.tiers["late"]["uploaded"] == 0 and log.tiers["late"]["local_steps"] == 0
        assert log.tiers["slow"]["local_steps"] == 1 and log.tiers["fast"]["local_steps"] == 2
        assert log.stragglers == log.tiers["late"]["participants"] > 0
        assert log.sim_seconds == 2.2  # someone missed it: the round closed at the deadline
        away = sum(r["away"] for r in log.tiers.values())
        assert log.dropped == log.stragglers + away
        assert log.accepted == sum(r["uploaded"] for r in log.tiers.values())
    lines = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [ln["stragglers"] for ln in lines] == [lg.stragglers for lg in res.rounds]
    assert lines[0]["tiers"] == res.rounds[0].tiers and "sim_seconds" in lines[0]

    t = res.summary.tiers
    assert t["stragglers"] == sum(lg.stragglers for lg in res.rounds)
    assert t["per_tier"]["late"]["uploaded"] == 0
    assert t["sim_seconds_total"] == pytest.approx(2.2 * cfg.federated.rounds)
    recall = res.summary.metrics["recall@20"]
    for key in ("recall_by_tier", "recall_by_activity"):
        groups = t[key].values()
        assert len(groups) == (3 if key == "recall_by_tier" else 4)
        n = sum(g["users"] for g in groups)
        assert n == res.summary.metrics["evaluated_users"]
        mean = sum(g["users"] * g["recall@20"] for g in groups) / n
        assert mean == pytest.approx(recall, abs=1e-9)  # the breakdown adds up to the run's
    # diagnostics never cross the release boundary
    assert "tiers" not in res.summary.to_dict(RELEASED)
    written = json.loads((res.run_dir / "summary.json").read_text())
    assert written["tiers"]["per_tier"] == t["per_tier"]


def test_accounting_is_unchanged_by_tiers():
    """Every eligible device is charged per released round, stragglers and the away included."""
    dp = {"privacy.epsilon": 8.0, "privacy.noise_seed": 0, "federated.sampling_rate": 0.5}
    on = simulate(cfg_of(**dp), write=False)
    off = simulate(cfg_of(**dp, **{"tiers.enabled": False}), write=False)
    assert sum(lg.stragglers for lg in on.rounds) > 0
    assert [lg.sampled for lg in on.rounds] == [lg.sampled for lg in off.rounds]
    assert on.summary.privacy.epsilon_spent == off.summary.privacy.epsilon_spent
    assert on.summary.privacy.rounds_released == off.summary.privacy.rounds_released
    assert on.ledger.names() == off.ledger.names()
    assert [lg.noise_multiplier for lg in on.rounds] == [lg.noise_multiplier for lg in off.rounds]
    assert not np.array_equal(on.q, off.q)  # the stragglers' updates were left out


@pytest.mark.parametrize(
    ("sets", "expect"),
    [
        (["tiers.shares=[0.5, 0.4, 0.2]"], "`tiers.shares` must sum to 1. Found 1.1."),
        (["tiers.uplink=[1.0, 2.0]"], "`tiers.uplink` must have one entry per tier (3"),
        (["tiers.flops=[1.0, 0.0, 1.0]"], "`tiers.flops[1]` must be > 0.0. Found 0.0."),
        (["tiers.deadline_s=0"], "`tiers.deadline_s` must be > 0.0"),
    ],
)
def test_bad_tier_config_is_one_line_exit_2(tmp_path, sets, expect):
    runs = tmp_path / "runs"
    args = ["simulate", "--quiet", "--set", f"output.runs_dir={json.dumps(str(runs))}"]
    for key, value in TIERS.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert expect in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not runs.exists() or not any(runs.iterdir())


def test_distributed_noise_floor_counts_the_away_devices():
    """n_min of distributed noise uses the tiers' availability (a public quantity)."""
    dp = {"privacy.epsilon": 8.0, "privacy.noise": "distributed", "federated.sampling_rate": 0.5}
    on = cfg_of(**dp, **{"tiers.dropout": [0.5, 0.5, 0.5]})
    off = cfg_of(**dp, **{"tiers.enabled": False})
    plan = plan_privacy(on.privacy, 1000, 0.5, 3, False)
    assert noise_floor(on, plan, 1000) == min_cohort_size(1000, 0.5 * 0.5)
    assert noise_floor(off, plan, 1000) == min_cohort_size(1000, 0.5)


def test_example_config_loads():
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "tiers_ml100k.toml")
    cfg.check()
    assert cfg.tiers.enabled and len(cfg.tiers.names) == len(cfg.tiers.shares)

"""End-to-end runs of ppr.experiments.simulate.simulate on small synthetic data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from dp_accounting import dp_event

from ppr.config import load_config
from ppr.errors import ConfigError, DataError
from ppr.experiments.simulate import simulate
from ppr.privacy import event_from_json, make_accountant

BASE = {
    "data.synthetic.n_users": 120,
    "data.synthetic.n_items": 100,
    "data.synthetic.n_interactions": 4000,
    "federated.rounds": 3,
    "model.dim": 8,
    "baselines.centralized_iterations": 3,
}


def cfg_of(**kw):
    return load_config(None, {**BASE, **kw})


def test_deterministic_for_a_seed():
    cfg = cfg_of(**{"federated.sampling_rate": 0.5, "baselines.centralized": False})
    a = simulate(cfg, write=False)
    b = simulate(cfg, write=False)
    c = simulate(cfg.replace(seed=1), write=False)
    assert a.summary.to_dict()["metrics"] == b.summary.to_dict()["metrics"]
    np.testing.assert_array_equal(a.q, b.q)
    assert [lg.sampled for lg in a.rounds] == [lg.sampled for lg in b.rounds]
    assert not np.array_equal(a.q, c.q)
    assert a.summary.to_dict()["metrics"] != c.summary.to_dict()["metrics"]


def test_run_dir_files(tmp_path):
    cfg = cfg_of(**{"output.runs_dir": str(tmp_path), "name": "t"})
    res = simulate(cfg)
    rd = res.run_dir
    assert rd is not None and rd.parent == tmp_path and rd.name.startswith("t-")
    assert sorted(p.name for p in tmp_path.iterdir()) == [rd.name]  # no .partial left
    assert sorted(p.name for p in rd.iterdir()) == [
        "config.toml",
        "device_log.json",
        "devices.json",
        "ledger.json",
        "metrics.jsonl",
        "model.msgpack",
        "summary.json",
    ]
    assert load_config(rd / "config.toml") == cfg
    lines = (rd / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == cfg.federated.rounds
    assert [json.loads(x)["round"] for x in lines] == [1, 2, 3]
    summary = json.loads((rd / "summary.json").read_text())
    assert summary == res.summary.to_dict() and summary["run_dir"] == str(rd)
    assert set(summary["baselines"]) == {"popularity", "centralized"}
    ledger = json.loads((rd / "ledger.json").read_text())
    # a non-private run released a model without noise: its ledger says so, and epsilon = inf
    assert ledger["format"] == "ppr.privacy.ledger/1"
    assert "NonPrivateDpEvent" in json.dumps(ledger["entries"])
    assert ledger["summary"]["epsilon"] == "inf" and summary["privacy"]["epsilon_spent"] == "inf"


def test_interrupted_run_is_resumable_with_identical_results(tmp_path):
    """Killed after round 2: no run directory appears (only a hidden .partial one with a
    checkpoint); resuming gives exactly the uninterrupted run's item matrix and metrics."""
    from ppr.experiments.simulate import resume

    cfg = cfg_of(**{"output.runs_dir": str(tmp_path), "name": "r"})
    full = simulate(cfg, write=False)

    def boom(done: int, total: int, rec: dict) -> None:
        if done == 2:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted") as info:
        simulate(cfg, progress=boom)
    (partial,) = list(tmp_path.iterdir())
    assert partial.name.startswith(".r-") and partial.name.endswith(".partial")
    assert any("ppr simulate --resume" in n for n in info.value.__notes__)
    res = resume(partial)
    assert np.array_equal(res.q, full.q)
    assert res.summary.to_dict()["metrics"] == full.summary.to_dict()["metrics"]
    assert [lg.round for lg in res.rounds] == list(range(1, cfg.federated.rounds + 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [res.run_dir.name]
    assert not (res.run_dir / "checkpoint.npz").exists()


def test_error_before_first_round_leaves_nothing(tmp_path):
    cfg = cfg_of(
        **{"output.runs_dir": str(tmp_path), "privacy.epsilon": 1.0, "federated.sampling": "fixed"}
    )
    with pytest.raises(ConfigError):
        simulate(cfg)
    assert list(tmp_path.iterdir()) == []


def test_missing_data_file_leaves_no_run_dir(tmp_path):
    runs = tmp_path / "runs"
    cfg = cfg_of(
        **{
            "output.runs_dir": str(runs),
            "data.source": "ml-100k",
            "data.path": str(tmp_path / "nope"),
        }
    )
    with pytest.raises(DataError, match="nope"):
        simulate(cfg)
    assert not runs.exists() or list(runs.iterdir()) == []


def test_dp_run_epsilon_matches_fresh_accountant(tmp_path):
    eps, q, rounds = 4.0, 0.5, 3
    cfg = cfg_of(
        **{
            "output.runs_dir": str(tmp_path),
            "privacy.epsilon": eps,
            "privacy.clip_norm": 0.5,
            "federated.sampling_rate": q,
            "privacy.popularity_blend": 0.2,
            "baselines.centralized": False,
        }
    )
    res = simulate(cfg)
    p = res.summary.to_dict()["privacy"]
    ledger = json.loads((res.run_dir / "ledger.json").read_text())
    names = [e["name"] for e in ledger["entries"]]
    assert names == ["popularity", "dpfedavg"] == p["ledger"]
    events = [event_from_json(e["event"]) for e in ledger["entries"]]
    # the DP-FedAvg entry is exactly T Poisson-sampled Gaussian rounds at the planned sigma
    assert events[1] == dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(p["noise_multiplier"])), rounds
    )
    assert events[0] == dp_event.GaussianDpEvent(p["popularity_noise_multiplier"])
    acc = make_accountant(p["accountant"])  # a fresh accountant of the kind the run names
    for e in events:
        acc.compose(e)
    fresh = acc.get_epsilon(p["delta"])
    assert p["epsilon_spent"] == pytest.approx(fresh, abs=1e-6)
    assert p["epsilon_spent"] <= eps * (1 + 1e-2)
    assert p["delta"] < 1 / 120
    assert all(lg.noise_multiplier == p["noise_multiplier"] for lg in res.rounds)
    assert "private_popularity" in res.summary.to_dict()["baselines"]


def test_fixed_sampling_refused_under_dp():
    cfg = cfg_of(
        **{"privacy.epsilon": 2.0, "privacy.clip_norm": 1.0, "federated.sampling": "fixed"}
    )
    with pytest.raises(ConfigError, match="poisson"):
        simulate(cfg, write=False)


def test_ckks_needs_finite_clip():
    cfg = cfg_of(**{"aggregation.mode": "ckks", "privacy.clip_norm": "inf"})
    with pytest.raises(ConfigError, match="clip_norm"):
        simulate(cfg, write=False)


def test_ckks_equals_plaintext():
    over = {
        "federated.rounds": 2,
        "aggregation.workers": 1,
        "privacy.clip_norm": 0.5,
        "baselines.centralized": False,
        "baselines.popularity": False,
    }
    plain = simulate(cfg_of(**over), write=False)
    ckks = simulate(cfg_of(**over, **{"aggregation.mode": "ckks"}), write=False)
    assert ckks.summary.to_dict()["communication"]["mode"] == "ckks"
    assert any(lg.clipped_fraction > 0 for lg in plain.rounds)  # both runs really clip
    assert [lg.clipped_fraction for lg in plain.rounds] == [
        lg.clipped_fraction for lg in ckks.rounds
    ]
    r_p, r_c = plain.summary.recall(20), ckks.summary.recall(20)
    assert abs(r_p - r_c) <= 0.002
    assert math.isfinite(r_p) and r_p > 0
    assert (
        ckks.summary.to_dict()["communication"]["upload_bytes_total"]
        > plain.summary.to_dict()["communication"]["upload_bytes_total"]
    )

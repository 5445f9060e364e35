"""DP runs end to end: distributed noise (plaintext and CKKS), dropouts, and the realized ledger."""

from __future__ import annotations

import math

import pytest

from ppr.config import load_config
from ppr.experiments.simulate import simulate
from ppr.privacy import ledger_from_json, make_accountant

TINY = {
    "data.synthetic.n_users": 80,
    "data.synthetic.n_items": 40,
    "data.synthetic.n_interactions": 1600,
    "model.dim": 4,
    "federated.rounds": 3,
    "federated.sampling_rate": 0.5,
    "federated.dropout_rate": 0.2,
    "privacy.epsilon": 4.0,
    "privacy.clip_norm": 1.0,
    "privacy.noise": "distributed",
    "baselines.centralized": False,
    "aggregation.workers": 1,
}


@pytest.mark.parametrize("mode", ["plaintext", "ckks"])
def test_distributed_noise_run_and_realized_ledger(tmp_path, mode):
    cfg = load_config(None, {**TINY, "aggregation.mode": mode, "output.runs_dir": str(tmp_path)})
    res = simulate(cfg)
    s = res.summary.to_dict()
    assert s["privacy"]["noise"] == "distributed" and s["privacy"]["noise_multiplier"] > 0
    assert all(lg.dropped >= 0 and lg.accepted <= lg.sampled for lg in res.rounds)
    assert any(lg.dropped > 0 for lg in res.rounds)  # 20 % dropout over ~120 sampled devices
    # every round is charged at the noise it really carried (<= planned sigma)
    realized = [lg.noise_multiplier for lg in res.rounds]
    assert all(0 < r <= s["privacy"]["noise_multiplier"] + 1e-12 for r in realized)
    ledger = ledger_from_json((res.run_dir / "ledger.json").read_text())
    acc = make_accountant(s["privacy"]["accountant"])
    acc.compose(ledger.composed())
    eps = acc.get_epsilon(s["privacy"]["delta"])
    assert math.isclose(eps, s["privacy"]["epsilon_spent"], rel_tol=1e-6)
    assert eps >= 4.0 * (1 - 1e-2)  # never credited more noise than planned
    assert 0.0 <= s["metrics"]["recall@20"] <= 1.0
    channel = s["communication"]["channel"]
    if mode == "ckks":  # sizes are what crossed the channel: updates are the devices' uploads
        assert channel["by_kind"]["update"] == s["communication"]["upload_bytes_total"]
        assert channel["by_sender"]["device"] == channel["by_kind"]["update"]
        assert "secret" not in str(channel)
    else:
        assert channel is None


def test_fixed_sampling_refused_under_dp():
    from ppr.errors import ConfigError

    cfg = load_config(None, {**TINY, "federated.sampling": "fixed"})
    with pytest.raises(ConfigError, match=r"federated\.sampling"):
        simulate(cfg, write=False)

"""User controls: opt-out of training (no byte on the channel), personal ε cap (never exceeded,
checked with the accountant), deletion, refinement opt-out, and the config's one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from transparency_testutils import TINY, controlled_run

from ppr.config import load_config
from ppr.errors import ConfigError
from ppr.experiments.accounting import LiveLedger
from ppr.experiments.controls import DEVICE_LOG_FILE, UserControls, choose_users, device_settings
from ppr.experiments.simulate import simulate
from ppr.privacy import make_accountant, plan_privacy
from ppr.privacy.spend import spend_from_json


def _device_log(run_dir) -> dict:
    return json.loads((run_dir / DEVICE_LOG_FILE).read_text())["devices"]


def test_choose_users_is_public_deterministic_and_sized():
    a = choose_users(7, 100, 0.25, "opt_out")
    assert a.size == 25 and np.array_equal(a, choose_users(7, 100, 0.25, "opt_out"))
    assert not np.array_equal(a, choose_users(7, 100, 0.25, "delete"))  # independent per control
    assert not np.array_equal(a, choose_users(8, 100, 0.25, "opt_out"))
    assert choose_users(7, 100, 0.0, "opt_out").size == 0


def test_refine_opt_out_is_the_devices_setting():
    cfg = load_config(None, {**TINY, "controls.refine_opt_out_share": 0.5})
    off = [u for u in range(40) if not device_settings(cfg, 40, u).refine]
    assert len(off) == 20 and all(device_settings(cfg, 40, u).train for u in off)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("controls.opt_out_share", 1.5, r"`controls\.opt_out_share` must be <= 1"),
        ("controls.epsilon_cap", -1.0, r"`controls\.epsilon_cap` must be > 0"),
        ("controls.delete_after_round", 0, r"`controls\.delete_after_round` must be >= 1"),
        ("controls.epsilon_cap_share", 0.2, r"`controls\.epsilon_cap` must be finite"),
    ],
)
def test_bad_controls_fail_in_one_line(key, value, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_config(None, {key: value}).check()  # cross-key checks run before a run
    assert "\n" not in str(err.value)


def test_opted_out_device_sends_no_byte_over_the_ckks_channel(tmp_path):
    """q = 1: every eligible device sends every round, so an opted-out device's silence is its
    opt-out, not the sampling. The devices' logs are written by the run's channel on every send:
    their sum is the channel's own counter of bytes sent by devices."""
    over = {**TINY, "aggregation.mode": "ckks", "federated.rounds": 2, "privacy.clip_norm": 1.0}
    over |= {"controls.opt_out_share": 0.25, "output.runs_dir": str(tmp_path)}
    res = simulate(load_config(None, over))
    cfg, n = load_config(None, over), 40
    out = np.flatnonzero(UserControls.from_config(cfg, n).opted_out)
    log = _device_log(res.run_dir)
    channel = res.summary.to_dict()["communication"]["channel"]
    logged = sum(sum(k["bytes"] for k in e["sent"].values()) for e in log.values())
    assert channel["by_sender"]["device"] == logged > 0
    for u in out.tolist():
        assert log[str(u)]["sent"] == {} and log[str(u)]["rounds"] == []
        assert "public_context" not in log[str(u)]["received"]  # never even contacted
    members = json.loads((res.run_dir / "devices.json").read_text())["members"]
    took_part = [u for u in members if u not in set(out.tolist())]
    assert all(log[str(u)]["rounds"] == [1, 2] for u in took_part)
    assert all(log[str(u)]["sent"]["update"]["encrypted"] for u in took_part)
    spend = spend_from_json(json.loads((res.run_dir / "devices.json").read_text())["spend"])
    idx = np.searchsorted(members, out[np.isin(out, members)])
    assert idx.size and not spend.device_counts(idx).any()  # never charged: never eligible


@pytest.fixture(scope="module")
def capped_run(tmp_path_factory):
    cfg, run_dir = controlled_run(tmp_path_factory.getbasetemp())
    return cfg, run_dir, json.loads((run_dir / "summary.json").read_text())


def test_personal_cap_is_never_exceeded(capped_run):
    cfg, run_dir, summary = capped_run
    rec = json.loads((run_dir / "devices.json").read_text())
    members, spend = np.asarray(rec["members"]), spend_from_json(rec["spend"])
    controls = UserControls.from_config(cfg, 40)
    capped = np.flatnonzero(np.isfinite(controls.cap) & (controls.delete_after == 0))
    capped = capped[np.isin(capped, members)]
    delta = summary["privacy"]["delta"]
    assert summary["privacy"]["epsilon_spent"] > cfg.controls.epsilon_cap  # the cap binds
    log = _device_log(run_dir)
    assert capped.size >= 8
    for u in capped.tolist():
        assert log[str(u)]["stopped"]["reason"] == "personal epsilon cap"
    counts = spend.device_counts(np.searchsorted(members, capped))
    round_event = spend.signatures[spend.releases[-1].signature]
    for row in np.unique(counts, axis=0):  # devices with equal counts have equal spend
        u = int(capped[np.flatnonzero((counts == row).all(axis=1))[0]])
        acc = make_accountant(cfg.privacy.accountant)
        acc.compose(spend.device_event(int(np.searchsorted(members, u))))
        assert 0 < acc.get_epsilon(delta) <= cfg.controls.epsilon_cap
        assert len(log[str(u)]["rounds"]) <= row.sum() - 1 < cfg.federated.rounds  # - popularity
        # one more round at the planned noise would have passed the cap: stopped as late as the
        # cap allows, not earlier
        acc.compose(round_event)
        assert acc.get_epsilon(delta) > cfg.controls.epsilon_cap


def _plan(cfg):
    fed = cfg.federated
    return plan_privacy(cfg.privacy, 40, fed.sampling_rate, fed.rounds, False)


def test_deleted_device_erases_its_log_and_stops_after_its_round(capped_run):
    cfg, run_dir, _ = capped_run
    rec = json.loads((run_dir / "devices.json").read_text())
    members, spend = np.asarray(rec["members"]), spend_from_json(rec["spend"])
    deleted = np.flatnonzero(UserControls.from_config(cfg, 40).delete_after > 0)
    log = _device_log(run_dir)
    assert deleted.size == 4
    for u in deleted.tolist():
        assert log[str(u)]["deleted_after_round"] == 2
        assert "sent" not in log[str(u)] and "rounds" not in log[str(u)]
        if u in members:  # eligible for rounds 1-2 at most, never after
            row = spend.device_counts([int(np.searchsorted(members, u))])[0]
            assert row[spend.releases[-1].signature] <= 2


def test_ledger_refuses_a_round_whose_realized_noise_would_pass_a_cap():
    """Distributed noise with dropouts carries less noise than planned: the filter checks the
    watched capped devices at the realized noise before releasing."""
    over = {"privacy.epsilon": 4.0, "privacy.clip_norm": 1.0, "privacy.accountant": "rdp"}
    cfg = load_config(None, {**TINY, **over})
    plan = _plan(cfg)
    led = LiveLedger(plan, np.arange(10))
    led.charge(0, plan.noise_multiplier, np.arange(10))
    cap = make_accountant("rdp")
    cap.compose(led.round_event(plan.noise_multiplier))
    eps1 = cap.get_epsilon(plan.delta)
    led.cap_watch = (np.arange(3), np.full(3, 1.05 * eps1))  # room for one round only
    assert led.admit(plan.noise_multiplier) == ""  # as planned: checked before the round
    assert "personal epsilon cap" in led.admit(0.8 * plan.noise_multiplier)
    led.cap_watch = (np.arange(3), np.full(3, 100.0))  # a loose cap: the same round passes
    assert led.admit(0.8 * plan.noise_multiplier) == ""


def test_retirements_and_device_log_survive_a_resume():
    """A resumed run rebuilds its fleet: the checkpointed controls retire the same devices."""
    from ppr.experiments.controls import RunControls
    from ppr.experiments.factories import build_fleet, prepare_data

    over = {**TINY, "privacy.epsilon": 6.0, "privacy.clip_norm": 1.0, "federated.rounds": 4}
    over |= {"controls.epsilon_cap": 4.0, "controls.epsilon_cap_share": 0.3}
    over |= {"controls.delete_share": 0.1, "controls.delete_after_round": 1}
    cfg = load_config(None, over)
    split = prepare_data(cfg)
    train, _ = split.for_evaluation(cfg.evaluation.split)

    def fresh(checkpoint=None):
        fleet = build_fleet(cfg, split, train)
        ledger = LiveLedger(_plan(cfg), fleet.members)
        return RunControls(cfg, train.n_users, fleet, ledger, checkpoint), fleet, ledger

    first, fleet, ledger = fresh()
    for t in range(1, 4):
        first.before_round(t)
        ledger.charge(t - 1, ledger.plan.noise_multiplier, fleet.population)
    assert 0 < fleet.population.size < fleet.members.size
    again, fleet2, _ = fresh({"controls": json.loads(json.dumps(first.state()))})
    assert np.array_equal(fleet2.population, fleet.population)
    assert again.report() == first.report()

"""The cold-start stage of a run (ledger, run file, secret noise) and its evaluation."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from ppr.config import Config
from ppr.errors import ConfigError
from ppr.experiments import simulate
from ppr.experiments.accounting import LiveLedger
from ppr.experiments.coldstart import (
    BLENDED,
    DEFAULT_NS,
    LEDGER_NAME,
    NewUsers,
    _noise_key,
    evaluate_cold_start,
    release_cohort_stage,
)
from ppr.experiments.factories import build_fleet, prepare_data, run_keys
from ppr.experiments.rundir import RunDir
from ppr.experiments.session import RunSession
from ppr.experiments.simulate import RunData
from ppr.privacy import PrivacyLedger, load_ledger, plan_privacy
from ppr.privacy.cohorts import COHORTS_FILE, CohortRelease

SMALL = {
    "data.synthetic.n_users": 300,
    "data.synthetic.n_items": 120,
    "data.synthetic.n_interactions": 9000,
    "model.dim": 8,
    "split.protocol": "held_out_users",
    "split.held_out_fraction": 0.2,
    "federated.rounds": 3,
    "privacy.epsilon": 8.0,
    "privacy.noise_seed": 0,
    "baselines.centralized": False,
    "cold_start.enabled": True,
    "cold_start.min_cohort_size": 10,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = Config().replace(**SMALL, **{"output.runs_dir": str(tmp_path_factory.mktemp("r"))})
    return simulate(cfg, write=True)


def test_the_ledger_holds_the_cohort_release_and_the_total_epsilon_grows(run) -> None:
    led = run.ledger
    assert LEDGER_NAME in led.names()
    p = run.summary.privacy
    without = PrivacyLedger()
    for e in led.entries:
        if e.name != LEDGER_NAME:
            without = without.add(e.name, e.event)
    before = without.epsilon(p.delta, p.accountant)
    assert before <= 8.0 * (1 + 1e-9)  # training alone met its target
    assert p.epsilon_spent > before + 0.05  # ... and the run's total grew with the cohorts
    assert p.epsilon_spent == pytest.approx(led.epsilon(p.delta, p.accountant))
    assert run.model.privacy["epsilon"] == pytest.approx(p.epsilon_spent)  # the model says so
    saved = load_ledger(run.run_dir / "ledger.json")
    assert LEDGER_NAME in saved.names()


def test_the_release_is_saved_in_the_run_directory(run) -> None:
    rel = CohortRelease.load(run.run_dir / COHORTS_FILE)
    assert rel.labels == run.cohorts.labels and len(rel.labels) > 0
    assert rel.kind == "attributes" and rel.attributes == ("age_band", "gender")
    assert np.all(rel.sizes >= 10)  # only cohorts whose noisy size passed K
    assert rel.epsilon == 1.0 and rel.noise.startswith("seeded")


def test_evaluation_on_new_users(run) -> None:
    res = evaluate_cold_start(run.run_dir)
    methods = {(r["method"], r["n"]) for r in res.rows}
    assert {("global", 0), ("cohort", 0)} <= methods
    assert {(m, n) for m in ("fold-in", BLENDED) for n in DEFAULT_NS} <= methods
    users = {r["users"] for r in res.rows}
    assert len(users) == 1 and users.pop() == res.info["new_users"] > 10  # one set of users
    assert all(0.0 <= r["recall"] <= 1.0 for r in res.rows)
    assert res.info["epsilon_run"] == pytest.approx(run.summary.privacy.epsilon_spent)
    assert res.recall("fold-in", 10) > res.recall("fold-in", 1)  # more history helps


def test_new_users_never_trained_and_are_in_time_order(run) -> None:
    cfg = Config().replace(**SMALL)
    new = NewUsers(cfg, 10)
    split = prepare_data(cfg)
    assert not split.train_users[new.users].any()
    assert all(new.items[int(u)].size > 10 for u in new.users)
    with pytest.raises(ConfigError, match="held_out_users"):
        NewUsers(Config().replace(**{**SMALL, "split.protocol": "random"}), 10)


def _stage_inputs(cfg: Config):
    split = prepare_data(cfg)
    train, target = split.for_evaluation("test")
    fleet = build_fleet(cfg, split, train)
    fed, priv = cfg.federated, cfg.privacy
    plan = plan_privacy(priv, fleet.n_devices, fed.sampling_rate, fed.rounds, False)
    keys = run_keys(cfg, plan.noise_multiplier > 0)
    return RunData(split, train, target), fleet, plan, keys


def test_anonymous_cohorts_from_public_centroids() -> None:
    cfg = Config().replace(**SMALL, **{"cold_start.mode": "anonymous"})
    data, fleet, plan, keys = _stage_inputs(cfg)
    ledger = LiveLedger(plan, fleet.members)
    before = ledger.epsilon()
    q = np.asarray(jax.random.normal(jax.random.key(0), (data.train.n_items, 8)))  # public
    rel = release_cohort_stage(cfg, plan, data, fleet, keys, ledger, None, q)
    assert rel.kind == "anonymous" and rel.centroids.shape == (8, 8)
    assert all(lab.startswith("anon-") for lab in rel.labels)
    assert ledger.epsilon() > before and LEDGER_NAME in ledger.ledger.names()
    u = int(fleet.members[0])
    c = rel.cohort_of(None, data.train.row(u), q)
    assert c == -1 or rel.labels[c].startswith("anon-")
    assert rel.cohort_of(None, np.array([], np.int64), q) == -1  # no items: no cohort


def test_disabled_stage_releases_nothing() -> None:
    cfg = Config().replace(**{**SMALL, "cold_start.enabled": False})
    assert release_cohort_stage(cfg, None, None, None, None, None, None, None) is None


def test_cohort_noise_is_secret_when_training_is_not_private() -> None:
    cfg = Config().replace(**{**SMALL, "privacy.epsilon": math.inf, "privacy.noise_seed": -1})
    keys = run_keys(cfg, private=False)  # its "secret" key is the public seed
    key, label = _noise_key(cfg, keys, private_run=False)
    assert label.startswith("secret")
    assert not np.array_equal(np.asarray(key), np.asarray(jax.random.fold_in(keys.public, 7)))
    seeded = Config().replace(**SMALL)
    _, label2 = _noise_key(seeded, run_keys(seeded, private=True), private_run=True)
    assert label2.startswith("seeded")


def test_a_release_written_before_an_interruption_is_reused_and_charged(tmp_path) -> None:
    cfg = Config().replace(**SMALL, **{"output.runs_dir": str(tmp_path)})
    data, fleet, plan, keys = _stage_inputs(cfg)
    q = np.asarray(jax.random.normal(jax.random.key(0), (data.train.n_items, 8)))
    session = RunSession.open(cfg, None, True, None)
    first = release_cohort_stage(cfg, plan, data, fleet, keys, LiveLedger(plan, fleet.members),
                                 session, q)  # fmt: skip
    assert session.rd.file(COHORTS_FILE).is_file()
    resumed = RunSession.open(cfg, None, False, None)
    resumed.rd = RunDir.reopen(session.rd.path)  # what `resume` reopens
    ledger = LiveLedger(plan, fleet.members)
    again = release_cohort_stage(cfg, plan, data, fleet, keys, ledger, resumed, q)
    np.testing.assert_allclose(again.counts, first.counts, rtol=1e-6)  # not a second draw
    assert LEDGER_NAME in ledger.ledger.names()  # ... but charged to the restored ledger

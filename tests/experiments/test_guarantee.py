"""The printed guarantee is the delivered guarantee: secret noise, the release boundary, resumes,
the live ledger and the filter, as properties and, where an attack is known, by running it."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest
from dp_accounting import dp_event

from ppr.config import load_config
from ppr.errors import ConfigError
from ppr.experiments import simulate
from ppr.experiments.accounting import LiveLedger
from ppr.experiments.factories import build_fleet, prepare_data, run_keys
from ppr.experiments.simulate import resume
from ppr.experiments.summary import DIAGNOSTIC, KINDS, RunSummary, classification
from ppr.federated import CentralNoise, FederatedTrainer, Server, StructuredSum
from ppr.model.mf import init_item_factors
from ppr.model.release import load_model
from ppr.privacy import epsilon_of, plan_privacy
from ppr.privacy.noise import central_noise

TINY = {
    "data.synthetic.n_users": 80,
    "data.synthetic.n_items": 50,
    "data.synthetic.n_interactions": 2000,
    "model.dim": 4,
    "federated.rounds": 1,
    "federated.server_optimizer": "sgd",
    "federated.server_lr": 1.0,
    "privacy.epsilon": 1.0,
    "privacy.clip_norm": 1.0,
    "baselines.centralized": False,
    "baselines.popularity": False,
}


def _released_sum(cfg, res):
    """What the analyst can read off the run directory: the released (noised) sum of round 1,
    from the public initial matrix and the released model (sgd, lr 1: Q1 = Q0 + total / qN)."""
    split = prepare_data(cfg)
    keys = run_keys(cfg, True)
    q0 = np.asarray(
        init_item_factors(
            jax.random.fold_in(keys.public, 1), split.n_items, cfg.model.dim, cfg.model.init_scale
        ),
        np.float64,
    )
    fleet = build_fleet(cfg, split, split.for_evaluation("test")[0])
    denom = cfg.federated.sampling_rate * fleet.n_devices
    clipped = np.asarray(
        fleet.compute(q0, fleet.population, cfg.privacy.clip_norm).clipped_sum(), np.float64
    )
    return (np.asarray(res.q, np.float64) - q0) * denom, clipped


def _strip_noise(cfg, res, released):
    """The attack: rebuild round 1's central noise from the seed written in config.toml."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 2), 0)
    k_sum = jax.random.split(key, 3)[2]
    k_noise = jax.random.split(k_sum)[0]
    sigma = res.summary.privacy.noise_multiplier
    z = central_noise(k_noise, released.shape, sigma, cfg.privacy.clip_norm)
    return released - np.asarray(z, np.float64)


def test_noise_stripping_attack_fails_on_secret_noise_and_works_on_known_seed(tmp_path):
    cfg = load_config(None, {**TINY, "output.runs_dir": str(tmp_path)})
    res = simulate(cfg)
    written = (res.run_dir / "config.toml").read_text()
    cfg_read = load_config(res.run_dir / "config.toml")  # everything the run directory holds
    released, clipped = _released_sum(cfg_read, res)
    err = np.linalg.norm(_strip_noise(cfg_read, res, released) - clipped) / np.linalg.norm(clipped)
    assert err >= 0.5, err  # the secret noise cannot be rebuilt
    assert "noise_seed = -1" in written
    # the same attack works when the noise was seeded (and the seed is known): it can fail
    seeded = load_config(
        None, {**TINY, "privacy.noise_seed": cfg.seed, "output.runs_dir": str(tmp_path)}
    )
    res2 = simulate(seeded)
    released2, clipped2 = _released_sum(seeded, res2)
    err2 = np.linalg.norm(_strip_noise(seeded, res2, released2) - clipped2) / np.linalg.norm(
        clipped2
    )
    assert err2 < 1e-3, err2


def test_same_seed_releases_different_noise_and_seeded_mode_is_labelled(tmp_path):
    cfg = load_config(None, {**TINY, "output.runs_dir": str(tmp_path)})
    a, b = simulate(cfg), simulate(cfg)
    assert not np.array_equal(a.q, b.q)
    assert a.summary.privacy.secret and a.model.privacy["noise"].startswith("secret")
    seeded = load_config(None, {**TINY, "privacy.noise_seed": 7, "output.runs_dir": str(tmp_path)})
    c, d = simulate(seeded), simulate(seeded)
    assert np.array_equal(c.q, d.q)
    for label in (
        c.summary.privacy.randomness,
        load_model(c.run_dir).privacy["noise"],
        json.loads((c.run_dir / "summary.json").read_text())["privacy"]["randomness"],
    ):
        assert label.startswith("seeded") and "noise_seed = 7" in label


def test_resume_with_an_edited_privacy_config_is_refused(tmp_path):
    cfg = load_config(
        None,
        {**TINY, "privacy.epsilon": "inf", "federated.rounds": 4, "output.runs_dir": str(tmp_path)},
    )

    def stop(done, total, rec):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(cfg, progress=stop)
    (partial,) = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    text = (partial / "config.toml").read_text().replace('epsilon = "inf"', "epsilon = 1.0")
    (partial / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match="differs from the config the checkpoint"):
        resume(partial)
    (partial / "checkpoint.npz").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="corrupt checkpoint"):
        resume(partial)


def test_every_summary_field_is_classified_and_protected_only_holds_no_diagnostic(tmp_path):
    kinds = classification()
    assert kinds and all(k in KINDS for k in kinds.values()), kinds
    cfg = load_config(
        None, {**TINY, "output.protected_only": True, "output.runs_dir": str(tmp_path)}
    )
    res = simulate(cfg)
    files = sorted(p.name for p in res.run_dir.iterdir())
    assert files == ["config.toml", "ledger.json", "model.msgpack", "summary.json"]
    written = json.loads((res.run_dir / "summary.json").read_text())
    flat = {
        f"{a}.{b}" if isinstance(v, dict) else a: None
        for a, v in written.items()
        for b in (v if isinstance(v, dict) else [a])
    }
    assert not any(kinds.get(k) == DIAGNOSTIC for k in flat), flat
    assert "metrics" not in written and "users" not in written["data"]
    full = res.summary.to_dict()
    assert RunSummary.from_dict(full).to_dict() == full


def test_model_file_round_trips(tmp_path):
    cfg = load_config(None, {**TINY, "privacy.epsilon": "inf", "output.runs_dir": str(tmp_path)})
    res = simulate(cfg)
    m = load_model(res.run_dir)
    assert np.array_equal(m.item_factors, res.q) and m.version == res.model.version
    assert m.alpha == cfg.model.alpha and m.reg == cfg.model.reg
    assert m.privacy["epsilon"] == math.inf and len(m.item_ids) == m.n_items


def _trainer(cfg, split):
    train = split.for_evaluation("test")[0]
    fleet = build_fleet(cfg, split, train)
    fed = cfg.federated
    plan = plan_privacy(cfg.privacy, fleet.n_devices, fed.sampling_rate, fed.rounds, False)
    ledger = LiveLedger(plan, fleet.members)
    import optax

    summation = CentralNoise(
        StructuredSum(split.n_items, cfg.model.dim), plan.noise_multiplier, cfg.privacy.clip_norm
    )
    trainer = FederatedTrainer(
        fleet,
        summation,
        Server(optax.sgd(1.0)),
        sampling="poisson",
        sampling_rate=fed.sampling_rate,
        participants=0,
        dropout_rate=0.0,
        clip_norm=cfg.privacy.clip_norm,
        fixed_denominator=fed.sampling_rate * fleet.n_devices,
        accounting=ledger,
    )
    q0 = init_item_factors(jax.random.PRNGKey(0), split.n_items, cfg.model.dim, 0.1)
    return trainer, trainer.server.init(q0), fleet, plan, ledger


def test_per_device_spend_charges_eligibility_and_the_filter_stops_the_run():
    cfg = load_config(
        None,
        {**TINY, "federated.sampling_rate": 0.1, "federated.rounds": 6, "privacy.epsilon": 4.0},
    )
    split = prepare_data(cfg)
    trainer, state, fleet, plan, ledger = _trainer(cfg, split)
    key = jax.random.PRNGKey(1)
    r = 2
    state, logs = trainer.fit(state, r, key)
    gone, stays = int(fleet.members[0]), int(fleet.members[1])
    fleet.retire([gone])  # the mechanism an opt-out or a personal cap uses
    state, more = trainer.fit(state, 6, key, start=r)
    assert all(lg.released for lg in logs + more)
    one = dp_event.PoissonSampledDpEvent(0.1, dp_event.GaussianDpEvent(plan.noise_multiplier))
    for dev, n in ((gone, r), (stays, 6)):
        want = epsilon_of(dp_event.SelfComposedDpEvent(one, n), plan.delta, plan.accountant)
        assert ledger.device_epsilon(dev) == pytest.approx(want, rel=1e-3)
    assert ledger.epsilon() <= 4.0 * (1 + 1e-3)
    # a 7th round at the planned noise would pass the target: refused, nothing charged
    before = ledger.epsilon()
    state, extra = trainer.fit(state, 7, key, start=6)
    assert not extra[-1].released and "target" in extra[-1].stopped
    assert ledger.epsilon() == before and ledger.rounds_released == 6


def test_a_round_that_releases_nothing_costs_nothing():
    cfg = load_config(None, {**TINY, "federated.rounds": 3})
    split = prepare_data(cfg)
    trainer, state, fleet, _plan, ledger = _trainer(cfg, split)
    from ppr.federated import RoundSum

    _st, released, why = trainer._release(state, 0, RoundSum(np.zeros(0), 0, 0), fleet.members)
    assert not released and why == "" and ledger.rounds_released == 0
    assert ledger.epsilon() == 0.0 and len(ledger.ledger) == 0

def test_eval_every_curve_is_on_the_runs_own_evaluation_split(tmp_path):
    """A test run's curve comes from its test items, never from validation items that the
    devices trained on (a test run trains on train + validation)."""
    cfg = load_config(
        None,
        {
            **TINY,
            "privacy.epsilon": "inf",
            "federated.rounds": 2,
            "evaluation.eval_every": 1,
            "output.runs_dir": str(tmp_path),
        },
    )
    res = simulate(cfg)
    recs = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("test" in r and "validation" not in r for r in recs)
    assert recs[-1]["test"]["recall@20"] == pytest.approx(res.summary.recall(20))

"""Device tiers: assignment, cost model, budgets, deadlines, and their place in a round.

Statistical checks use a two-sided normal bound on a binomial count at false-failure rate 1e-6
(z = 4.89); draws are seeded, so a pass is reproducible.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy.stats import norm

from ppr.config import FederatedConfig, PrivacyConfig
from ppr.crypto import CkksSecureAggregation, PlaintextAggregation, default_params
from ppr.experiments.accounting import LiveLedger
from ppr.federated import (
    CentralNoise,
    DeviceFleet,
    EncodedSum,
    FederatedTrainer,
    RoundInstructions,
    Server,
    StructuredSum,
    make_server_optimizer,
)
from ppr.federated.tiers import (
    CostModel,
    Tier,
    TierSchedule,
    activity_quartiles,
    assign_tiers,
    message_bytes,
)
from ppr.model.mf import MFHyper, init_item_factors
from ppr.privacy import plan_privacy
from tests.data_testutils import random_user_items

N_USERS, N_ITEMS, DIM, CLIP = 60, 30, 4, 0.5
Z = float(norm.isf(1e-6 / 2))
COST = CostModel(N_ITEMS, DIM, 4 * N_ITEMS * DIM)
FAST = Tier("fast", 0.5, 1e9, 1e8)
SLOW = Tier("slow", 0.3, 2e4, 1e5)  # must adapt: see deadline() below
LATE = Tier("late", 0.2, 1e3, 1e2)  # past any deadline used here, even at one step


def deadline() -> float:
    """Between SLOW's time at one step and at three: SLOW meets it only by adapting."""
    return 0.5 * (COST.seconds(SLOW, 1) + COST.seconds(SLOW, 2))


def make_fleet(seed: int = 0, local_steps: int = 3) -> DeviceFleet:
    lens = np.random.default_rng(0).integers(1, 9, N_USERS)  # one bucket length: few compiles
    items = random_user_items(np.random.default_rng(seed), lens, N_ITEMS)
    return DeviceFleet(items, np.ones(N_USERS, bool), MFHyper(3.0, 2.0, local_steps, 0.1))


def schedule(adapt: bool = True, tiers=(FAST, SLOW, LATE), seed: int = 0) -> TierSchedule:
    tier_of = assign_tiers(N_USERS, [t.share for t in tiers], seed)
    return TierSchedule(list(tiers), tier_of, COST, deadline(), 3, adapt)


def q0() -> np.ndarray:
    return np.asarray(init_item_factors(jax.random.PRNGKey(2), N_ITEMS, DIM, 1.0))


# ----------------------------------------------------------------------------------------------
# assignment and cost model


@pytest.mark.parametrize("n", [1, 7, 100, 1001])
def test_tier_shares_are_respected_and_assignment_is_seeded(n):
    shares = [0.5, 0.3, 0.2]
    a = assign_tiers(n, shares, seed=3)
    counts = np.bincount(a, minlength=3)
    assert counts.sum() == n
    assert np.all(np.abs(counts - np.asarray(shares) * n) < 1.0)  # exact up to one device
    np.testing.assert_array_equal(a, assign_tiers(n, shares, seed=3))
    if n >= 100:
        assert not np.array_equal(a, assign_tiers(n, shares, seed=4))


def test_cost_model_and_budget():
    assert COST.seconds(SLOW, 2) > COST.seconds(SLOW, 1)
    d = deadline()
    assert COST.budget(FAST, d, 3, adapt=True) == 3  # no need to adapt
    assert COST.budget(SLOW, d, 3, adapt=True) == 1  # adapts: the largest budget that fits
    assert COST.seconds(SLOW, 1) <= d < COST.seconds(SLOW, 2)
    assert COST.budget(SLOW, d, 3, adapt=False) == 0  # would straggle without adapting
    assert COST.budget(LATE, d, 3, adapt=True) == 0  # straggles whatever it does
    assert COST.budget(LATE, math.inf, 3, adapt=False) == 3  # no deadline: never late


def test_message_bytes_are_the_real_upload_sizes():
    n = N_ITEMS * DIM
    assert message_bytes(StructuredSum(N_ITEMS, DIM)) == 4 * n
    assert message_bytes(EncodedSum(PlaintextAggregation(n, CLIP), N_ITEMS, DIM)) == 4 * n
    secure = CkksSecureAggregation(n, default_params(4096), workers=1, value_bound=CLIP)
    summation = EncodedSum(secure, N_ITEMS, DIM)
    try:
        measured = message_bytes(summation)
        fleet = make_fleet()
        ids = fleet.population[:3]
        out = summation.aggregate(0, fleet.compute(q0(), ids, CLIP), jax.random.PRNGKey(0))
    finally:
        summation.close()
    # the bytes a CKKS round really sent, per device, within the serialization's compression
    assert out.n_accepted == 3
    assert abs(out.upload_bytes / 3 - measured) <= 0.02 * measured
    assert measured > 4 * n  # ciphertexts are larger than the values they carry


# ----------------------------------------------------------------------------------------------
# one round's plan


def test_straggler_is_dropped_and_adapting_device_meets_its_deadline():
    s = schedule(adapt=True)
    ids = np.arange(N_USERS)
    tr = s.plan(jax.random.PRNGKey(0), ids)  # no tier is ever away here
    tier = s.tier_of
    assert set(tr.stragglers) == set(ids[tier == 2])  # LATE: past the deadline
    assert set(tr.kept) == set(ids[tier != 2]) and tr.away.size == 0
    steps = dict(zip(tr.kept.tolist(), tr.steps.tolist(), strict=True))
    for u in tr.kept:
        t = s.tiers[tier[u]]
        assert COST.seconds(t, steps[int(u)]) <= s.deadline  # every kept device meets it
        assert steps[int(u)] == (3 if t is FAST else 1)  # SLOW adapted from 3 to 1
    assert tr.seconds == s.deadline  # someone did not report: the round closed at the deadline
    # without adaptation SLOW straggles too
    fixed = schedule(adapt=False).plan(jax.random.PRNGKey(0), ids)
    assert set(fixed.stragglers) == set(ids[tier != 0])


def test_round_time_is_the_slowest_device_when_everyone_reports():
    s = schedule(tiers=(FAST, SLOW))
    tr = s.plan(jax.random.PRNGKey(0), np.arange(N_USERS))
    assert tr.stragglers.size == 0 and tr.away.size == 0
    assert tr.seconds == pytest.approx(COST.seconds(SLOW, 1))
    assert tr.per_tier["slow"]["local_steps"] == 1 and tr.per_tier["fast"]["local_steps"] == 3


def test_availability_follows_the_tier_dropout():
    away = Tier("away", 1.0, 1e9, 1e8, dropout=0.3)
    s = TierSchedule([away], np.zeros(N_USERS, np.int64), COST, math.inf, 1, True)
    n = 0
    for t in range(200):
        n += s.plan(jax.random.PRNGKey(t), np.arange(N_USERS)).away.size
    total = 200 * N_USERS
    assert abs(n - 0.3 * total) <= Z * math.sqrt(total * 0.3 * 0.7)


def test_decisions_do_not_depend_on_the_devices_data():
    """Two fleets holding different items (same device ids): the same tier decisions."""
    fleet_a, fleet_b = make_fleet(seed=1), make_fleet(seed=2)
    np.testing.assert_array_equal(fleet_a.population, fleet_b.population)
    assert not np.array_equal(fleet_a._items.indices, fleet_b._items.indices)
    logs = []
    for fleet in (fleet_a, fleet_b):
        tr = trainer(fleet, schedule())
        logs.append(tr.round(tr.server.init(q0()), 0, jax.random.PRNGKey(7))[1])
    a, b = logs
    assert a.tiers == b.tiers and a.sim_seconds == b.sim_seconds
    assert (a.sampled, a.accepted, a.stragglers) == (b.sampled, b.accepted, b.stragglers)


def test_adapted_update_is_the_device_update_with_its_budget():
    """A device that adapted sends exactly what the reference Device sends with that budget."""
    fleet, s, q = make_fleet(), schedule(), q0()
    tr = s.plan(jax.random.PRNGKey(0), fleet.population)
    devices = s.compute(fleet, q, tr, CLIP)
    assert set(devices.device_ids) == set(tr.kept)
    rows = {}
    for b in range(len(devices.batches)):
        users = devices.batches[b].users[devices.batches[b].valid > 0]
        rows.update(zip(users.tolist(), devices.dense(b), strict=True))
    steps = dict(zip(tr.kept.tolist(), tr.steps.tolist(), strict=True))
    for u in tr.kept[:12]:
        ins = RoundInstructions(0, CLIP, 3.0, 2.0, local_steps=steps[int(u)], local_lr=0.1)
        ref, _ = fleet.device(int(u)).update(q, ins)
        np.testing.assert_allclose(rows[int(u)], ref, rtol=2e-3, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# in the trainer


def trainer(
    fleet: DeviceFleet, tiers: TierSchedule | None, ledger: LiveLedger | None = None
) -> FederatedTrainer:
    """A DP trainer (central noise of the plan, real live ledger) over ``fleet``."""
    plan = PLAN if ledger is not None else None
    inner = StructuredSum(N_ITEMS, DIM)
    summation = inner if plan is None else CentralNoise(inner, plan.noise_multiplier, CLIP)
    return FederatedTrainer(
        fleet,
        summation,
        Server(make_server_optimizer(FederatedConfig(server_optimizer="sgd", server_lr=0.5), 0.0)),
        sampling="poisson",
        sampling_rate=0.8,
        participants=0,
        dropout_rate=0.0,
        clip_norm=CLIP,
        fixed_denominator=0.8 * fleet.n_devices,
        accounting=ledger,
        tiers=tiers,
    )


PLAN = plan_privacy(PrivacyConfig(epsilon=8.0, clip_norm=CLIP), N_USERS, 0.8, 2, False)


def test_round_with_stragglers_completes_and_charges_every_eligible_device():
    fleet, s = make_fleet(), schedule()
    led_t, led_0 = LiveLedger(PLAN, fleet.members), LiveLedger(PLAN, fleet.members)
    tr_t, tr_0 = trainer(fleet, s, led_t), trainer(fleet, None, led_0)
    state = tr_t.server.init(q0())
    key = jax.random.PRNGKey(4)
    new, log = tr_t.round(state, 0, key)
    _, log0 = tr_0.round(state, 0, key)
    late = int(np.sum(s.tier_of[fleet.population] == 2))
    assert log.released and not log.stopped  # the round completed
    assert log.sampled == log0.sampled  # the same Poisson draw
    assert 0 < log.stragglers <= late and log.accepted == log.sampled - log.stragglers
    assert log.dropped == log.stragglers and log.sim_seconds == s.deadline
    assert sum(r["uploaded"] for r in log.tiers.values()) == log.accepted
    assert not np.allclose(np.asarray(new.q), np.asarray(state.q))
    # accounting unchanged: every eligible device charged, stragglers included
    assert log.noise_multiplier == log0.noise_multiplier == PLAN.noise_multiplier
    assert led_t.devices_report() == led_0.devices_report()
    assert led_t.epsilon() == led_0.epsilon()
    for u in fleet.population[s.tier_of[fleet.population] == 2][:3]:
        assert led_t.device_epsilon(int(u)) == led_0.device_epsilon(int(u)) > 0


def test_released_sum_is_the_sum_of_the_kept_devices():
    fleet, s, q = make_fleet(), schedule(), q0()
    tr = s.plan(jax.random.PRNGKey(1), fleet.population)
    summed = StructuredSum(N_ITEMS, DIM).aggregate(0, s.compute(fleet, q, tr, CLIP), None)
    by_steps = [
        fleet.compute(q, tr.kept[tr.steps == k], CLIP, fleet.hyper._replace(local_steps=int(k)))
        for k in np.unique(tr.steps)
    ]
    expected = sum(np.asarray(d.clipped_sum(), np.float64) for d in by_steps)
    np.testing.assert_allclose(summed.total, expected, rtol=1e-6, atol=1e-7)
    assert summed.n_accepted == tr.kept.size


def test_activity_quartiles_split_users_by_train_items():
    fleet = make_fleet()
    items = fleet._items
    users = np.arange(N_USERS)
    groups = activity_quartiles(items, users)
    assert len(groups) == 4
    assert sorted(np.concatenate(list(groups.values())).tolist()) == users.tolist()
    counts = items.counts()
    tops = [counts[g].max() for g in groups.values()]
    lows = [counts[g].min() for g in groups.values()]
    assert all(tops[i] <= lows[i + 1] for i in range(3))  # ordered by activity

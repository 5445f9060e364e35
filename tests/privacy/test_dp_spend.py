"""Live per-device accounting: eligibility is charged, the filter stops at the target, skips
cost nothing, and the trusted-side JSON round-trips (counts only, no sampling outcome)."""

import json
import math

import dp_accounting
import numpy as np
import pytest

from ppr.errors import PprError
from ppr.privacy import (
    PrivacySpend,
    dpfedavg_event,
    epsilon_of,
    gaussian_rounds_event,
    spend_from_json,
)

SIGMA, Q, DELTA = 1.0, 0.1, 1e-5


def sampled_round() -> dp_accounting.DpEvent:
    return dp_accounting.PoissonSampledDpEvent(Q, dp_accounting.GaussianDpEvent(SIGMA))


def test_device_spend_follows_eligibility_not_sampling() -> None:
    n, rounds, r_stop = 50, 30, 12
    rng = np.random.default_rng(0)
    spend = PrivacySpend(n, DELTA)
    for t in range(rounds):
        eligible = np.arange(n) if t < r_stop else np.arange(1, n)  # device 0 leaves after r
        sampled = eligible[rng.random(eligible.size) < Q]  # the trainer's secret cohort
        assert sampled.size < eligible.size
        spend.charge(t, gaussian_rounds_event(SIGMA, Q), eligible)  # never `sampled`
    one_round = sampled_round()
    left = epsilon_of(dp_accounting.SelfComposedDpEvent(one_round, r_stop), DELTA)
    stayed = epsilon_of(dp_accounting.SelfComposedDpEvent(one_round, rounds), DELTA)
    assert spend.device_epsilon(0) == pytest.approx(left, rel=1e-12)
    assert spend.device_epsilon(1) == pytest.approx(stayed, rel=1e-12)
    assert left < stayed
    eps = spend.device_epsilons()
    assert eps[0] == pytest.approx(left) and np.allclose(eps[1:], stayed)
    # the run's ε is the all-rounds device: T rounds of DP-FedAvg
    assert spend.epsilon() == pytest.approx(epsilon_of(dpfedavg_event(SIGMA, Q, rounds), DELTA))
    assert spend.ledger().get("dpfedavg").event == dpfedavg_event(SIGMA, Q, rounds)


def test_skipped_round_adds_nothing() -> None:
    spend = PrivacySpend(10, DELTA)
    assert spend.epsilon() == 0.0 and spend.device_epsilon(3) == 0.0  # nothing released yet
    spend.charge(0, sampled_round())
    before, dev_before = spend.epsilon(), spend.device_epsilons()
    spend.charge(1, dp_accounting.NoOpDpEvent())  # round 1 released nothing
    assert spend.epsilon() == before
    np.testing.assert_array_equal(spend.device_epsilons(), dev_before)
    assert [r.round for r in spend.releases] == [0]
    assert spend.to_dict()["releases"] == [
        {"name": "round 0", "round": 0, "signature": 0, "eligible": 10, "description": ""}
    ]


def test_filter_stops_the_release_that_would_exceed_the_target() -> None:
    target = 2.0
    spend = PrivacySpend(20, DELTA)
    spend.charge("popularity", dp_accounting.GaussianDpEvent(8.0))
    event = sampled_round()
    released = 0
    for t in range(1000):
        if spend.would_exceed(event, target):
            break
        spend.charge(t, event)
        released += 1
    pop = dp_accounting.GaussianDpEvent(8.0)

    def whole(n: int) -> float:  # fresh computation, not the filter's
        return epsilon_of(dp_accounting.ComposedDpEvent([pop, dpfedavg_event(SIGMA, Q, n)]), DELTA)

    assert 0 < released < 1000
    assert spend.epsilon() == pytest.approx(whole(released)) and whole(released) <= target
    assert whole(released + 1) > target  # the stopped release would have passed the target
    # data-independent: the decision depends only on counts and the planned event
    assert spend.would_exceed(dp_accounting.NoOpDpEvent(), target) is False


def test_personal_cap_per_device() -> None:
    n, cap = 30, 2.0
    spend = PrivacySpend(n, DELTA)
    event = sampled_round()
    late = np.arange(n) >= 10  # devices 10.. become eligible only from round 5
    for t in range(500):
        eligible = spend.devices_within_cap(event, cap) & (~late | (t >= 5))
        if not eligible.any():
            if t >= 5:
                break
            continue  # a skipped round: nothing released, nothing charged
        spend.charge(t, event, eligible)
    assert t < 499
    eps = spend.device_epsilons()
    assert np.all(eps <= cap)
    counts = spend.device_counts()[:, 0]
    for c in np.unique(counts):  # each device stopped exactly where one more round passes cap
        nxt = epsilon_of(dp_accounting.SelfComposedDpEvent(event, int(c) + 1), DELTA)
        assert nxt > cap
    assert counts[0] == counts[10] > 0  # late devices caught up after the early ones stopped
    # the run-level ledger covers the worst case: every round charged
    assert spend.epsilon() >= eps.max()


def test_json_round_trip_holds_counts_not_cohorts(tmp_path) -> None:
    n = 1000
    spend = PrivacySpend(n, DELTA, "rdp")
    spend.charge("popularity", dp_accounting.GaussianDpEvent(5.0), np.arange(0, n, 2))
    for t in range(6):
        spend.charge(t, sampled_round(), np.arange(0, n - 100 * t))
    spend.charge(6, dp_accounting.PoissonSampledDpEvent(Q, dp_accounting.GaussianDpEvent(0.8)))
    path = spend.save(tmp_path / "spend.json")
    data = json.loads(path.read_text())
    assert set(data) == {
        "format", "n_devices", "delta", "accountant", "rounds_name", "signatures", "releases",
        "profiles",
    }  # fmt: skip
    assert all(set(p) == {"counts", "devices"} for p in data["profiles"])
    back = spend_from_json(path.read_text())
    np.testing.assert_array_equal(back.device_counts(), spend.device_counts())
    assert back.ledger() == spend.ledger()
    assert back.epsilon() == spend.epsilon()
    assert back.device_epsilon(1) == spend.device_epsilon(1) < spend.device_epsilon(0)


def test_non_private_release_and_validation() -> None:
    spend = PrivacySpend(5, DELTA)
    spend.charge("raw", dp_accounting.NonPrivateDpEvent(), [1])
    assert math.isinf(spend.epsilon()) and math.isinf(spend.device_epsilon(1))
    assert spend.device_epsilon(0) == 0.0
    with pytest.raises(PprError, match="already charged"):
        spend.charge("raw", sampled_round())
    with pytest.raises(PprError, match=r"device ids must lie in \[0, 5\)"):
        spend.charge(0, sampled_round(), [7])
    spend.charge(0, sampled_round())
    with pytest.raises(PprError, match="round 0 was already charged"):
        spend.charge(0, sampled_round())

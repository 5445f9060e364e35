"""Our ε equals fresh dp_accounting accountants; calibration meets the target and is tight."""

import math

import dp_accounting
import pytest
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from ppr.errors import ConfigError
from ppr.privacy import (
    PLD_INTERVAL,
    RDP_ORDERS,
    calibrate_noise_multiplier,
    canonical_event,
    dpfedavg_event,
    epsilon_of,
    gaussian_epsilon,
    quiet_absl,
    realized_rounds_event,
)

CASES = [(1.0, 0.1, 100, 1e-5), (0.8, 0.02, 500, 1e-6), (3.0, 1.0, 20, 1e-4)]


def fresh_rdp(event, delta):
    acc = rdp_privacy_accountant.RdpAccountant(list(RDP_ORDERS))
    with quiet_absl():
        return acc.compose(event).get_epsilon(delta)


def fresh_pld(event, delta):
    acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=PLD_INTERVAL)
    return acc.compose(event).get_epsilon(delta)


def test_event_structure() -> None:
    ev = dpfedavg_event(1.5, 0.1, 30)
    assert ev == dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(1.5)), 30
    )
    assert dpfedavg_event(1.5, 1.0, 30) == dp_accounting.SelfComposedDpEvent(
        dp_accounting.GaussianDpEvent(1.5), 30
    )


@pytest.mark.parametrize(("sigma", "q", "rounds", "delta"), CASES)
def test_rdp_epsilon_matches_fresh_accountant(sigma, q, rounds, delta) -> None:
    ev = dpfedavg_event(sigma, q, rounds)
    ours = epsilon_of(ev, delta, "rdp")
    assert ours == pytest.approx(fresh_rdp(ev, delta), abs=1e-6)
    # the finer grid is never looser than dp_accounting's default orders
    default = rdp_privacy_accountant.RdpAccountant()
    with quiet_absl():
        assert ours <= default.compose(ev).get_epsilon(delta) + 1e-12


@pytest.mark.parametrize(("sigma", "q", "rounds", "delta"), CASES[:2])
def test_pld_epsilon_matches_fresh_accountant(sigma, q, rounds, delta) -> None:
    ev = dpfedavg_event(sigma, q, rounds)
    assert epsilon_of(ev, delta, "pld") == pytest.approx(fresh_pld(ev, delta), abs=1e-6)


def test_grouped_realized_rounds_equal_round_by_round_composition() -> None:
    sigmas = [1.0, 1.0, 0.7, 1.0, 0.7, 1.0]
    grouped = realized_rounds_event(sigmas, 0.2)
    acc = rdp_privacy_accountant.RdpAccountant(list(RDP_ORDERS))
    for s in sigmas:  # the slow way, as reference
        acc.compose(dpfedavg_event(s, 0.2, 1))
    assert epsilon_of(grouped, 1e-5, "rdp") == pytest.approx(acc.get_epsilon(1e-5), abs=1e-9)
    assert isinstance(grouped, dp_accounting.ComposedDpEvent) and len(grouped.events) == 2


@pytest.mark.parametrize(
    ("target", "q", "rounds", "accountant"),
    [
        (1.0, 0.1, 50, "rdp"),
        (4.0, 0.05, 200, "rdp"),
        (8.0, 1.0, 10, "rdp"),
        (2.0, 0.1, 100, "pld"),
        (8.0, 1.0, 10, "pld"),
    ],
)
def test_calibrated_sigma_reproduces_target(target, q, rounds, accountant) -> None:
    delta = 1e-5
    sigma = calibrate_noise_multiplier(target, delta, q, rounds, accountant)
    eps = epsilon_of(dpfedavg_event(sigma, q, rounds), delta, accountant)
    assert 0.99 * target <= eps <= target
    # tight: 0.1 % less noise already misses the target (checked by a fresh accountant)
    fresh = fresh_pld if accountant == "pld" else fresh_rdp
    assert fresh(dpfedavg_event(sigma / 1.001, q, rounds), delta) > target


def test_calibration_with_a_popularity_event_in_the_ledger() -> None:
    target, delta, q, rounds = 3.0, 1e-5, 0.1, 100
    pop = dp_accounting.GaussianDpEvent(8.0)
    sigma = calibrate_noise_multiplier(target, delta, q, rounds, "rdp", [pop])
    whole = dp_accounting.ComposedDpEvent([pop, dpfedavg_event(sigma, q, rounds)])
    eps = epsilon_of(whole, delta, "rdp")
    assert 0.99 * target <= eps <= target
    # the popularity release costs something: training alone needs less noise
    assert sigma > calibrate_noise_multiplier(target, delta, q, rounds, "rdp")


def test_infinite_epsilon_means_no_noise() -> None:
    assert calibrate_noise_multiplier(float("inf"), 1e-5, 0.1, 10) == 0.0


def test_infeasible_target_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="already spend epsilon"):
        calibrate_noise_multiplier(1.0, 1e-5, 0.1, 10, "rdp", [dp_accounting.GaussianDpEvent(0.5)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delta": 0.0}, "`delta` must be in (0, 1). Found 0."),
        ({"sampling_rate": 1.5}, "`sampling_rate` must be in (0, 1]. Found 1.5."),
        ({"rounds": 0}, "`rounds` must be an integer >= 1. Found 0."),
        ({"accountant": "gdp"}, "`accountant` must be one of 'rdp', 'pld'. Found 'gdp'."),
        ({"target_epsilon": -1.0}, "`target_epsilon` must be positive. Found -1."),
    ],
)
def test_calibration_validation(kwargs, message) -> None:
    args = {"target_epsilon": 1.0, "delta": 1e-5, "sampling_rate": 0.1, "rounds": 10}
    args.update(kwargs)
    with pytest.raises(ConfigError) as info:
        calibrate_noise_multiplier(**args)
    assert str(info.value) == message


def test_pld_is_the_default_and_equals_the_exact_gaussian_at_q_1() -> None:
    ev = dpfedavg_event(5.2, 1.0, 80)
    assert epsilon_of(ev, 1e-4) == epsilon_of(ev, 1e-4, "pld")
    assert epsilon_of(ev, 1e-4) == pytest.approx(7.347476, abs=1e-5)  # reference figure
    # T Gaussian rounds are one Gaussian of σ/√T; its exact ε (Balle and Wang 2018)
    assert gaussian_epsilon(5.2 / math.sqrt(80), 1e-4) == pytest.approx(7.347476, abs=1e-5)
    assert epsilon_of(ev, 1e-4, "rdp") == pytest.approx(8.006, abs=1e-3)


def test_pld_calibration_needs_less_noise_than_rdp() -> None:
    for target, lo, hi in [(1.0, 28.3, 28.7), (8.0, 4.80, 4.92)]:
        pld = calibrate_noise_multiplier(target, 1e-4, 1.0, 80)
        rdp = calibrate_noise_multiplier(target, 1e-4, 1.0, 80, "rdp")
        assert lo <= pld <= hi
        assert 0.90 * rdp <= pld <= 0.94 * rdp


def test_canonical_form_is_equivalent() -> None:
    pop = dp_accounting.GaussianDpEvent(3.0)
    rounds = dpfedavg_event(20.0, 1.0, 40)
    sampled = dpfedavg_event(1.1, 0.1, 5)
    whole = dp_accounting.ComposedDpEvent([pop, rounds, dp_accounting.NoOpDpEvent(), sampled])
    canon = canonical_event(whole)
    # Gaussians merge exactly: 1/σ_eff² = 1/9 + 40/400; identical sampled rounds keep count=
    assert canon == dp_accounting.ComposedDpEvent(
        [
            dp_accounting.GaussianDpEvent(1.0 / math.sqrt(1 / 9 + 40 / 400)),
            sampled,
        ]
    )
    # the same ε as fresh accountants composing the raw events one by one
    assert epsilon_of(whole, 1e-5, "rdp") == pytest.approx(fresh_rdp(whole, 1e-5), rel=1e-9)
    assert epsilon_of(whole, 1e-5) == pytest.approx(fresh_pld(whole, 1e-5), rel=1e-4)
    assert math.isinf(
        epsilon_of(dp_accounting.ComposedDpEvent([whole, dp_accounting.NonPrivateDpEvent()]), 1e-5)
    )
    assert epsilon_of(dp_accounting.ComposedDpEvent([]), 1e-5) == 0.0

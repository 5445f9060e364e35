"""Independent cross-check: dp_accounting's PLD ε lies inside prv-accountant's error bounds.

prv-accountant (Gopi, Lee, Wutschitz 2021) is a separate implementation (privacy random variables,
its own discretization and FFT composition). Its ``compute_epsilon`` returns (lower, estimate,
upper) with the upper - lower width set by ``eps_error``; the true ε lies between them.
"""

import pytest
from prv_accountant import PRVAccountant
from prv_accountant.privacy_random_variables import (
    GaussianMechanism,
    PoissonSubsampledGaussianMechanism,
)

from ppr.privacy import dpfedavg_event, epsilon_of

CASES = [(5.2, 1.0, 80, 1e-4), (2.0, 0.05, 200, 1e-5), (1.5, 0.1, 50, 1e-5)]


def prv_bounds(sigma: float, q: float, rounds: int, delta: float) -> tuple[float, float, float]:
    prv = (
        GaussianMechanism(noise_multiplier=sigma)
        if q == 1.0
        else PoissonSubsampledGaussianMechanism(noise_multiplier=sigma, sampling_probability=q)
    )
    acc = PRVAccountant(
        prvs=[prv], max_self_compositions=[rounds], eps_error=0.01, delta_error=delta / 1000
    )
    return acc.compute_epsilon(delta=delta, num_self_compositions=[rounds])


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("sigma", "q", "rounds", "delta"), CASES)
def test_pld_epsilon_is_inside_prv_accountant_bounds(sigma, q, rounds, delta) -> None:
    lower, _estimate, upper = prv_bounds(sigma, q, rounds, delta)
    assert upper - lower <= 0.05  # the bounds are narrow enough to mean something
    ev = dpfedavg_event(sigma, q, rounds)
    ours = epsilon_of(ev, delta, "pld")
    assert lower <= ours <= upper, (lower, ours, upper)
    # RDP is a valid but loose bound: above the true ε, outside the band (the check can fail)
    assert epsilon_of(ev, delta, "rdp") > upper

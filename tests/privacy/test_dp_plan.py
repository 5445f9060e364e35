"""δ rule, budget split and the trainer-facing plan."""

import math

import dp_accounting
import pytest

from ppr.config import PrivacyConfig
from ppr.errors import ConfigError
from ppr.privacy import (
    dpfedavg_event,
    epsilon_of,
    plan_privacy,
    popularity_noise_for_share,
    resolve_delta,
)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, 1e-4), (80, 1e-4), (600, 1e-4), (943, 1e-4), (1000, 1e-4), (1001, 1e-5), (6040, 1e-5)],
)
def test_default_delta(n: int, expected: float) -> None:
    d = resolve_delta(0.0, n)
    assert d == expected and d <= min(1e-4, 1 / (10 * n))


def test_delta_above_the_floor_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_delta(0.01, 943)
    assert str(info.value) == (
        "`privacy.delta` must be at most min(1e-4, 1/(10 N)) = 0.0001 for N = 943 users (a "
        "larger δ allows releasing some user's data outright; 0 picks 0.0001). Found 0.01."
    )
    with pytest.raises(ConfigError, match=r"1/\(10 N\)\) = 1.66e-05 for N = 6040"):
        resolve_delta(1e-4, 6040)
    with pytest.raises(ConfigError, match=r"Found 0\.0005"):
        resolve_delta(5e-4, 10)  # the absolute cap: 1/(10 N) = 0.01 would allow it
    assert resolve_delta(1e-5, 943) == 1e-5
    assert resolve_delta(1e-4, 1000) == 1e-4  # exactly at the bound


def test_one_user_dp_run_is_refused() -> None:
    cfg = PrivacyConfig(epsilon=1.0)
    with pytest.raises(ConfigError) as info:
        plan_privacy(cfg, 1, 1.0, 10, include_popularity=False)
    assert "at least 20 devices" in str(info.value) and str(info.value).endswith("Found N = 1.")
    with pytest.raises(ConfigError, match="Found N = 19"):
        plan_privacy(cfg, 19, 1.0, 10, include_popularity=False)
    assert plan_privacy(cfg, 20, 1.0, 10, include_popularity=False).delta == 1e-4
    # without DP the population does not matter
    assert plan_privacy(PrivacyConfig(), 1, 1.0, 10, include_popularity=False).delta == 1e-4


def test_infinite_epsilon_plan_is_empty() -> None:
    plan = plan_privacy(PrivacyConfig(), 943, 0.1, 30, include_popularity=True)
    assert plan.noise_multiplier == 0.0 and plan.popularity_noise_multiplier == 0.0
    assert len(plan.ledger) == 0 and math.isinf(plan.epsilon_target)
    assert plan.delta == 1e-4


def test_popularity_share_alone_meets_its_part() -> None:
    for accountant in ("pld", "rdp"):
        sigma = popularity_noise_for_share(2.0, 1e-4, 0.1, accountant)
        eps = epsilon_of(dp_accounting.GaussianDpEvent(sigma), 1e-5, accountant)
        assert 0.99 * 0.2 <= eps <= 0.2


@pytest.mark.parametrize("include_popularity", [True, False])
def test_plan_meets_the_whole_budget(include_popularity: bool) -> None:
    cfg = PrivacyConfig(epsilon=2.0, popularity_share=0.1, popularity_max_items=50)
    plan = plan_privacy(cfg, 943, 0.1, 50, include_popularity=include_popularity)
    eps = plan.ledger.epsilon(plan.delta, plan.accountant)
    assert 0.99 * 2.0 <= eps <= 2.0
    # what the filter needs: the planned round and popularity events
    assert plan.round_event == dp_accounting.PoissonSampledDpEvent(
        0.1, dp_accounting.GaussianDpEvent(plan.noise_multiplier)
    )
    assert (plan.sampling_rate, plan.rounds, plan.private) == (0.1, 50, True)
    names = ("popularity", "dpfedavg") if include_popularity else ("dpfedavg",)
    assert plan.ledger.names() == names
    assert plan.ledger.get("dpfedavg").event == dpfedavg_event(plan.noise_multiplier, 0.1, 50)
    if include_popularity:
        assert plan.ledger.get("popularity").event == dp_accounting.GaussianDpEvent(
            plan.popularity_noise_multiplier
        )
        assert plan.popularity_event == plan.ledger.get("popularity").event
        alone = epsilon_of(plan.ledger.get("popularity").event, 0.1 * plan.delta, plan.accountant)
        assert alone <= 0.2 + 1e-9
    else:
        assert plan.popularity_noise_multiplier == 0.0


def test_plan_refuses_zero_share_with_popularity() -> None:
    cfg = PrivacyConfig(epsilon=2.0, popularity_share=0.0)
    with pytest.raises(ConfigError, match="popularity_share` must be positive"):
        plan_privacy(cfg, 943, 0.1, 50, include_popularity=True)

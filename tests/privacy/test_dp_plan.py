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


@pytest.mark.parametrize(("n", "expected"), [(943, 1e-4), (1000, 1e-4), (6040, 1e-5), (1, 0.1)])
def test_default_delta(n: int, expected: float) -> None:
    d = resolve_delta(0.0, n)
    assert d == expected and d < 1 / n


def test_delta_at_or_above_one_over_n_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_delta(0.01, 943)
    assert str(info.value) == (
        "`privacy.delta` must be below 1/N = 0.00106 (N = 943 users). Found 0.01."
    )
    with pytest.raises(ConfigError, match="must be below 1/N"):
        resolve_delta(1 / 943, 943)
    assert resolve_delta(1e-5, 943) == 1e-5


def test_infinite_epsilon_plan_is_empty() -> None:
    plan = plan_privacy(PrivacyConfig(), 943, 0.1, 30, include_popularity=True)
    assert plan.noise_multiplier == 0.0 and plan.popularity_noise_multiplier == 0.0
    assert len(plan.ledger) == 0 and math.isinf(plan.epsilon_target)
    assert plan.delta == 1e-4


def test_popularity_share_alone_meets_its_part() -> None:
    sigma = popularity_noise_for_share(2.0, 1e-4, 0.1)
    eps = epsilon_of(dp_accounting.GaussianDpEvent(sigma), 1e-5)
    assert 0.99 * 0.2 <= eps <= 0.2


@pytest.mark.parametrize("include_popularity", [True, False])
def test_plan_meets_the_whole_budget(include_popularity: bool) -> None:
    cfg = PrivacyConfig(epsilon=2.0, popularity_share=0.1, popularity_max_items=50)
    plan = plan_privacy(cfg, 943, 0.1, 50, include_popularity=include_popularity)
    eps = plan.ledger.epsilon(plan.delta, plan.accountant)
    assert 0.99 * 2.0 <= eps <= 2.0
    names = ("popularity", "dpfedavg") if include_popularity else ("dpfedavg",)
    assert plan.ledger.names() == names
    assert plan.ledger.get("dpfedavg").event == dpfedavg_event(plan.noise_multiplier, 0.1, 50)
    if include_popularity:
        assert plan.ledger.get("popularity").event == dp_accounting.GaussianDpEvent(
            plan.popularity_noise_multiplier
        )
        alone = epsilon_of(plan.ledger.get("popularity").event, 0.1 * plan.delta)
        assert alone <= 0.2 + 1e-9
    else:
        assert plan.popularity_noise_multiplier == 0.0


def test_plan_refuses_zero_share_with_popularity() -> None:
    cfg = PrivacyConfig(epsilon=2.0, popularity_share=0.0)
    with pytest.raises(ConfigError, match="popularity_share` must be positive"):
        plan_privacy(cfg, 943, 0.1, 50, include_popularity=True)

"""A cold calibration of one sweep point (ε cache cleared) lands on the target ε from below and
composes the ledger the run will hold. Its speed is measured in ``benchmarks/calibration.py``
(figures in BENCHMARKS.md), never in a timed unit test.
"""

import pytest

from ppr.config import PrivacyConfig
from ppr.privacy import clear_cache, dpfedavg_event, epsilon_of, plan_privacy


@pytest.mark.parametrize(
    ("q", "rounds", "with_popularity"),
    [(1.0, 80, False), (1.0, 80, True), (0.1, 200, False)],
)
def test_a_cold_calibration_hits_the_target_from_below(q, rounds, with_popularity) -> None:
    cfg = PrivacyConfig(epsilon=1.0, delta=1e-4, accountant="pld", popularity_share=0.5)
    clear_cache()
    plan = plan_privacy(cfg, 943, q, rounds, include_popularity=with_popularity)
    assert plan.ledger.names() == (("popularity",) if with_popularity else ()) + ("dpfedavg",)
    eps = plan.ledger.epsilon(1e-4, "pld")
    assert 0.99 <= eps <= 1.0
    if not with_popularity:
        assert epsilon_of(dpfedavg_event(plan.noise_multiplier, q, rounds), 1e-4) == eps

"""From the config to noise multipliers: δ, the popularity budget split, and the planned ledger.

Rules (documented choices):

* δ: ``privacy.delta = 0`` picks the largest power of ten ``<= 1/(10 N)`` (N = number of users;
  ML-100K, N = 943 -> 1e-4). A δ ``>= 1/N`` is refused: it would allow releasing one user's data
  outright with probability δ per user.
* Popularity split: the DP popularity counts get ``σ_pop`` such that that release *alone* has
  ``ε_pop = share·ε`` at ``δ·share``. The training σ is then calibrated with the popularity
  event composed into the same ledger, so the WHOLE ledger meets ``(ε, δ)`` (composition under
  the accountant is tighter than adding budgets, so training gets slightly more than
  ``(1 - share)·ε``).
* ε = inf: no DP, noise multipliers 0, an empty ledger.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import dp_accounting

from ppr.config import PrivacyConfig
from ppr.errors import ConfigError
from ppr.privacy._checks import check_count, check_delta, check_positive, check_rate, fmt
from ppr.privacy.accounting import calibrate_event, calibrate_noise_multiplier, check_accountant
from ppr.privacy.events import dpfedavg_event
from ppr.privacy.ledger import PrivacyLedger


class PrivacyPlan(NamedTuple):
    """What the trainer needs before round 1. ``ledger`` holds the *planned* releases."""

    noise_multiplier: float
    popularity_noise_multiplier: float
    delta: float
    epsilon_target: float
    ledger: PrivacyLedger
    accountant: str


def default_delta(n_users: int) -> float:
    """The largest power of ten ``<= 1/(10 N)``."""
    check_count("n_users", n_users)
    exponent = math.floor(math.log10(1.0 / (10.0 * n_users)) + 1e-12)
    return float(10.0**exponent)


def resolve_delta(delta: float, n_users: int) -> float:
    """``delta`` if it is in ``(0, 1/N)``; :func:`default_delta` when it is 0; else an error."""
    check_count("n_users", n_users)
    if delta == 0:
        return default_delta(n_users)
    if not 0.0 < delta < 1.0:
        raise ConfigError(f"`privacy.delta` must be in (0, 1). Found {fmt(float(delta))}.")
    bound = 1.0 / n_users
    if delta >= bound:
        raise ConfigError(
            f"`privacy.delta` must be below 1/N = {bound:.3g} (N = {n_users} users). "
            f"Found {fmt(float(delta))}."
        )
    return float(delta)


def popularity_noise_for_share(
    epsilon_total: float, delta: float, share: float, accountant: str = "rdp"
) -> float:
    """σ_pop such that ``GaussianDpEvent(σ_pop)`` alone has ε = ``share·ε_total`` at δ·share."""
    check_positive("epsilon_total", epsilon_total)
    check_delta("delta", delta)
    if not 0.0 < share < 1.0:
        raise ConfigError(f"`privacy.popularity_share` must be in (0, 1). Found {fmt(share)}.")
    return calibrate_event(
        lambda s: dp_accounting.GaussianDpEvent(s) if s > 0 else dp_accounting.NonPrivateDpEvent(),
        share * float(epsilon_total),
        share * float(delta),
        accountant,
    )


def plan_privacy(
    cfg_privacy: PrivacyConfig,
    n_users: int,
    sampling_rate: float,
    rounds: int,
    include_popularity: bool,
) -> PrivacyPlan:
    """Calibrate the run's noise so its planned ledger meets ``(privacy.epsilon, δ)``.

    With ``include_popularity`` the ledger gets a ``popularity`` entry (DP item counts, see
    :mod:`ppr.privacy.popularity`) before the ``dpfedavg`` entry (T rounds of DP-FedAvg).
    """
    check_rate("sampling_rate", sampling_rate)
    check_count("rounds", rounds)
    accountant = cfg_privacy.accountant
    check_accountant(accountant)
    delta = resolve_delta(cfg_privacy.delta, n_users)
    epsilon = float(cfg_privacy.epsilon)
    if math.isinf(epsilon):
        return PrivacyPlan(0.0, 0.0, delta, math.inf, PrivacyLedger(), accountant)
    check_positive("privacy.epsilon", epsilon)

    ledger = PrivacyLedger()
    pop_sigma = 0.0
    if include_popularity:
        share = cfg_privacy.popularity_share
        if share <= 0:
            raise ConfigError(
                "`privacy.popularity_share` must be positive when the DP popularity prior is "
                f"released under a finite epsilon. Found {fmt(float(share))}."
            )
        pop_sigma = popularity_noise_for_share(epsilon, delta, share, accountant)
        m = cfg_privacy.popularity_max_items
        ledger = ledger.add(
            "popularity",
            dp_accounting.GaussianDpEvent(pop_sigma),
            f"DP item-popularity counts: each device counts <= {m} distinct items once, "
            f"Gaussian noise std {pop_sigma:.4g}·sqrt({m}) per count",
        )
    sigma = calibrate_noise_multiplier(
        epsilon, delta, sampling_rate, rounds, accountant, [e.event for e in ledger.entries]
    )
    ledger = ledger.add(
        "dpfedavg",
        dpfedavg_event(sigma, sampling_rate, rounds),
        f"DP-FedAvg: {rounds} rounds, Poisson sampling q = {sampling_rate:g}, clip "
        f"C = {cfg_privacy.clip_norm:g}, Gaussian noise σ·C = {sigma * cfg_privacy.clip_norm:.4g} "
        f"on the sum ({cfg_privacy.noise})",
    )
    return PrivacyPlan(sigma, pop_sigma, delta, epsilon, ledger, accountant)

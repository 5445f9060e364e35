"""From the config to noise multipliers: δ, the popularity budget split, and the planned ledger.

Rules (documented choices):

* δ floor (:func:`resolve_delta`): δ must be ``<= min(MAX_DELTA, 1/(10 N))`` with
  :data:`MAX_DELTA` = 1e-4 and N the number of devices (users). (ε, δ)-DP allows a mechanism that
  publishes one random user's data outright with probability ~N·δ; ``δ <= 1/(10 N)`` keeps that
  below 10 %, and the absolute cap 1e-4 keeps small populations from getting a large δ (a
  one-user data set used to get δ = 0.1). ``privacy.delta = 0`` picks the largest power of ten
  under that bound: 1e-4 for N <= 1000 (ML-100K's 943 users, the synthetic default's 600), 1e-5
  for ML-1M's 6040.
* Population floor (:func:`check_population`, applied by :func:`plan_privacy` when ε is
  finite): user-level DP needs at least :data:`MIN_DP_POPULATION` = 20 devices. DP hides one
  device among the others; by group privacy a group of k devices gets only ~kε, so with a handful
  of devices the guarantee about the group that *is* the data set is void, and the noise that
  hides one device swamps the signal of the few others anyway.
* Popularity split: the DP popularity counts get ``σ_pop`` such that that release *alone* has
  ``ε_pop = share·ε`` at ``δ·share``. The training σ is then calibrated with the popularity
  event composed into the same ledger, so the WHOLE ledger meets ``(ε, δ)`` (composition under
  the accountant is tighter than adding budgets, so training gets slightly more than
  ``(1 - share)·ε``).
* ε = inf: no DP, noise multipliers 0, an empty ledger.

The :class:`PrivacyPlan` also carries the planned per-round event and the popularity event: the
data-independent quantities a filter (:class:`ppr.privacy.spend.PrivacySpend`) decides on.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import dp_accounting
from dp_accounting import dp_event

from ppr.config import PrivacyConfig
from ppr.errors import ConfigError
from ppr.privacy._checks import check_count, check_delta, check_positive, check_rate, fmt
from ppr.privacy.accounting import calibrate_event, calibrate_noise_multiplier, check_accountant
from ppr.privacy.events import dpfedavg_event, gaussian_rounds_event
from ppr.privacy.ledger import PrivacyLedger

MAX_DELTA = 1e-4
MIN_DP_POPULATION = 20


class PrivacyPlan(NamedTuple):
    """What the trainer needs before round 1. ``ledger`` holds the *planned* releases.

    ``round_event`` is one planned round (``PoissonSampled(q, Gaussian(σ))``; ``NoOpDpEvent``
    without DP) and ``popularity_event`` the planned popularity release (``NoOpDpEvent`` when
    there is none): what :class:`~ppr.privacy.spend.PrivacySpend` charges and filters on.
    """

    noise_multiplier: float
    popularity_noise_multiplier: float
    delta: float
    epsilon_target: float
    ledger: PrivacyLedger
    accountant: str
    sampling_rate: float = 1.0
    rounds: int = 1
    round_event: dp_event.DpEvent = dp_accounting.NoOpDpEvent()
    popularity_event: dp_event.DpEvent = dp_accounting.NoOpDpEvent()

    @property
    def private(self) -> bool:
        return self.noise_multiplier > 0


def max_delta(n_users: int) -> float:
    """The largest δ accepted for ``n_users`` devices: ``min(MAX_DELTA, 1/(10 N))``."""
    check_count("n_users", n_users)
    return min(MAX_DELTA, 1.0 / (10.0 * n_users))


def default_delta(n_users: int) -> float:
    """The largest power of ten ``<= min(1e-4, 1/(10 N))``."""
    exponent = math.floor(math.log10(max_delta(n_users)) + 1e-12)
    return float(10.0**exponent)


def resolve_delta(delta: float, n_users: int) -> float:
    """``delta`` if it is in ``(0, min(1e-4, 1/(10 N))]``; :func:`default_delta` when it is 0.

    Anything larger is a :class:`ConfigError` (see the module docstring for the rule).
    """
    check_count("n_users", n_users)
    if delta == 0:
        return default_delta(n_users)
    if not 0.0 < delta < 1.0:
        raise ConfigError(f"`privacy.delta` must be in (0, 1). Found {fmt(float(delta))}.")
    bound = max_delta(n_users)
    if delta > bound * (1 + 1e-9):
        raise ConfigError(
            f"`privacy.delta` must be at most min(1e-4, 1/(10 N)) = {bound:.3g} for N = "
            f"{n_users} users (a larger δ allows releasing some user's data outright; 0 picks "
            f"{default_delta(n_users):g}). Found {fmt(float(delta))}."
        )
    return float(delta)


def check_population(n_users: int) -> None:
    """Refuse user-level DP over fewer than :data:`MIN_DP_POPULATION` devices."""
    check_count("n_users", n_users)
    if n_users < MIN_DP_POPULATION:
        raise ConfigError(
            f"a finite `privacy.epsilon` needs at least {MIN_DP_POPULATION} devices for "
            "user-level DP to mean anything (one device is hidden among the others); set "
            f"`privacy.epsilon = inf` or use more users. Found N = {n_users}."
        )


def popularity_noise_for_share(
    epsilon_total: float, delta: float, share: float, accountant: str = "pld"
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

    ``n_users`` is the number of devices that may take part (the population N of the δ and
    population floors).

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
        return PrivacyPlan(
            0.0, 0.0, delta, math.inf, PrivacyLedger(), accountant, float(sampling_rate), rounds
        )
    check_positive("privacy.epsilon", epsilon)
    check_population(n_users)

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
    pop_event = ledger.get("popularity").event if include_popularity else dp_event.NoOpDpEvent()
    return PrivacyPlan(
        sigma,
        pop_sigma,
        delta,
        epsilon,
        ledger,
        accountant,
        float(sampling_rate),
        int(rounds),
        gaussian_rounds_event(sigma, sampling_rate),
        pop_event,
    )

"""Epsilon from the accountant, and noise calibration: the only sources of ε in ppr.

Accountants (``dp_accounting`` 0.6):

* ``"rdp"``: :class:`RdpAccountant` on :data:`RDP_ORDERS`, dp_accounting's default orders plus a
  finer grid (half-steps between the default fractional orders, a few orders near 1, every 4th
  integer to 128 and every 16th to 256, and 2048/4096), which tightens ε by up to ~0.2% at
  about twice the cost (~0.2 s for q=0.1, T=100).
* ``"pld"``: :class:`PLDAccountant` with ``value_discretization_interval`` :data:`PLD_INTERVAL`
  (1e-4): tighter than RDP (ε about 10% lower for DP-FedAvg), ~0.5 s for q=0.1, T=100.

Compositions always use ``count=`` (SelfComposedDpEvent), never a Python loop. RDP logs absl
warnings for orders whose series do not converge at small σ (those orders are excluded, which is
sound); :func:`quiet_absl` silences them for the duration of one call and restores the verbosity.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import dp_accounting
from absl import logging as absl_logging
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from ppr.errors import ConfigError
from ppr.privacy._checks import check_delta, check_positive, fmt

Accountant = Literal["rdp", "pld"]
ACCOUNTANTS: tuple[str, ...] = ("rdp", "pld")

RDP_ORDERS: tuple[float, ...] = tuple(
    sorted(
        set(rdp_privacy_accountant.DEFAULT_RDP_ORDERS)
        | {1.02, 1.04, 1.06, 1.08}
        | {round(1.05 + i / 10.0, 4) for i in range(99)}
        | set(range(64, 129, 4))
        | set(range(128, 257, 16))
        | {2048, 4096}
    )
)
PLD_INTERVAL = 1e-4
_PLD_COARSE_INTERVAL = 1e-3


@contextlib.contextmanager
def quiet_absl() -> Iterator[None]:
    """Raise absl's verbosity threshold to ERROR inside the block, then restore it."""
    old = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(old)


def check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"`accountant` must be one of 'rdp', 'pld'. Found {accountant!r}.")


def make_accountant(
    accountant: str = "rdp", *, coarse: bool = False
) -> dp_accounting.PrivacyAccountant:
    """A fresh accountant; ``coarse`` gives a faster, looser one (only used to bracket searches)."""
    check_accountant(accountant)
    if accountant == "rdp":
        orders = rdp_privacy_accountant.DEFAULT_RDP_ORDERS if coarse else RDP_ORDERS
        return rdp_privacy_accountant.RdpAccountant(list(orders))
    interval = _PLD_COARSE_INTERVAL if coarse else PLD_INTERVAL
    return pld_privacy_accountant.PLDAccountant(value_discretization_interval=interval)


def epsilon_of(
    event: dp_event.DpEvent, delta: float, accountant: str = "rdp", *, coarse: bool = False
) -> float:
    """ε of ``event`` at ``delta`` (``inf`` for a non-private event, 0 for a no-op)."""
    check_delta("delta", delta)
    acc = make_accountant(accountant, coarse=coarse)
    with quiet_absl():
        return float(acc.compose(event).get_epsilon(float(delta)))


def _coarse_root(
    log_gap: Callable[[float], float], guess: float = 1.0, rel: float = 0.005
) -> float:
    """Approximate root of a decreasing ``log_gap(log σ)`` (Illinois regula falsi in log σ).

    Returns σ; ``inf`` gaps (σ too small to be private) are handled by bisection steps.
    """
    x0 = math.log(guess)
    g0 = log_gap(x0)
    step = math.log(2.0) if g0 > 0 else -math.log(2.0)
    x1, g1 = x0 + step, log_gap(x0 + step)
    while (g0 > 0) == (g1 > 0):  # expand until the signs differ
        if abs(x1) > math.log(1e6):
            raise ConfigError("no noise multiplier in [1e-6, 1e6] meets the target epsilon.")
        step *= 2.0
        x0, g0 = x1, g1
        x1, g1 = x1 + step, log_gap(x1 + step)
    (lo, g_lo), (hi, g_hi) = sorted([(x0, g0), (x1, g1)])  # g_lo > 0 >= g_hi
    side = 0
    while hi - lo > math.log1p(rel):
        if math.isfinite(g_lo) and math.isfinite(g_hi) and g_lo != g_hi:
            x = hi - g_hi * (hi - lo) / (g_hi - g_lo)
            x = min(max(x, lo + 0.01 * (hi - lo)), hi - 0.01 * (hi - lo))
        else:
            x = 0.5 * (lo + hi)
        g = log_gap(x)
        if g == 0:
            return math.exp(x)
        if g > 0:
            lo, g_lo = x, g
            if side == 1:
                g_hi *= 0.5
            side = 1
        else:
            hi, g_hi = x, g
            if side == -1:
                g_lo *= 0.5
            side = -1
    return math.exp(0.5 * (lo + hi))


def calibrate_event(
    make_event: Callable[[float], dp_event.DpEvent],
    target_epsilon: float,
    delta: float,
    accountant: str = "rdp",
    *,
    rtol: float = 1e-3,
) -> float:
    """Smallest σ (within ``rtol`` relative) with ``ε(make_event(σ)) <= target_epsilon``.

    ``make_event`` must give an ε decreasing in σ. A coarse accountant locates σ first (regula
    falsi in log σ / log ε), then ``dp_accounting.calibrate_dp_mechanism`` (Brent's method,
    guaranteed ``ε <= target``) refines on a narrow bracket around it with the fine accountant.
    """
    check_positive("target_epsilon", target_epsilon)
    check_delta("delta", delta)
    check_accountant(accountant)
    log_target = math.log(target_epsilon)

    def coarse_log_gap(log_sigma: float) -> float:
        eps = epsilon_of(make_event(math.exp(log_sigma)), delta, accountant, coarse=True)
        return (math.log(eps) if eps > 0 else -math.inf) - log_target

    with quiet_absl():
        guess = _coarse_root(coarse_log_gap)
        for width in (1.01, 1.05, 1.25, 2.0, 8.0):
            lo, hi = guess / width, guess * width
            try:
                sigma = dp_accounting.calibrate_dp_mechanism(
                    lambda: make_accountant(accountant),
                    make_event,
                    float(target_epsilon),
                    float(delta),
                    bracket_interval=dp_accounting.ExplicitBracketInterval(lo, hi),
                    tol=rtol * lo,
                )
            except ValueError:  # the bracket did not contain the root: widen it
                continue
            return float(sigma)
    raise ConfigError(
        f"could not calibrate a noise multiplier for epsilon = {fmt(float(target_epsilon))}."
    )


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sampling_rate: float,
    rounds: int,
    accountant: str = "rdp",
    extra_events: Sequence[dp_event.DpEvent] = (),
) -> float:
    """σ of DP-FedAvg so that ``extra_events`` + T rounds meet ``(target_epsilon, delta)``.

    The returned σ gives a whole-ledger ε ``<= target_epsilon`` and within 1% of it (in practice
    within ~0.05%). ``target_epsilon = inf`` returns 0 (no DP). Raises :class:`ConfigError` when
    the extra events alone already spend the target (no σ can meet it).
    """
    from ppr.privacy.events import dpfedavg_event

    check_delta("delta", delta)
    check_accountant(accountant)
    if math.isinf(target_epsilon) and target_epsilon > 0:
        return 0.0
    check_positive("target_epsilon", target_epsilon)
    dpfedavg_event(1.0, sampling_rate, rounds)  # validates q and T
    extra = list(extra_events)
    if extra:
        spent = epsilon_of(dp_accounting.ComposedDpEvent(extra), delta, accountant)
        if spent >= target_epsilon:
            raise ConfigError(
                f"the other releases in the ledger already spend epsilon = {spent:.4g} at "
                f"delta = {fmt(float(delta))}, which is not below the target "
                f"{fmt(float(target_epsilon))}; raise the target or shrink their share."
            )

    def make_event(sigma: float) -> dp_event.DpEvent:
        training = dpfedavg_event(max(sigma, 0.0), sampling_rate, rounds)
        return dp_accounting.ComposedDpEvent([*extra, training]) if extra else training

    return calibrate_event(make_event, target_epsilon, delta, accountant)

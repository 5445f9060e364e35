"""Epsilon from the accountant, and noise calibration: the only sources of ε in ppr.

Accountants (``dp_accounting`` 0.6):

* ``"pld"`` (the default): :class:`PLDAccountant` with ``value_discretization_interval``
  :data:`PLD_INTERVAL` (1e-4), pessimistic discretization, so the reported ε is an upper bound
  of the exact ε. It is tight: at q = 1 it equals the analytic Gaussian ε (Balle and Wang 2018)
  to ~1e-9, and DP-FedAvg needs 6-10 % less noise than under RDP for the same (ε, δ).
* ``"rdp"``: :class:`RdpAccountant` on :data:`RDP_ORDERS`, dp_accounting's default orders plus a
  finer grid (half-steps between the default fractional orders, a few orders near 1, every 4th
  integer to 128 and every 16th to 256, and 2048/4096). Looser (ε ~9 % higher at q = 1) but
  ~100x faster; kept for comparison and for the literature's figures.

Canonical form. Before an event reaches an accountant it is rewritten into an *equivalent*
composition (:func:`canonical_event`): compositions are flattened, identical events are grouped
into one ``SelfComposedDpEvent(event, count)`` (never a Python loop of compositions), no-ops are
dropped, and all plain Gaussian mechanisms (sensitivity 1) are merged into one Gaussian of
``σ_eff = (Σ_i count_i / σ_i²)^(-1/2)``. The merge is exact, not an approximation: the privacy
loss of a Gaussian mechanism is N(μ, 2μ) with μ = 1/(2σ²), and compositions add the μ's. It makes
PLD accounting of q = 1 runs (T rounds + a popularity release) a single Gaussian PLD. A
``NonPrivateDpEvent`` anywhere makes the whole composition non-private (ε = inf).

ε values are cached (keyed by the canonical JSON of the event, δ and the accountant), so a sweep
or a filter that asks the same question twice pays once; :func:`clear_cache` empties the cache.

Calibration (:func:`calibrate_event`) needs few exact evaluations: a cheap surrogate locates σ
(the analytic Gaussian ε when the canonical event is one Gaussian, else a CLT/GDP approximation
refined with a coarse accountant), then the exact accountant brackets the answer to ``rtol``. For
a single Gaussian the analytic ε is a proven lower bound of the PLD ε, so one PLD evaluation
suffices; otherwise two. Typical times on 2 CPU cores: 0.2-2 s per sweep point.

RDP logs absl warnings for orders whose series do not converge at small σ (those orders are
excluded, which is sound); :func:`quiet_absl` silences them for the duration of one call.

Distributed discrete Gaussian releases (:mod:`ppr.privacy.ddg`) have no dp_accounting event: any
composition holding one is composed entirely in RDP on :data:`RDP_ORDERS` (the DDG parts by the
paper's bound, the rest by the RdpAccountant), whatever ``accountant`` says.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import dp_accounting
from absl import logging as absl_logging
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from ppr.errors import ConfigError
from ppr.privacy._checks import check_delta, check_positive, fmt
from ppr.privacy.ddg import contains_ddg, rdp_composition_epsilon

Accountant = Literal["rdp", "pld"]
ACCOUNTANTS: tuple[str, ...] = ("rdp", "pld")
DEFAULT_ACCOUNTANT = "pld"

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
_CACHE_SIZE = 4096
_CACHE: OrderedDict[tuple, float] = OrderedDict()


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
    accountant: str = DEFAULT_ACCOUNTANT, *, coarse: bool = False
) -> dp_accounting.PrivacyAccountant:
    """A fresh accountant; ``coarse`` gives a faster, looser one (only used to bracket searches)."""
    check_accountant(accountant)
    if accountant == "rdp":
        orders = rdp_privacy_accountant.DEFAULT_RDP_ORDERS if coarse else RDP_ORDERS
        return rdp_privacy_accountant.RdpAccountant(list(orders))
    interval = _PLD_COARSE_INTERVAL if coarse else PLD_INTERVAL
    return pld_privacy_accountant.PLDAccountant(value_discretization_interval=interval)


# ------------------------------------------------------------------------------------------
# canonical form


def event_key(event: dp_event.DpEvent) -> str:
    """A stable string identifying ``event`` (its canonical-order JSON): a dict/cache key."""
    from ppr.privacy.events import event_to_json

    return json.dumps(event_to_json(event), sort_keys=True, separators=(",", ":"))


class _Terms:
    """A composition as: the merged Gaussian precision, and a count per other event."""

    def __init__(self) -> None:
        self.non_private = False
        self.precision = 0.0  # Σ count / σ² of the plain Gaussian mechanisms
        self.counts: dict[str, int] = {}
        self.events: dict[str, dp_event.DpEvent] = {}

    def add(self, event: dp_event.DpEvent, mult: int) -> None:
        if mult == 0 or isinstance(event, dp_event.NoOpDpEvent):
            return
        if isinstance(event, dp_event.NonPrivateDpEvent):
            self.non_private = True
        elif isinstance(event, dp_event.SelfComposedDpEvent):
            self.add(event.event, mult * int(event.count))
        elif isinstance(event, dp_event.ComposedDpEvent):
            for e in event.events:
                self.add(e, mult)
        elif isinstance(event, dp_event.GaussianDpEvent):
            sigma = float(event.noise_multiplier)
            if sigma == 0.0:
                self.non_private = True
            elif math.isfinite(sigma):
                self.precision += mult / (sigma * sigma)
        else:
            if isinstance(event, dp_event.PoissonSampledDpEvent):
                inner = canonical_event(event.event)
                if isinstance(inner, dp_event.NoOpDpEvent):
                    return
                if isinstance(inner, dp_event.NonPrivateDpEvent) and event.sampling_probability:
                    self.non_private = True
                    return
                event = dp_event.PoissonSampledDpEvent(float(event.sampling_probability), inner)
            key = event_key(event)
            self.events.setdefault(key, event)
            self.counts[key] = self.counts.get(key, 0) + mult

    def event(self) -> dp_event.DpEvent:
        if self.non_private:
            return dp_event.NonPrivateDpEvent()
        parts: list[dp_event.DpEvent] = []
        if self.precision > 0:
            parts.append(dp_event.GaussianDpEvent(1.0 / math.sqrt(self.precision)))
        for key, n in self.counts.items():
            e = self.events[key]
            parts.append(e if n == 1 else dp_event.SelfComposedDpEvent(e, n))
        if not parts:
            return dp_event.NoOpDpEvent()
        return parts[0] if len(parts) == 1 else dp_event.ComposedDpEvent(parts)


def canonical_event(event: dp_event.DpEvent) -> dp_event.DpEvent:
    """An equivalent event in canonical form (see the module docstring)."""
    if not isinstance(event, dp_event.DpEvent):
        raise ConfigError(f"not a DpEvent: {event!r}.")
    terms = _Terms()
    terms.add(event, 1)
    return terms.event()


# ------------------------------------------------------------------------------------------
# epsilon


def clear_cache() -> None:
    """Forget every cached ε (for honest timings)."""
    _CACHE.clear()


def _cached_epsilon(event: dp_event.DpEvent, delta: float, accountant: str, coarse: bool) -> float:
    key = (event_key(event), float(delta), accountant, bool(coarse))
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    acc = make_accountant(accountant, coarse=coarse)
    with quiet_absl():
        eps = float(acc.compose(event).get_epsilon(float(delta)))
    _CACHE[key] = eps
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return eps


def epsilon_of(
    event: dp_event.DpEvent,
    delta: float,
    accountant: str = DEFAULT_ACCOUNTANT,
    *,
    coarse: bool = False,
) -> float:
    """ε of ``event`` at ``delta`` (``inf`` for a non-private event, 0 for a no-op)."""
    check_delta("delta", delta)
    check_accountant(accountant)
    canon = canonical_event(event)
    if isinstance(canon, dp_event.NonPrivateDpEvent):
        return math.inf
    if isinstance(canon, dp_event.NoOpDpEvent):
        return 0.0
    if contains_ddg(canon):  # no dp_accounting event for it: the whole composition in RDP
        return rdp_composition_epsilon(canon, delta, RDP_ORDERS)
    return _cached_epsilon(canon, delta, accountant, coarse)


def gaussian_delta(sigma: float, epsilon: float) -> float:
    """Exact δ(ε) of the Gaussian mechanism with sensitivity 1 and noise std ``sigma``.

    Balle and Wang (2018), Theorem 8: ``Φ(1/(2σ) - εσ) - e^ε Φ(-1/(2σ) - εσ)``.
    """
    from scipy.stats import norm

    a = 1.0 / (2.0 * sigma)
    log_second = epsilon + float(norm.logcdf(-a - epsilon * sigma))
    second = math.exp(log_second) if log_second < 700 else math.inf
    return max(float(norm.cdf(a - epsilon * sigma)) - second, 0.0)


def gaussian_epsilon(sigma: float, delta: float) -> float:
    """Exact ε of the Gaussian mechanism (sensitivity 1, std ``sigma``) at ``delta``.

    Used only to *search* (it is a lower bound of the PLD accountant's pessimistic ε, which
    remains the reported figure).
    """
    from scipy.optimize import brentq

    if sigma <= 0:
        return math.inf
    if math.isinf(sigma) or gaussian_delta(sigma, 0.0) <= delta:
        return 0.0
    hi = 1.0
    while gaussian_delta(sigma, hi) > delta:
        hi *= 2.0
        if hi > 1e4:
            return math.inf
    return float(
        brentq(lambda e: gaussian_delta(sigma, e) - delta, 0.0, hi, xtol=1e-13, rtol=1e-15)
    )


def _gdp_mu(event: dp_event.DpEvent) -> float | None:
    """The CLT μ (Dong, Roth, Su 2019) of a canonical composition of (sampled) Gaussians.

    Exact for plain Gaussians; an approximation for Poisson-sampled ones (``q² (e^{1/σ²} - 1)``
    per round). ``None`` when the event has another mechanism in it.
    """
    terms = _Terms()
    terms.add(event, 1)
    if terms.non_private:
        return math.inf
    mu2 = terms.precision
    for key, n in terms.counts.items():
        e = terms.events[key]
        if not (
            isinstance(e, dp_event.PoissonSampledDpEvent)
            and isinstance(e.event, dp_event.GaussianDpEvent)
        ):
            return None
        sigma = float(e.event.noise_multiplier)
        x = 1.0 / (sigma * sigma)
        if x > 700:
            return math.inf
        mu2 += n * float(e.sampling_probability) ** 2 * math.expm1(x)
    return math.sqrt(mu2)


# ------------------------------------------------------------------------------------------
# calibration


def _root(
    log_gap: Callable[[float], float],
    guess: float = 1.0,
    rel: float = 0.005,
    step: float = math.log(2.0),
) -> float:
    """Approximate root of a decreasing ``log_gap(log σ)`` (Illinois regula falsi in log σ).

    Returns σ; ``inf`` gaps (σ too small to be private) are handled by bisection steps.
    """
    x0 = math.log(guess)
    g0 = log_gap(x0)
    if g0 == 0:
        return guess
    step = step if g0 > 0 else -step
    x1, g1 = x0 + step, log_gap(x0 + step)
    while (g0 > 0) == (g1 > 0) and g1 != 0:  # expand until the signs differ
        if abs(x1) > math.log(1e6):
            raise ConfigError("no noise multiplier in [1e-6, 1e6] meets the target epsilon.")
        step *= 2.0
        x0, g0 = x1, g1
        x1, g1 = x1 + step, log_gap(x1 + step)
    if g1 == 0:
        return math.exp(x1)
    (lo, g_lo), (hi, g_hi) = sorted([(x0, g0), (x1, g1)])  # g_lo > 0 >= g_hi
    side = 0
    while hi - lo > math.log1p(rel):
        if math.isfinite(g_lo) and math.isfinite(g_hi) and g_lo != g_hi:
            x = hi - g_hi * (hi - lo) / (g_hi - g_lo)
            x = min(max(x, lo + 0.01 * (hi - lo)), hi - 0.01 * (hi - lo))
        else:
            x = 0.5 * (lo + hi)
        g = log_gap(x)
        if abs(g) <= 0.1 * rel:  # close enough: the caller refines anyway
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


def _log_gap(eps: float, log_target: float) -> float:
    if eps <= 0:
        return -math.inf
    return math.log(eps) - log_target


def _refine(
    fine: Callable[[float], float],
    guess: float,
    target: float,
    rtol: float,
    lower: Callable[[float], float] | None = None,
) -> float:
    """Bracket the smallest σ with ``fine(σ) <= target`` to a ratio ``1 + rtol``; return its top.

    ``lower(σ)``, when given, is a proven lower bound of ``fine(σ)``: where it already exceeds
    the target, the (expensive) ``fine`` evaluation is skipped.
    """
    ratio = 1.0 + rtol
    log_t = math.log(target)
    lo: tuple[float, float] | None = None  # (σ, ε) with ε > target
    hi: tuple[float, float] | None = None  # (σ, ε) with ε <= target
    x, expand, side, n = guess, ratio, 0, 0
    while True:
        n += 1
        if n > 200:
            raise ConfigError(
                f"could not calibrate a noise multiplier for epsilon = {fmt(target)}."
            )
        e = lower(x) if lower is not None else math.nan
        if not e > target:
            e = fine(x)
        if e <= target:
            hi = (x, e) if hi is None or x < hi[0] else hi
            new_side = 1
        else:
            lo = (x, e) if lo is None or x > lo[0] else lo
            new_side = -1
        if lo is not None and hi is not None and hi[0] <= lo[0] * ratio * (1 + 1e-12):
            return hi[0]
        if hi is None:  # walk up, doubling the log-step
            x, expand = lo[0] * expand, expand * expand  # type: ignore[index]
            continue
        if lo is None:  # walk down: first the point that proves hi is tight
            x, expand = hi[0] / expand, expand * expand
            continue
        # bracketed: regula falsi in (log σ, log ε), aimed just above the root, then the proof
        llo, lhi = math.log(lo[0]), math.log(hi[0])
        glo, ghi = _log_gap(lo[1], log_t), _log_gap(hi[1], log_t)
        if new_side == side or not (math.isfinite(glo) and math.isfinite(ghi)) or glo == ghi:
            xr = 0.5 * (llo + lhi)
        else:
            xr = lhi - ghi * (lhi - llo) / (ghi - glo) + 0.25 * math.log(ratio)
        side = new_side
        proof = lhi - math.log(ratio)
        xr = (
            proof
            if xr >= proof
            else min(max(xr, llo + 0.05 * (lhi - llo)), lhi - 0.05 * (lhi - llo))
        )
        x = math.exp(xr)


def calibrate_event(
    make_event: Callable[[float], dp_event.DpEvent],
    target_epsilon: float,
    delta: float,
    accountant: str = DEFAULT_ACCOUNTANT,
    *,
    rtol: float = 1e-3,
) -> float:
    """Smallest σ (within ``rtol`` relative) with ``ε(make_event(σ)) <= target_epsilon``.

    ``make_event`` must give an ε decreasing in σ. The returned σ is checked with the exact
    accountant (``ε <= target``), and σ/(1 + rtol) is proven to exceed the target (by the exact
    accountant, or by the analytic Gaussian ε, a lower bound of the PLD ε).
    """
    check_positive("target_epsilon", target_epsilon)
    check_delta("delta", delta)
    check_accountant(accountant)
    target = float(target_epsilon)
    log_target = math.log(target)

    def fine(sigma: float) -> float:
        return epsilon_of(make_event(sigma), delta, accountant)

    def mu_eps(sigma: float) -> float | None:
        mu = _gdp_mu(canonical_event(make_event(sigma)))
        if mu is None:
            return None
        return gaussian_epsilon(1.0 / mu if mu > 0 else math.inf, delta)

    def single_gaussian(sigma: float) -> bool:
        canon = canonical_event(make_event(sigma))
        return isinstance(canon, dp_event.GaussianDpEvent)

    guess = 1.0
    if mu_eps(1.0) is not None:  # a (sampled) Gaussian family: the GDP surrogate is cheap
        guess = _root(lambda x: _log_gap(mu_eps(math.exp(x)) or 0.0, log_target), rel=1e-9)
    if accountant == "pld" and single_gaussian(guess):
        # the analytic ε is exact and below the PLD's pessimistic ε: aim a hair above the root
        def lower(sigma: float) -> float:
            canon = canonical_event(make_event(sigma))
            if not isinstance(canon, dp_event.GaussianDpEvent):
                return math.nan
            return gaussian_epsilon(float(canon.noise_multiplier), delta) * (1 - 1e-7)

        if single_gaussian(guess * (1 + rtol)) and single_gaussian(guess / (1 + rtol)):
            return _refine(fine, guess * (1 + rtol / 8), target, rtol, lower)

    def coarse_log_gap(log_sigma: float) -> float:
        eps = epsilon_of(make_event(math.exp(log_sigma)), delta, accountant, coarse=True)
        return _log_gap(eps, log_target)

    with quiet_absl():
        step = math.log(1.1) if guess != 1.0 else math.log(2.0)
        coarse = _root(coarse_log_gap, guess, rel=rtol / 4, step=step)
        # the coarse accountant is pessimistic (ε_coarse >= ε_fine): its root is a little high
        return _refine(fine, coarse * (1 + rtol / 8), target, rtol)


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sampling_rate: float,
    rounds: int,
    accountant: str = DEFAULT_ACCOUNTANT,
    extra_events: Sequence[dp_event.DpEvent] = (),
) -> float:
    """σ of DP-FedAvg so that ``extra_events`` + T rounds meet ``(target_epsilon, delta)``.

    The returned σ gives a whole-ledger ε ``<= target_epsilon`` and is within 0.1 % of the
    smallest σ that does. ``target_epsilon = inf`` returns 0 (no DP). Raises
    :class:`ConfigError` when the extra events alone already spend the target (no σ can meet it).
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
        extra_event = dp_accounting.ComposedDpEvent(extra)
        spent = epsilon_of(extra_event, delta, accountant, coarse=True)  # pessimistic: cheap
        if spent >= target_epsilon:
            spent = epsilon_of(extra_event, delta, accountant)
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

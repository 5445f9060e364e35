"""The distributed discrete Gaussian (DDG) mechanism: sampler, privacy bound, calibration.

Kairouz, Liu and Steinke, "The Distributed Discrete Gaussian Mechanism for Federated Learning
with Secure Aggregation" (ICML 2021). Each of ``n`` devices adds an independent discrete Gaussian
share ``N_Z(0, s^2)`` to its integer (scaled, rotated, rounded) update; only the modular sum is
revealed. dp_accounting has no event for this, so it is implemented here once:

* :func:`sample_discrete_gaussian`: the rejection sampler of Canonne, Kamath and Steinke (2020,
  Algorithm 3) from a discrete Laplace proposal, vectorized in NumPy. The proposal and the
  acceptance test use floating point (not the paper's exact rational arithmetic): the output law
  differs from ``N_Z(0, s^2)`` by float rounding of the probabilities only.
* :class:`DistributedDiscreteGaussianDpEvent`: one release of the sum, with the sensitivity on
  the integer grid (after scaling by 1/γ and conditional rounding), the share std, the number
  of shares and the dimension.
* :func:`ddg_zcdp_epsilon`: the paper's Theorem 1 -- the sum of ``n`` shares satisfies
  ``ε²/2``-zCDP, i.e. ``RDP(α) = α ε² / 2`` for every ``α >= 1``, with
  ``ε = min( sqrt(Δ2² / (n s²) + τ d / 2), Δ2 / (sqrt(n) s) + τ Δ1 )`` and
  ``τ = 10 Σ_{k=1}^{n-1} exp(-2 π² s² k / (k + 1))``.
* :func:`ddg_rdp`: under Poisson sampling with rate ``q < 1``, the general upper bound of Zhu and
  Wang (ICML 2019, Theorem 6) for a Poisson-subsampled mechanism with RDP ``ε(·)``, at integer
  orders ``α >= 2`` (other orders are excluded: ``inf``)::

      (1/(α-1)) log[ (1-q)^(α-1) (αq - q + 1) + C(α,2) q² (1-q)^(α-2) e^{ε(2)}
                     + 3 Σ_{l=3}^{α} C(α,l) (1-q)^(α-l) q^l e^{(l-1) ε(l)} ]

  For the Gaussian's ``ε(l) = l / (2σ²)`` this is Mironov et al.'s exact subsampled-Gaussian sum
  with the ``l >= 3`` terms tripled, so as γ -> 0 (the rounding inflation and τ vanish) the DDG
  bound approaches the Gaussian's from above (``tests/privacy/test_ddg.py`` checks both).
* :func:`rdp_composition_epsilon`: a composition holding DDG events is composed entirely in RDP:
  the DDG parts by :func:`ddg_rdp`, everything else by dp_accounting's ``RdpAccountant`` on the
  same orders (its ``_rdp`` vector after ``compose``), converted to ``(ε, δ)`` by
  ``rdp_privacy_accountant.compute_epsilon``. :func:`ppr.privacy.accounting.epsilon_of` routes
  every event that contains a DDG release here, whatever the configured accountant.
* :func:`rounded_l2_bound`: the norm bound of conditional randomized rounding (the paper's
  Theorem 2 / Lemma 29 form): with probability ``>= 1 - β`` an unconditional randomized rounding
  of ``x`` (``||x|| <= c``) in ``d`` dimensions has norm at most
  ``sqrt(min(c² + d/4 + sqrt(2 log(1/β)) (c + sqrt(d)/2), (c + sqrt(d))²))``; the device retries
  until its rounding meets it, so the bound holds exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import attr
import numpy as np
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant
from scipy.special import gammaln, logsumexp

from ppr.errors import ConfigError

__all__ = [
    "DistributedDiscreteGaussianDpEvent",
    "contains_ddg",
    "ddg_rdp",
    "ddg_round_event",
    "ddg_tau",
    "ddg_zcdp_epsilon",
    "rdp_composition_epsilon",
    "rounded_l2_bound",
    "sample_discrete_gaussian",
]


# ------------------------------------------------------------------------------------------
# sampler


def sample_discrete_gaussian(rng: np.random.Generator, sigma: float, size: int) -> np.ndarray:
    """``size`` iid draws of ``N_Z(0, sigma²)`` (``P(x) ∝ exp(-x²/(2σ²))`` on the integers) as
    int64. CKS 2020 Algorithm 3: propose ``Y`` from the discrete Laplace of scale
    ``t = floor(σ) + 1`` (a difference of two geometric variables), accept with probability
    ``exp(-(|Y| - σ²/t)² / (2σ²))``; the acceptance rate is above 0.5 for every σ. The
    geometric and Bernoulli draws are taken from standard exponentials (ziggurat)."""
    size = int(size)
    if sigma < 0 or not math.isfinite(sigma):
        raise ConfigError(f"`sigma` must be finite and non-negative. Found {sigma!r}.")
    if sigma == 0 or size == 0:
        return np.zeros(size, np.int64)
    t = math.floor(sigma) + 1.0
    out = np.empty(size, np.int64)
    todo = np.arange(size)
    while todo.size:
        m = todo.size
        # floor(t E), E ~ Exp(1), is geometric on {0, 1, ...} with P(G >= k) = exp(-k/t); and
        # "accept with probability exp(-a)" is "E' > a" for a fresh E' ~ Exp(1)
        e = rng.standard_exponential((3, m))
        y = np.floor(t * e[0]) - np.floor(t * e[1])
        accept = e[2] > (np.abs(y) - sigma * sigma / t) ** 2 / (2.0 * sigma * sigma)
        out[todo[accept]] = y[accept].astype(np.int64)
        todo = todo[~accept]
    return out


# ------------------------------------------------------------------------------------------
# the event and its bound


@attr.define(frozen=True)
class DistributedDiscreteGaussianDpEvent(dp_event.DpEvent):
    """One release of the sum of ``n_shares`` discrete Gaussian shares of std ``share_stddev``
    each, over ``dim`` integer coordinates, of vectors whose per-device contribution has L2 norm
    ``<= l2_sensitivity`` and L1 norm ``<= l1_sensitivity`` on the integer grid."""

    l2_sensitivity: float
    l1_sensitivity: float
    share_stddev: float
    n_shares: int
    dim: int


def ddg_tau(share_stddev: float, n_shares: int) -> float:
    """``τ = 10 Σ_{k=1}^{n-1} exp(-2π² s² k/(k+1))`` (0 for one share)."""
    k = np.arange(1, max(int(n_shares), 1), dtype=np.float64)
    if k.size == 0:
        return 0.0
    return float(10.0 * np.exp(-2.0 * math.pi**2 * share_stddev**2 * k / (k + 1.0)).sum())


def ddg_zcdp_epsilon(event: DistributedDiscreteGaussianDpEvent) -> float:
    """The ε of KLS Theorem 1 (``ε²/2``-zCDP); ``inf`` without noise. Needs ``s >= 1/2``."""
    s, n = float(event.share_stddev), int(event.n_shares)
    if s <= 0 or n < 1:
        return math.inf
    if s < 0.5:  # outside the theorem's range: no guarantee claimed
        return math.inf
    tau = ddg_tau(s, n)
    d2, d1 = float(event.l2_sensitivity), float(event.l1_sensitivity)
    a = math.sqrt(d2 * d2 / (n * s * s) + 0.5 * tau * int(event.dim))
    b = d2 / (math.sqrt(n) * s) + tau * d1
    return min(a, b)


def _subsampled_rdp(q: float, rdp_of, alpha: float, higher: float = 3.0) -> float:
    """Zhu-Wang general upper bound (module docstring) at an integer ``alpha >= 2``; ``higher``
    is the factor of the ``l >= 3`` terms (3 in the theorem; 1 gives Mironov et al.'s exact
    expression for the Gaussian, which the tests use to check this code). ``rdp_of`` maps an
    array of orders to their RDP."""
    if alpha != int(alpha) or alpha < 2:
        return math.inf
    a = int(alpha)
    lq, l1q = math.log(q), math.log1p(-q)
    ell = np.arange(2, a + 1, dtype=np.float64)
    log_comb = gammaln(a + 1.0) - gammaln(ell + 1.0) - gammaln(a - ell + 1.0)
    terms = log_comb + (a - ell) * l1q + ell * lq + (ell - 1.0) * np.asarray(rdp_of(ell))
    terms[1:] += math.log(higher)
    first = (a - 1) * l1q + math.log1p((a - 1) * q)
    return float(logsumexp(np.concatenate([[first], terms]))) / (a - 1)


def ddg_rdp(
    event: DistributedDiscreteGaussianDpEvent, orders: Sequence[float], q: float = 1.0
) -> np.ndarray:
    """RDP of one DDG release at ``orders``, Poisson-sampled with rate ``q`` (module docstring)."""
    eps = ddg_zcdp_epsilon(event)
    rho = 0.5 * eps * eps
    orders = np.asarray(orders, np.float64)
    if not math.isfinite(rho):
        return np.full(orders.shape, np.inf)
    if q >= 1.0:
        return rho * orders
    if q <= 0.0:
        return np.zeros(orders.shape)
    return np.array([_subsampled_rdp(float(q), lambda a: rho * a, float(o)) for o in orders])


def _ddg_part(event: dp_event.DpEvent) -> tuple[DistributedDiscreteGaussianDpEvent, float] | None:
    """``(ddg, q)`` when ``event`` is a (Poisson-sampled) DDG release, else ``None``."""
    if isinstance(event, DistributedDiscreteGaussianDpEvent):
        return event, 1.0
    if isinstance(event, dp_event.PoissonSampledDpEvent) and isinstance(
        event.event, DistributedDiscreteGaussianDpEvent
    ):
        return event.event, float(event.sampling_probability)
    return None


def contains_ddg(event: dp_event.DpEvent) -> bool:
    """Whether a DDG release appears anywhere in ``event``."""
    if isinstance(event, DistributedDiscreteGaussianDpEvent):
        return True
    if isinstance(event, dp_event.ComposedDpEvent):
        return any(contains_ddg(e) for e in event.events)
    if isinstance(event, dp_event.SelfComposedDpEvent | dp_event.PoissonSampledDpEvent):
        return contains_ddg(event.event)
    return False


def rdp_composition_epsilon(
    canonical: dp_event.DpEvent, delta: float, orders: Sequence[float]
) -> float:
    """ε at ``delta`` of a composition in canonical form (see
    :func:`ppr.privacy.accounting.canonical_event`), composed entirely in RDP."""
    parts = list(canonical.events) if isinstance(canonical, dp_event.ComposedDpEvent) else [
        canonical
    ]
    orders = [float(o) for o in orders]
    rdp = np.zeros(len(orders))
    others: list[dp_event.DpEvent] = []
    for part in parts:
        inner, count = part, 1
        if isinstance(part, dp_event.SelfComposedDpEvent):
            inner, count = part.event, int(part.count)
        found = _ddg_part(inner)
        if found is None:
            others.append(part)
        else:
            rdp = rdp + count * ddg_rdp(found[0], orders, found[1])
    if others:
        acc = rdp_privacy_accountant.RdpAccountant(orders)
        acc.compose(dp_event.ComposedDpEvent(others))
        rdp = rdp + np.asarray(acc._rdp, np.float64)  # dp_accounting 0.6: the RDP vector
    eps, _ = rdp_privacy_accountant.compute_epsilon(np.asarray(orders), rdp, float(delta))
    return float(eps)


# ------------------------------------------------------------------------------------------
# rounding bound and the round's event


def rounded_l2_bound(c: float, dim: int, beta: float) -> float:
    """Norm bound of conditional randomized rounding of ``||x|| <= c`` in ``dim`` coordinates
    (module docstring); ``beta`` is the probability an unconditional rounding exceeds it."""
    if not 0.0 < beta < 1.0:
        raise ConfigError(f"`beta` must be in (0, 1). Found {beta!r}.")
    d = float(dim)
    sq = c * c + d / 4.0 + math.sqrt(2.0 * math.log(1.0 / beta)) * (c + math.sqrt(d) / 2.0)
    return math.sqrt(min(sq, (c + math.sqrt(d)) ** 2))


def ddg_round_event(
    scaled_clip: float, dim: int, share_stddev: float, n_shares: int, beta: float
) -> DistributedDiscreteGaussianDpEvent:
    """The event of one DDG round: sensitivity on the grid after scaling (``scaled_clip = C/γ``)
    and conditional rounding; ``L1 <= sqrt(d) L2``."""
    l2 = rounded_l2_bound(scaled_clip, dim, beta)
    return DistributedDiscreteGaussianDpEvent(
        float(l2), float(min(math.sqrt(dim) * l2, l2 * l2)), float(share_stddev), int(n_shares),
        int(dim),
    )


# ------------------------------------------------------------------------------------------
# parameters: granularity from the bit width, and calibration

#: probability that one device's rotated, scaled update exceeds the coordinate bound ``L``
#: (then it is clipped to ``[-L, L]``: a bias, never a privacy or overflow issue)
FLATTEN_FAILURE = 1e-6
#: probability that an unconditional rounding exceeds the norm bound (the device then re-rounds)
ROUNDING_BETA = 1e-6
#: probability that some coordinate of a round's noise sum passes its tail bound
OVERFLOW_FAILURE = 1e-9


class DdgParams(NamedTuple):
    """Everything a DDG round needs, derived from data-independent quantities only.

    ``dim`` is the padded (power of two) dimension; ``granularity`` γ; ``coord_bound`` ``L``
    (grid units) bounds each rotated, scaled coordinate of one device after its ``[-L, L]``
    clip, so a rounded coordinate is at most ``L + 1`` in absolute value; ``share_stddev`` is
    each device's discrete Gaussian std (0: no noise). Overflow bound (exact for the signal):
    ``n_cap (L + 1) + noise_tail <= 2^(bits-1) - 1``, where the noise sum of ``n_cap`` shares passes
    ``noise_tail`` in some coordinate with probability ``<= OVERFLOW_FAILURE`` (sub-Gaussian
    tail ``2 exp(-z² / (2 n s²))``, union over ``dim`` coordinates)."""

    clip_norm: float
    dim: int
    bits: int
    n_cap: int
    n_min: int
    noise_multiplier: float
    granularity: float
    coord_bound: float
    share_stddev: float
    noise_tail: float

    @property
    def scaled_clip(self) -> float:
        return self.clip_norm / self.granularity

    @property
    def l2_bound(self) -> float:
        """Exact norm bound of one device's rounded update (conditional rounding)."""
        return rounded_l2_bound(self.scaled_clip, self.dim, ROUNDING_BETA)

    def event(self, n_shares: int | None = None) -> DistributedDiscreteGaussianDpEvent:
        """One round with ``n_shares`` (default ``n_min``) shares in the sum."""
        n = self.n_min if n_shares is None else int(n_shares)
        return ddg_round_event(self.scaled_clip, self.dim, self.share_stddev, n, ROUNDING_BETA)


def flatten_factor(dim: int) -> float:
    """``ρ``: after a random sign flip and normalized Hadamard transform of a ``dim`` vector of
    norm ``c``, every coordinate is at most ``ρ c`` with probability ``>= 1 - FLATTEN_FAILURE``
    (Hoeffding over the signs, union over coordinates): ``ρ = sqrt(2 ln(2 dim / p) / dim)``."""
    return math.sqrt(2.0 * math.log(2.0 * dim / FLATTEN_FAILURE) / dim)


def ddg_params(
    clip_norm: float,
    dim: int,
    bits: int,
    n_cap: int,
    n_min: int,
    noise_multiplier: float,
    granularity: float = 0.0,
) -> DdgParams:
    """Derive γ (when ``granularity`` is 0: the finest grid whose exact overflow bound fits
    ``bits``) and the share std ``s = σ C / (γ sqrt(n_min))`` so that ``n_min`` shares carry the
    variance ``(σ C / γ)²`` of the central mechanism. Raises :class:`ConfigError` when ``bits`` is
    too narrow for ``n_cap`` devices."""
    if not 2 <= int(bits) <= 40:
        raise ConfigError(f"`aggregation.bits` must be in [2, 40]. Found {bits}.")
    n_cap, n_min, sigma = int(n_cap), max(int(n_min), 1), float(noise_multiplier)
    room = 2.0 ** (int(bits) - 1) - 1.0 - n_cap  # n_cap (L + 1) + tail <= 2^(b-1) - 1
    kappa = math.sqrt(2.0 * math.log(2.0 * dim / OVERFLOW_FAILURE))
    rho = flatten_factor(dim)
    # in units of C/γ: signal n_cap ρ, noise tail σ κ sqrt(n_cap / n_min)
    need = n_cap * rho + sigma * kappa * math.sqrt(n_cap / n_min)
    if room <= 0:
        raise ConfigError(
            f"`aggregation.bits` = {bits} cannot hold the sum of {n_cap} devices; raise it."
        )
    gamma = float(granularity) if granularity > 0 else clip_norm * need / room
    scaled = clip_norm / gamma
    tail = sigma * kappa * math.sqrt(n_cap / n_min) * scaled
    bound = rho * scaled
    if n_cap * (math.floor(bound) + 1) + tail > 2.0 ** (int(bits) - 1) - 1:
        raise ConfigError(
            f"`aggregation.ddg_granularity` = {gamma:g} is too fine for {bits} bits and "
            f"{n_cap} devices (the modular sum could wrap); use at least "
            f"{clip_norm * need / room:g} or 0 (derived)."
        )
    share = sigma * scaled / math.sqrt(n_min)
    return DdgParams(
        float(clip_norm), int(dim), int(bits), n_cap, n_min, sigma, gamma, bound, share, tail
    )


def ddg_realized_event(
    planned: dp_event.DpEvent, planned_sigma: float, realized_sigma: float
) -> dp_event.DpEvent:
    """The event of a DDG round whose realized noise multiplier is ``realized_sigma``: fewer
    than ``n_min`` shares (``σ_real = σ sqrt(n / n_min)``) give ``n = n_min σ_real² / σ²``."""
    found = _ddg_part(planned)
    if found is None:
        raise ConfigError("not a (Poisson-sampled) DDG round event.")
    ddg, q = found
    if realized_sigma <= 0:
        return dp_event.NonPrivateDpEvent()
    n = ddg.n_shares
    if realized_sigma < planned_sigma:
        n = max(1, round(ddg.n_shares * (realized_sigma / planned_sigma) ** 2))
    event = attr.evolve(ddg, n_shares=n)
    return event if q >= 1.0 else dp_event.PoissonSampledDpEvent(q, event)


def plan_ddg(plan, params_of: Callable[[float], DdgParams]):
    """``(plan, params)``: ``plan`` (a :class:`~ppr.privacy.PrivacyPlan` calibrated for the
    Gaussian) recalibrated so that its ledger -- the same popularity release, then T rounds of
    the DDG mechanism with the parameters ``params_of(σ)`` -- meets the same ``(ε, δ)``, composed
    in RDP. A non-private plan is returned unchanged with ``params_of(0)``."""
    from ppr.privacy.accounting import calibrate_event
    from ppr.privacy.ledger import PrivacyLedger

    if not plan.private:
        return plan, params_of(0.0)
    q, rounds = float(plan.sampling_rate), int(plan.rounds)
    extra = [e.event for e in plan.ledger.entries if e.name != "dpfedavg"]

    def one_round(sigma: float) -> dp_event.DpEvent:
        ev = params_of(sigma).event()
        return ev if q >= 1.0 else dp_event.PoissonSampledDpEvent(q, ev)

    def make(sigma: float) -> dp_event.DpEvent:
        training = dp_event.SelfComposedDpEvent(one_round(sigma), rounds)
        return dp_event.ComposedDpEvent([*extra, training]) if extra else training

    sigma = calibrate_event(make, plan.epsilon_target, plan.delta, plan.accountant)
    params = params_of(sigma)
    ledger = PrivacyLedger()
    for e in plan.ledger.entries:
        if e.name != "dpfedavg":
            ledger = ledger.add(e.name, e.event, e.description)
    ledger = ledger.add(
        "dpfedavg",
        dp_event.SelfComposedDpEvent(one_round(sigma), rounds),
        f"DP-FedAvg with compressed uploads (distributed discrete Gaussian, KLS 2021): {rounds} "
        f"rounds, Poisson q = {q:g}, clip C = {params.clip_norm:g}, grid γ = "
        f"{params.granularity:.4g}, {params.bits} bits per value, discrete Gaussian share std "
        f"{params.share_stddev:.4g} (grid units) on each of >= {params.n_min} devices; "
        "accounted in RDP",
    )
    new = plan._replace(noise_multiplier=sigma, ledger=ledger, round_event=one_round(sigma))
    return new, params

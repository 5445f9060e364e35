"""The federated training loop (no Python loop over devices in the hot path).

Per round ``t`` (keys are ``fold_in(key, t)`` then split per role; ``key`` is the run's secret key
under DP, see :mod:`ppr.privacy.noise`):

1. participants: Poisson(q) or fixed-size sample of the *eligible* devices; dropouts removed;
   with device tiers (:mod:`ppr.federated.tiers`) also the away devices and the stragglers
   past the round deadline (decided on public quantities only); the others run their budget;
2. devices: solve ``p_u`` (kept on the device), compute the update of ``Q``, clip it to ``C``;
3. summation strategy (plaintext / CKKS), wrapped by DP noise when private;
4. release: the privacy filter admits the round (data-independent: the noise multiplier the sum
   carries, the sampling rate), the accountant is charged for every eligible device, and the
   server steps ``Q <- optax step(-total / denominator)``.

A round that releases nothing (the key holder refused the sum; no survivor and no noise) costs
nothing. A round the filter refuses is not released and training stops (``RoundLog.released``
is False and ``stopped`` says why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

import jax
import numpy as np

from ppr.crypto.errors import AggregateRejectedError
from ppr.federated.fleet import DeviceFleet, DeviceRound, apply_dropout, sample_participants
from ppr.federated.server import Server, ServerState
from ppr.federated.summation import RoundSum, SumStrategy
from ppr.federated.tiers import TierRound, TierSchedule

logger = logging.getLogger("ppr.federated")


class RoundLog(NamedTuple):
    """What one round did (a line of ``metrics.jsonl``). ``eligible``, ``noise_multiplier`` and
    ``released`` are data-independent; the counts and norms are diagnostics (not private)."""

    round: int
    eligible: int
    sampled: int
    accepted: int
    dropped: int
    rejected: int
    clipped_fraction: float
    mean_norm: float
    noise_multiplier: float | None
    upload_bytes: int
    seconds: float
    aggregate_rejected: bool = False
    released: bool = True
    stopped: str = ""
    stragglers: int = 0  # device tiers: updates dropped past the deadline (also in `dropped`)
    sim_seconds: float = 0.0  # device tiers: simulated round time
    tiers: dict | None = None  # device tiers: counts per tier (diagnostics)

    def as_dict(self) -> dict:
        return self._asdict()


class RoundAccounting(Protocol):
    """The trusted side's ledger keeper, charged as rounds happen."""

    def admit(self, noise_multiplier: float | None) -> str:
        """``""`` when releasing a round with this noise keeps the run within its target, else
        the reason it is refused (decided on planned, data-independent quantities only)."""
        ...

    def charge(self, round_idx: int, noise_multiplier: float | None, eligible: np.ndarray) -> None:
        """Record a released round for the run and for every eligible device."""
        ...


class FederatedTrainer:
    """Runs rounds of federated MF: devices -> summation -> release -> server."""

    def __init__(
        self,
        fleet: DeviceFleet,
        summation: SumStrategy,
        server: Server,
        *,
        sampling: str,
        sampling_rate: float,
        participants: int,
        dropout_rate: float,
        clip_norm: float,
        fixed_denominator: float | None,
        accounting: RoundAccounting | None = None,
        tiers: TierSchedule | None = None,
    ) -> None:
        self.fleet, self.summation, self.server = fleet, summation, server
        self.tiers = tiers
        self.sampling, self.sampling_rate = sampling, float(sampling_rate)
        self.participants, self.dropout_rate = int(participants), float(dropout_rate)
        self.clip_norm = float(clip_norm)
        self.fixed_denominator = fixed_denominator
        self.accounting = accounting

    def _sum(self, t: int, devices, key: jax.Array) -> tuple[RoundSum, bool]:
        try:
            return self.summation.aggregate(t, devices, key), False
        except AggregateRejectedError as exc:
            # The key holder refused to release the sum (a device sent what no honest device
            # can: see ppr.crypto). Nothing is released, nothing is charged, the model stays.
            logger.warning("round %d skipped: %s", t + 1, exc)
            return RoundSum(np.zeros(0), 0, 0), True

    def _release(
        self, state: ServerState, t: int, agg: RoundSum, eligible: np.ndarray
    ) -> tuple[ServerState, bool, str]:
        """Admit, charge and apply one round's sum: (state, released, why it stopped)."""
        if not (agg.n_accepted > 0 or agg.noise_multiplier):
            return state, False, ""  # nothing to release: free
        if self.accounting is not None:
            why = self.accounting.admit(agg.noise_multiplier)
            if why:
                logger.warning("round %d not released: %s", t + 1, why)
                return state, False, why
            self.accounting.charge(t, agg.noise_multiplier, eligible)
        denom = self.fixed_denominator if self.fixed_denominator else max(agg.n_accepted, 1)
        return self.server.step(state, agg.total, denom), True, ""

    def _compute(
        self, q: jax.Array, survivors: np.ndarray, key: jax.Array
    ) -> tuple[DeviceRound, dict]:
        """The survivors' updates; with device tiers, only those that are available and meet
        the deadline (decided on public quantities: :mod:`ppr.federated.tiers`), each with its
        budget of local steps. Also the tier fields of the round's log."""
        if self.tiers is None:
            return self.fleet.compute(q, survivors, self.clip_norm), {}
        tr: TierRound = self.tiers.plan(key, survivors)
        devices = self.tiers.compute(self.fleet, q, tr, self.clip_norm)
        fields = {"stragglers": int(tr.stragglers.size), "sim_seconds": tr.seconds}
        return devices, {**fields, "tiers": tr.per_tier, "lost": tr.lost}

    def round(self, state: ServerState, t: int, key: jax.Array) -> tuple[ServerState, RoundLog]:
        start = time.perf_counter()
        k_sample, k_drop, k_sum = jax.random.split(jax.random.fold_in(key, t), 3)
        eligible = self.fleet.population
        sampled = sample_participants(
            k_sample, eligible, self.sampling, self.sampling_rate, self.participants
        )
        survivors, dropped = apply_dropout(k_drop, sampled, self.dropout_rate)
        devices, tiered = self._compute(state.q, survivors, jax.random.fold_in(k_drop, 1))
        agg, refused = self._sum(t, devices, k_sum)
        released, why = False, ""
        if not refused:
            state, released, why = self._release(state, t, agg, eligible)
        norms = devices.norms() if survivors.size else np.zeros(0)
        log = RoundLog(
            round=t + 1,
            eligible=int(eligible.size),
            sampled=int(sampled.size),
            accepted=int(agg.n_accepted),
            dropped=int(dropped.size) + len(agg.dropped) + tiered.pop("lost", 0),
            rejected=len(agg.rejected),
            clipped_fraction=float(np.mean(norms > self.clip_norm)) if norms.size else 0.0,
            mean_norm=float(np.mean(norms)) if norms.size else 0.0,
            noise_multiplier=agg.noise_multiplier,
            upload_bytes=int(agg.upload_bytes),
            seconds=time.perf_counter() - start,
            aggregate_rejected=refused,
            released=released,
            stopped=why,
            **tiered,
        )
        return state, log

    def fit(
        self,
        state: ServerState,
        rounds: int,
        key: jax.Array,
        on_round: Callable[[ServerState, RoundLog], None] | None = None,
        start: int = 0,
    ) -> tuple[ServerState, list[RoundLog]]:
        """Rounds ``start .. rounds - 1`` from ``state`` (round ``t`` uses ``fold_in(key, t)``);
        stops early when the privacy filter refuses a round."""
        logs: list[RoundLog] = []
        for t in range(int(start), int(rounds)):
            state, log = self.round(state, t, key)
            logs.append(log)
            if on_round is not None:
                on_round(state, log)
            if log.stopped:
                break
        return state, logs

"""The federated training loop (one entry point; no Python loop over devices in the hot path).

Per round ``t`` (keys are ``fold_in(key, t)`` then split per role, so a run is a pure function of
the config and seed):

1. cohort: Poisson(q) or fixed-size sample of the training devices; dropouts removed;
2. devices: solve ``p_u`` (kept on the device), compute the update of ``Q``, clip it to ``C``;
3. aggregation strategy (plaintext / CKKS), wrapped by DP noise when private;
4. server: ``Q <- optax step(-total / denominator)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from ppr.crypto.errors import AggregateRejectedError
from ppr.federated.aggregators import CohortAggregator, RoundAggregate
from ppr.federated.devices import DeviceFleet, apply_dropout, sample_cohort
from ppr.federated.server import Server, ServerState

logger = logging.getLogger("ppr.federated")


class RoundLog(NamedTuple):
    """What one round did (saved as a line of ``metrics.jsonl``)."""

    round: int
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

    def as_dict(self) -> dict:
        return self._asdict()


class FederatedTrainer:
    """Runs ``rounds`` rounds of federated MF: devices -> aggregator -> server."""

    def __init__(
        self,
        fleet: DeviceFleet,
        aggregator: CohortAggregator,
        server: Server,
        *,
        sampling: str,
        sampling_rate: float,
        cohort_size: int,
        dropout_rate: float,
        clip_norm: float,
        fixed_denominator: float | None,
    ) -> None:
        self.fleet, self.aggregator, self.server = fleet, aggregator, server
        self.sampling, self.sampling_rate = sampling, float(sampling_rate)
        self.cohort_size, self.dropout_rate = int(cohort_size), float(dropout_rate)
        self.clip_norm = float(clip_norm)
        self.fixed_denominator = fixed_denominator

    def round(self, state: ServerState, t: int, key: jax.Array) -> tuple[ServerState, RoundLog]:
        start = time.perf_counter()
        k_round = jax.random.fold_in(key, t)
        k_sample, k_drop, k_agg = jax.random.split(k_round, 3)
        cohort = sample_cohort(
            k_sample, self.fleet.population, self.sampling, self.sampling_rate, self.cohort_size
        )
        survivors, dropped = apply_dropout(k_drop, cohort, self.dropout_rate)
        devices = self.fleet.compute(state.q, survivors, self.clip_norm)
        try:
            agg = self.aggregator.aggregate(t, devices, k_agg)
            refused = False
        except AggregateRejectedError as exc:
            # The key holder refused to release the sum (a device sent what no honest device
            # can: see ppr.crypto). Nothing is released and the model does not move; the round
            # stays charged in the privacy ledger, and training goes on.
            logger.warning("round %d skipped: %s", t + 1, exc)
            agg = RoundAggregate(np.zeros(0), 0, 0)
            refused = True
        denom = self.fixed_denominator if self.fixed_denominator else max(agg.n_accepted, 1)
        if not refused and (agg.n_accepted > 0 or agg.noise_multiplier):
            state = self.server.step(state, agg.total, denom)
        norms = devices.norms() if survivors.size else np.zeros(0)
        log = RoundLog(
            round=t + 1,
            sampled=int(cohort.size),
            accepted=int(agg.n_accepted),
            dropped=int(dropped.size) + len(agg.dropped),
            rejected=len(agg.rejected),
            clipped_fraction=float(np.mean(norms > self.clip_norm)) if norms.size else 0.0,
            mean_norm=float(np.mean(norms)) if norms.size else 0.0,
            noise_multiplier=agg.noise_multiplier,
            upload_bytes=int(agg.upload_bytes),
            seconds=time.perf_counter() - start,
            aggregate_rejected=refused,
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
        """Rounds ``start .. rounds - 1`` from ``state``. Round ``t`` uses ``fold_in(key, t)``, so
        resuming from a checkpoint after round ``start`` gives the uninterrupted run's numbers."""
        logs: list[RoundLog] = []
        for t in range(int(start), int(rounds)):
            state, log = self.round(state, t, key)
            logs.append(log)
            if on_round is not None:
                on_round(state, log)
        return state, logs

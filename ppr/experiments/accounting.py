"""The live ledger: the trusted side's accountant, charged as releases happen.

:class:`LiveLedger` implements the trainer's :class:`~ppr.federated.RoundAccounting`:

* ``admit(sigma)`` is the privacy filter: a round is released only if the run's ε, with this round
  composed in, stays within the target. It decides on planned, data-independent quantities only
  (the noise multiplier the round carries and the sampling rate; with central noise these never
  depend on data), so the decision itself reveals nothing ("Privacy semantics", DESIGN.md).
* ``charge(t, sigma, eligible)`` records a released round: once for the run, and for every
  device that was *eligible* (sampled or not: amplification by sampling charges eligibility;
  which rounds sampled a device is never recorded anywhere).
* a round that released nothing is never charged; a non-private run's ledger holds a
  ``NonPrivateDpEvent`` so that its ε reads ∞.

Per-device spend (:meth:`LiveLedger.device_epsilon`) is the composition of the device's own
eligible rounds (:mod:`ppr.privacy.spend`), readable on the trusted side only (``devices.json``).
"""

from __future__ import annotations

import math
from typing import Any

import dp_accounting
import numpy as np

from ppr.privacy import PrivacyPlan
from ppr.privacy.accounting import epsilon_of
from ppr.privacy.events import dpfedavg_event, event_from_json, event_to_json
from ppr.privacy.ledger import PrivacyLedger

#: Slack of the filter over the calibrated target (the calibration's own tolerance).
FILTER_SLACK = 1e-6


class DeviceSpend:
    """Per device, how many times each distinct event charged it (its eligible rounds).

    Invariant: only eligibility is recorded, never whether a round sampled the device."""

    def __init__(self, members: np.ndarray) -> None:
        self.members = np.asarray(members, np.int64)
        self._row = {int(u): i for i, u in enumerate(self.members)}
        self.events: list[dp_accounting.DpEvent] = []
        self.counts: list[np.ndarray] = []

    def charge(self, event: dp_accounting.DpEvent, eligible: np.ndarray) -> None:
        if event not in self.events:
            self.events.append(event)
            self.counts.append(np.zeros(self.members.size, np.int32))
        idx = np.searchsorted(self.members, np.asarray(eligible, np.int64))
        self.counts[self.events.index(event)][idx] += 1

    def composed(self, device_id: int) -> dp_accounting.DpEvent:
        i = self._row[int(device_id)]
        return dp_accounting.ComposedDpEvent(
            [
                dp_accounting.SelfComposedDpEvent(e, int(c[i]))
                for e, c in zip(self.events, self.counts, strict=True)
                if c[i] > 0
            ]
        )

    def epsilon(self, device_id: int, delta: float, accountant: str) -> float:
        return epsilon_of(self.composed(device_id), delta, accountant)

    def state(self) -> dict[str, Any]:
        return {
            "members": self.members.tolist(),
            "events": [event_to_json(e) for e in self.events],
            "counts": [c.tolist() for c in self.counts],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DeviceSpend:
        out = cls(np.asarray(state["members"], np.int64))
        out.events = [event_from_json(e) for e in state["events"]]
        out.counts = [np.asarray(c, np.int32) for c in state["counts"]]
        return out


class LiveLedger:
    """Run-level and per-device accounting of one run (see the module docstring)."""

    def __init__(
        self, plan: PrivacyPlan, members: np.ndarray, sampling_rate: float, rounds: int
    ) -> None:
        self.plan, self.sampling_rate, self.planned_rounds = plan, float(sampling_rate), int(rounds)
        self.private = plan.noise_multiplier > 0
        self.rounds: dict[float, int] = {}  # noise multiplier -> released rounds
        self.once: list[tuple[str, dp_accounting.DpEvent]] = []
        self.devices = DeviceSpend(np.asarray(members, np.int64))
        self._eps_cache: dict[tuple, float] = {}

    @classmethod
    def restore(
        cls,
        plan: PrivacyPlan,
        members: np.ndarray,
        sampling_rate: float,
        rounds: int,
        state: dict[str, Any] | None = None,
    ) -> LiveLedger:
        """A fresh ledger, or the one saved by :meth:`state` in a checkpoint."""
        led = cls(plan, members, sampling_rate, rounds)
        if state:
            led.rounds = {float(s): int(n) for s, n in state["rounds"]}
            for name, sigma in state["once"]:
                led.once.append((name, dp_accounting.GaussianDpEvent(float(sigma))))
            led.devices = DeviceSpend.from_state(state["devices"])
        return led

    def state(self) -> dict[str, Any]:
        return {
            "rounds": sorted(self.rounds.items()),
            "once": [(n, e.noise_multiplier) for n, e in self.once],
            "devices": self.devices.state(),
        }

    @property
    def rounds_released(self) -> int:
        return int(sum(self.rounds.values()))

    def _round_event(self, sigma: float) -> dp_accounting.DpEvent:
        return dpfedavg_event(sigma, self.sampling_rate, 1)

    def _events(self, rounds: dict[float, int]) -> list[dp_accounting.DpEvent]:
        out = [e for _, e in self.once]
        out += [dpfedavg_event(s, self.sampling_rate, n) for s, n in sorted(rounds.items())]
        return out

    def _epsilon(self, rounds: dict[float, int]) -> float:
        key = (tuple(sorted(rounds.items())), len(self.once))
        if key not in self._eps_cache:
            event = dp_accounting.ComposedDpEvent(self._events(rounds))
            self._eps_cache[key] = epsilon_of(event, self.plan.delta, self.plan.accountant)
        return self._eps_cache[key]

    def admit(self, noise_multiplier: float | None) -> str:
        if not self.private:
            return ""
        sigma = float(noise_multiplier or 0.0)
        if sigma <= 0:
            return "the round carries no noise: releasing it would void the guarantee"
        after = dict(self.rounds)
        after[sigma] = after.get(sigma, 0) + 1
        planned = {self.plan.noise_multiplier: self.planned_rounds}
        if all(s in planned and n <= planned[s] for s, n in after.items()):
            return ""  # within the calibrated plan: no accountant call needed
        eps = self._epsilon(after)
        target = self.plan.epsilon_target
        if eps > target * (1 + FILTER_SLACK):
            return (
                f"releasing round {self.rounds_released + 1} (noise multiplier {sigma:.4g}) "
                f"would spend epsilon {eps:.4f} > target {target:g}; training stops here"
            )
        return ""

    def charge(self, round_idx: int, noise_multiplier: float | None, eligible: np.ndarray) -> None:
        sigma = float(noise_multiplier or 0.0)
        self.rounds[sigma] = self.rounds.get(sigma, 0) + 1
        if self.private:
            self.devices.charge(self._round_event(sigma), eligible)

    def charge_once(self, name: str, event: dp_accounting.DpEvent, eligible: np.ndarray) -> None:
        """A one-off release (e.g. the popularity counts) covering ``eligible`` devices."""
        self.once.append((name, event))
        self.devices.charge(event, eligible)

    @property
    def ledger(self) -> PrivacyLedger:
        """The ledger of what really ran (a non-private run: one NonPrivateDpEvent entry)."""
        led = PrivacyLedger()
        for name, event in self.once:
            led = led.add(name, event, "one-off release before training")
        if not self.private:
            if self.rounds:
                led = led.add(
                    "training",
                    dp_accounting.NonPrivateDpEvent(),
                    f"{self.rounds_released} rounds without DP noise",
                )
            return led
        for sigma, n in sorted(self.rounds.items()):
            led = led.add(
                "dpfedavg" if len(self.rounds) == 1 else f"dpfedavg_sigma_{sigma:.6g}",
                dpfedavg_event(sigma, self.sampling_rate, n),
                f"DP-FedAvg: {n} released rounds, Poisson sampling q = "
                f"{self.sampling_rate:g}, noise multiplier {sigma:.6g}",
            )
        return led

    def epsilon(self) -> float:
        """ε of the rounds that ran (∞ for a non-private run that released a model)."""
        if not self.private:
            return math.inf if self.rounds else 0.0
        return self._epsilon(self.rounds)

    def devices_report(self) -> dict[str, Any]:
        """``devices.json``: per device, its eligible-round counts per event (trusted side)."""
        return {"format": "ppr.devices/1", "delta": self.plan.delta, **self.devices.state()}

    def device_epsilon(self, device_id: int) -> float:
        """One device's own spend (trusted side only)."""
        return self.devices.epsilon(device_id, self.plan.delta, self.plan.accountant)

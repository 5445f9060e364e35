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

from typing import Any

import dp_accounting
import numpy as np

from ppr.privacy import PrivacyPlan
from ppr.privacy.ddg import contains_ddg, ddg_realized_event
from ppr.privacy.events import gaussian_rounds_event
from ppr.privacy.ledger import PrivacyLedger
from ppr.privacy.spend import PrivacySpend, spend_from_json


class LiveLedger:
    """Run-level and per-device accounting of one run (see the module docstring); the record is a
    :class:`~ppr.privacy.spend.PrivacySpend` over the fleet's members (dense indices)."""

    def __init__(self, plan: PrivacyPlan, members: np.ndarray) -> None:
        self.plan = plan
        self.private = plan.noise_multiplier > 0
        self.members = np.asarray(members, np.int64)
        self.spend = PrivacySpend.from_plan(plan, max(int(self.members.size), 1))
        self.rounds_released = 0
        # (device ids, their personal ε caps) of the eligible capped devices (ppr.experiments.
        # controls); a round whose realized noise differs from the plan is checked against them
        self.cap_watch: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def restore(
        cls,
        plan: PrivacyPlan,
        members: np.ndarray,
        state: dict[str, Any] | None = None,
    ) -> LiveLedger:
        """A fresh ledger, or the one saved by :meth:`state` in a checkpoint."""
        led = cls(plan, members)
        if state:
            led.spend = spend_from_json(state["spend"])
            led.rounds_released = int(state["rounds_released"])
        return led

    def state(self) -> dict[str, Any]:
        return {"spend": self.spend.to_dict(), "rounds_released": self.rounds_released}

    def _index(self, device_ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.members, np.asarray(device_ids, np.int64))

    def round_event(self, noise_multiplier: float | None) -> dp_accounting.DpEvent:
        """One released round: Poisson(q)-sampled Gaussian(σ); non-private without noise. A
        plan of compressed uploads charges its discrete Gaussian round with the realized shares
        (:func:`ppr.privacy.ddg.ddg_realized_event`; composed with the rest in RDP)."""
        sigma = float(noise_multiplier or 0.0)
        if contains_ddg(self.plan.round_event):
            return ddg_realized_event(self.plan.round_event, self.plan.noise_multiplier, sigma)
        return gaussian_rounds_event(sigma, self.plan.sampling_rate)

    def admit(self, noise_multiplier: float | None) -> str:
        if not self.private:
            return ""
        sigma = float(noise_multiplier or 0.0)
        if sigma <= 0:
            return "the round carries no noise: releasing it would void the guarantee"
        if sigma != self.plan.noise_multiplier and not self._within_caps(sigma):
            return (
                f"releasing round {self.rounds_released + 1} (noise multiplier {sigma:.4g}) "
                "would pass a device's personal epsilon cap; training stops here"
            )
        if sigma == self.plan.noise_multiplier and self.rounds_released < self.plan.rounds:
            return ""  # within the calibrated plan: no accountant call needed
        if self.spend.would_exceed(self.round_event(sigma), self.plan.epsilon_target):
            return (
                f"releasing round {self.rounds_released + 1} (noise multiplier {sigma:.4g}) "
                f"would pass the target epsilon {self.plan.epsilon_target:g}; training stops here"
            )
        return ""

    def devices_within_cap(
        self, event: dp_accounting.DpEvent, cap: float, device_ids: np.ndarray
    ) -> np.ndarray:
        """Mask over ``device_ids``: whose own spend stays ``<= cap`` if ``event`` is charged to
        them (decided on the planned event and the eligible-release counts only)."""
        return self.spend.devices_within_cap(event, cap, device_ids=self._index(device_ids))

    def _within_caps(self, sigma: float) -> bool:
        """Whether every watched capped device stays within its cap with this round charged."""
        if self.cap_watch is None:
            return True
        ids, caps = self.cap_watch
        event = self.round_event(sigma)
        return all(
            bool(self.devices_within_cap(event, float(c), ids[caps == c]).all())
            for c in np.unique(caps)
        )

    def charge(self, round_idx: int, noise_multiplier: float | None, eligible: np.ndarray) -> None:
        self.spend.charge(
            int(round_idx) + 1, self.round_event(noise_multiplier), self._index(eligible)
        )
        self.rounds_released += 1

    def charge_once(self, name: str, event: dp_accounting.DpEvent, eligible: np.ndarray) -> None:
        """A one-off release (e.g. the popularity counts) covering ``eligible`` devices."""
        self.spend.charge(name, event, self._index(eligible))

    @property
    def ledger(self) -> PrivacyLedger:
        """The ledger of what really ran (a non-private run: NonPrivateDpEvent entries)."""
        return self.spend.ledger()

    def epsilon(self) -> float:
        """ε of the releases that ran (∞ for a non-private run that released a model)."""
        return self.spend.epsilon()

    def devices_report(self) -> dict[str, Any]:
        """``devices.json``: per device, its eligible-release counts (trusted side only); the
        record's device index ``i`` is member ``members[i]``."""
        return {"members": self.members.tolist(), "spend": self.spend.to_dict()}

    def device_epsilon(self, device_id: int) -> float:
        """One device's own spend (trusted side only)."""
        return self.spend.device_epsilon(int(self._index([device_id])[0]))

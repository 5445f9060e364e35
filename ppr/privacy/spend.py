"""Live, per-device privacy accounting and a data-independent filter (trusted side).

The trainer charges a :class:`PrivacySpend` with every release *as it really happened*:
``charge(round_or_name, event, eligible_device_ids)``. From it one reads

* the run's ledger and ε (:meth:`PrivacySpend.ledger`, :meth:`PrivacySpend.epsilon`): every
  charged event composed, i.e. the spend of a device that was eligible for everything (an upper
  bound of every device's spend);
* each device's own spend (:meth:`PrivacySpend.device_epsilon`): the composition of the events it
  was *eligible* for. Under Poisson sampling a device pays ``PoissonSampled(q, Gaussian(σ))`` for
  every round it was eligible for, sampled or not: amplification by sampling charges
  eligibility. Which rounds sampled a device is itself secret (publishing it undoes the
  amplification), so this object never receives the sampling outcome, and its JSON (for the
  trusted side only) holds counts per event signature per device, nothing else.

A round that releases nothing (skipped) is simply not charged; charging a ``NoOpDpEvent`` is
accepted and records nothing.

Filter. :meth:`PrivacySpend.would_exceed` (run level) and :meth:`PrivacySpend.devices_within_cap`
(a personal ε cap) decide *before* a release whether charging a planned event would pass the
target. They look only at data-independent quantities: the planned event (σ, q), the counts of
events already charged and the device's eligibility; never at a realized, data-dependent value
(which would itself be a release). ε is computed by the accountant; a decision is certified by
the coarse (pessimistic) accountant or by the exact one, both upper bounds of the true ε.

Storage: one row per distinct *event signature* (the canonical JSON of a charged event). A charge
to all devices adds 1 to a shared counter; a charge to a subset adds 1 to an int32 per-device
array of that signature (allocated on first use). A device's spend is
``Composed(SelfComposed(signature_k, count_k) for k)``, accounted with ``count=``. Devices with the
same counts share one accountant call (cached), so 100k devices x hundreds of rounds cost a few
MB and a handful of accountant calls. The filters find, once per distinct history, the largest
count of the planned event that stays under the cap (a search over the count) and then compare
integers for every device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dp_accounting
import numpy as np
from dp_accounting import dp_event

from ppr.errors import PprError
from ppr.io import atomic_write_text
from ppr.privacy._checks import check_count, check_delta, check_positive
from ppr.privacy.accounting import (
    DEFAULT_ACCOUNTANT,
    canonical_event,
    check_accountant,
    epsilon_of,
    event_key,
)
from ppr.privacy.events import event_from_json, event_to_json
from ppr.privacy.ledger import PrivacyLedger, decode_format

SPEND_FORMAT = "ppr.privacy.spend/1"
_MAX_COUNT = 1 << 30


@dataclass(frozen=True)
class Release:
    """One charged release: a round number or a name, its signature and how many were eligible."""

    name: str
    round: int | None
    signature: int
    eligible: int
    description: str = ""


def _composition(signatures: list[dp_event.DpEvent], counts: Any) -> dp_event.DpEvent:
    parts = [
        sig if int(n) == 1 else dp_accounting.SelfComposedDpEvent(sig, int(n))
        for sig, n in zip(signatures, counts, strict=False)
        if int(n) > 0
    ]
    if not parts:
        return dp_accounting.NoOpDpEvent()
    return parts[0] if len(parts) == 1 else dp_accounting.ComposedDpEvent(parts)


def _ranges(ids: np.ndarray) -> list[list[int]]:
    """Sorted unique ids as half-open ``[start, stop)`` runs."""
    if ids.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(ids) != 1)
    starts = np.concatenate([[ids[0]], ids[breaks + 1]])
    stops = np.concatenate([ids[breaks], [ids[-1]]]) + 1
    return [[int(a), int(b)] for a, b in zip(starts, stops, strict=True)]


class PrivacySpend:
    """Per-device privacy spend of one run over devices ``0 .. n_devices - 1`` (trusted side).

    ``delta`` and ``accountant`` are the defaults of the ε queries (``delta`` may be given per
    call instead); ``rounds_name`` names the ledger entry that groups the round charges.
    """

    def __init__(
        self,
        n_devices: int,
        delta: float | None = None,
        accountant: str = DEFAULT_ACCOUNTANT,
        *,
        rounds_name: str = "dpfedavg",
    ) -> None:
        check_count("n_devices", n_devices)
        check_accountant(accountant)
        if delta is not None:
            check_delta("delta", delta)
        self.n_devices = int(n_devices)
        self.delta = None if delta is None else float(delta)
        self.accountant = accountant
        self.rounds_name = rounds_name
        self._signatures: list[dp_event.DpEvent] = []
        self._index: dict[str, int] = {}
        self._base: list[int] = []  # charges to every device, per signature
        self._extra: list[np.ndarray | None] = []  # charges to subsets, per signature and device
        self._releases: list[Release] = []
        self._max_counts: dict[tuple, int] = {}
        self._names: set[str] = set()

    @classmethod
    def from_plan(cls, plan: Any, n_devices: int) -> PrivacySpend:
        """A spend record with the plan's δ and accountant (:class:`~ppr.privacy.PrivacyPlan`)."""
        return cls(n_devices, plan.delta, plan.accountant)

    # -- charging -----------------------------------------------------------------------------

    def _eligible(self, eligible_device_ids: Any) -> np.ndarray | None:
        """Sorted unique int64 ids, or ``None`` for every device."""
        if eligible_device_ids is None:
            return None
        ids = np.asarray(eligible_device_ids)
        if ids.dtype == bool:
            if ids.shape != (self.n_devices,):
                raise PprError(
                    f"an eligibility mask must have shape ({self.n_devices},). Found {ids.shape}."
                )
            ids = np.flatnonzero(ids)
        else:
            if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
                raise PprError("`eligible_device_ids` must be a 1-D array of integer device ids.")
            ids = ids.astype(np.int64)
            if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):  # not sorted and unique
                ids = np.unique(ids)
            if ids.size and (ids[0] < 0 or ids[-1] >= self.n_devices):
                raise PprError(f"device ids must lie in [0, {self.n_devices}).")
        if ids.size == self.n_devices:
            return None
        return ids.astype(np.int64)

    def _signature(self, event: dp_event.DpEvent) -> int:
        key = event_key(event)
        k = self._index.get(key)
        if k is None:
            k = len(self._signatures)
            self._index[key] = k
            self._signatures.append(event)
            self._base.append(0)
            self._extra.append(None)
        return k

    def charge(
        self,
        name_or_round: str | int,
        event: dp_event.DpEvent,
        eligible_device_ids: Any = None,
        description: str = "",
    ) -> None:
        """Record a release: ``event`` charged to every eligible device (``None``: all).

        ``name_or_round``: an ``int`` round number (grouped into the ledger entry
        ``rounds_name``) or the unique name of another release (e.g. ``"popularity"``).
        ``eligible_device_ids``: the ids (or a boolean mask) of the devices that were eligible,
        sampled or not; never the sampled cohort. A ``NoOpDpEvent`` (nothing released) charges
        nothing.
        """
        if not isinstance(event, dp_event.DpEvent):
            raise PprError(f"release `{name_or_round}` must be a DpEvent. Found {event!r}.")
        if isinstance(canonical_event(event), dp_event.NoOpDpEvent):
            return
        is_round = isinstance(name_or_round, int | np.integer) and not isinstance(
            name_or_round, bool
        )
        rnd = int(name_or_round) if is_round else None
        name = f"round {rnd}" if is_round else str(name_or_round)
        if name in self._names or (not is_round and name == self.rounds_name):
            what = f"round {rnd}" if is_round else f"a release named `{name}`"
            raise PprError(f"{what} was already charged.")
        ids = self._eligible(eligible_device_ids)
        k = self._signature(event)
        if ids is None:
            self._base[k] += 1
            n_eligible = self.n_devices
        else:
            extra = self._extra[k]
            if extra is None:
                extra = self._extra[k] = np.zeros(self.n_devices, np.int32)
            extra[ids] += 1
            n_eligible = int(ids.size)
        self._releases.append(Release(name, rnd, k, n_eligible, description))
        self._names.add(name)

    # -- reading -------------------------------------------------------------------------------

    @property
    def releases(self) -> tuple[Release, ...]:
        return tuple(self._releases)

    @property
    def signatures(self) -> tuple[dp_event.DpEvent, ...]:
        return tuple(self._signatures)

    def _delta(self, delta: float | None) -> float:
        d = self.delta if delta is None else float(delta)
        if d is None:
            raise PprError("no delta: pass `delta` or build the PrivacySpend with one.")
        check_delta("delta", d)
        return d

    def _run_counts(self) -> np.ndarray:
        counts = np.zeros(len(self._signatures), np.int64)
        for r in self._releases:
            counts[r.signature] += 1
        return counts

    def device_counts(self, device_ids: Any = None) -> np.ndarray:
        """Charges per signature of each device: shape ``(len(ids), n_signatures)`` (int64)."""
        ids = (
            np.arange(self.n_devices)
            if device_ids is None
            else np.asarray(device_ids, np.int64).reshape(-1)
        )
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_devices):
            raise PprError(f"device ids must lie in [0, {self.n_devices}).")
        out = np.empty((ids.size, len(self._signatures)), np.int64)
        for k, base in enumerate(self._base):
            extra = self._extra[k]
            out[:, k] = base + (extra[ids] if extra is not None else 0)
        return out

    def ledger(self) -> PrivacyLedger:
        """The run's ledger: named releases in order, round charges grouped by signature."""
        ledger = PrivacyLedger()
        rounds: dict[int, list[int]] = {}
        for r in self._releases:
            if r.round is None:
                ledger = ledger.add(r.name, self._signatures[r.signature], r.description)
            else:
                if not rounds:
                    ledger = ledger.add(self.rounds_name, dp_accounting.NoOpDpEvent())
                rounds.setdefault(r.signature, []).append(r.round)
        if rounds:
            event = _composition(
                [self._signatures[k] for k in rounds], [len(v) for v in rounds.values()]
            )
            desc = "; ".join(
                f"{len(v)} round(s) of signature {k}: {_round_ranges(v)}" for k, v in rounds.items()
            )
            entries = tuple(
                e if e.name != self.rounds_name else type(e)(e.name, event, desc)
                for e in ledger.entries
            )
            ledger = PrivacyLedger(entries)
        return ledger

    def event(self) -> dp_event.DpEvent:
        """Every charged release composed (the run-level spend)."""
        return _composition(self._signatures, self._run_counts())

    def epsilon(self, delta: float | None = None) -> float:
        """The run's ε: 0 when nothing was released, inf after a non-private release."""
        return epsilon_of(self.event(), self._delta(delta), self.accountant)

    def device_event(self, device_id: int) -> dp_event.DpEvent:
        """The composition of the releases ``device_id`` was eligible for."""
        return _composition(self._signatures, self.device_counts([device_id])[0])

    def device_epsilon(self, device_id: int, delta: float | None = None) -> float:
        """The device's own ε (from its eligibility, never from whether it was sampled)."""
        return epsilon_of(self.device_event(device_id), self._delta(delta), self.accountant)

    def device_epsilons(self, device_ids: Any = None, delta: float | None = None) -> np.ndarray:
        """ε of each device (one accountant call per distinct history)."""
        d = self._delta(delta)
        counts = self.device_counts(device_ids)
        if counts.shape[0] == 0:
            return np.zeros(0)
        rows, inverse = np.unique(counts, axis=0, return_inverse=True)
        eps = np.array(
            [epsilon_of(_composition(self._signatures, r), d, self.accountant) for r in rows]
        )
        return eps[np.asarray(inverse).reshape(-1)]

    # -- filter ---------------------------------------------------------------------------------

    def _max_count(
        self, sigs: list[dp_event.DpEvent], rest: np.ndarray, k: int, cap: float, delta: float
    ) -> int:
        """Largest n with ε(rest + n·sigs[k]) <= cap (-1 if even n = 0 exceeds it).

        Searched with the coarse accountant (pessimistic: its ε is a certified upper bound),
        then the exact accountant checks whether one more still fits. Cached.
        """
        key = (
            tuple(event_key(s) for s in sigs),
            tuple(int(x) for x in rest),
            k,
            float(cap),
            float(delta),
        )
        hit = self._max_counts.get(key)
        if hit is not None:
            return hit

        def eps(n: int, coarse: bool) -> float:
            counts = rest.copy()
            counts[k] = n
            return epsilon_of(_composition(sigs, counts), delta, self.accountant, coarse=coarse)

        if eps(0, coarse=False) > cap:
            best = -1
        else:
            lo, hi = 0, 1  # eps(lo) <= cap (certified); find hi with coarse eps(hi) > cap
            while eps(hi, coarse=True) <= cap:
                lo, hi = hi, hi * 2
                if hi > _MAX_COUNT:
                    self._max_counts[key] = _MAX_COUNT
                    return _MAX_COUNT
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if eps(mid, coarse=True) <= cap:
                    lo = mid
                else:
                    hi = mid
            best = lo  # certified by the coarse (or, for 0, the exact) accountant
            while best + 1 < _MAX_COUNT and eps(best + 1, coarse=False) <= cap:
                best += 1  # the exact accountant is tighter: one more may still fit
        self._max_counts[key] = best
        return best

    def _fits(
        self, counts: np.ndarray, event: dp_event.DpEvent, cap: float, delta: float
    ) -> np.ndarray:
        """For each row of ``counts`` (per-signature charges), whether ``event`` still fits."""
        if counts.shape[0] == 0:
            return np.zeros(0, bool)
        sigs = list(self._signatures)
        noop = isinstance(canonical_event(event), dp_event.NoOpDpEvent)
        k = None if noop else self._index.get(event_key(event))
        if not noop and k is None:  # a signature not charged yet: count 0 everywhere
            sigs.append(event)
            k = len(sigs) - 1
            counts = np.pad(counts, ((0, 0), (0, 1)))
        rows, inverse = np.unique(counts, axis=0, return_inverse=True)
        ok = np.empty(rows.shape[0], bool)
        for i, row in enumerate(rows):
            if k is None:
                eps = epsilon_of(_composition(sigs, row), delta, self.accountant)
                ok[i] = eps <= cap
            else:
                rest = row.copy()
                rest[k] = 0
                ok[i] = row[k] + 1 <= self._max_count(sigs, rest, k, cap, delta)
        return ok[np.asarray(inverse).reshape(-1)]

    def would_exceed(
        self, event: dp_event.DpEvent, target_epsilon: float, delta: float | None = None
    ) -> bool:
        """Whether releasing ``event`` (planned, data-independent) would pass the run's target.

        True means: do not release (skip the round; a skipped round charges nothing).
        """
        check_positive("target_epsilon", target_epsilon)
        d = self._delta(delta)
        counts = self._run_counts()[None, :]
        return not bool(self._fits(counts, event, float(target_epsilon), d)[0])

    def devices_within_cap(
        self,
        event: dp_event.DpEvent,
        cap: float,
        delta: float | None = None,
        device_ids: Any = None,
    ) -> np.ndarray:
        """Boolean mask over ``device_ids`` (default all): whose spend stays ``<= cap`` if
        ``event`` is charged to them. Devices outside it should be made ineligible (not
        sampled, not charged) before the round is drawn."""
        check_positive("cap", cap)
        d = self._delta(delta)
        return self._fits(self.device_counts(device_ids), event, float(cap), d)

    # -- JSON (trusted side) ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Counts per event signature per device (grouped into profiles of equal counts, device
        ids as half-open ranges), the releases, and the signatures; no sampling outcome."""
        counts = self.device_counts()
        profiles = []
        if counts.shape[1]:
            rows, inverse = np.unique(counts, axis=0, return_inverse=True)
            inverse = np.asarray(inverse).reshape(-1)
            order = np.argsort(inverse, kind="stable")
            bounds = np.searchsorted(inverse[order], np.arange(rows.shape[0] + 1))
            for i, row in enumerate(rows):
                ids = np.sort(order[bounds[i] : bounds[i + 1]])
                profiles.append({"counts": [int(c) for c in row], "devices": _ranges(ids)})
        return {
            "format": SPEND_FORMAT,
            "n_devices": self.n_devices,
            "delta": self.delta,
            "accountant": self.accountant,
            "rounds_name": self.rounds_name,
            "signatures": [event_to_json(s) for s in self._signatures],
            "releases": [
                {
                    "name": r.name,
                    "round": r.round,
                    "signature": r.signature,
                    "eligible": r.eligible,
                    "description": r.description,
                }
                for r in self._releases
            ],
            "profiles": profiles,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` atomically. Trusted side only: it is per-device data."""
        return atomic_write_text(path, self.to_json() + "\n")


def _round_ranges(rounds: list[int]) -> str:
    runs = _ranges(np.asarray(sorted(rounds), np.int64))
    return ", ".join(str(a) if b == a + 1 else f"{a}-{b - 1}" for a, b in runs)


def spend_from_json(data: str | bytes | dict[str, Any]) -> PrivacySpend:
    """Rebuild a :class:`PrivacySpend` from :meth:`PrivacySpend.to_json`."""
    data = decode_format(data, SPEND_FORMAT, "privacy spend record")
    try:
        spend = PrivacySpend(
            int(data["n_devices"]),
            data.get("delta"),
            str(data.get("accountant", DEFAULT_ACCOUNTANT)),
            rounds_name=str(data.get("rounds_name", "dpfedavg")),
        )
        for s in data["signatures"]:
            spend._signature(event_from_json(s))
        n_sig = len(spend._signatures)
        for r in data["releases"]:
            k = int(r["signature"])
            if not 0 <= k < n_sig:
                raise PprError(f"release {r!r} names an unknown signature.")
            rnd = r.get("round")
            spend._names.add(str(r["name"]))
            spend._releases.append(
                Release(
                    str(r["name"]),
                    None if rnd is None else int(rnd),
                    k,
                    int(r["eligible"]),
                    str(r.get("description", "")),
                )
            )
        counts = np.zeros((spend.n_devices, n_sig), np.int64)
        seen = np.zeros(spend.n_devices, bool)
        for p in data["profiles"]:
            row = np.asarray(p["counts"], np.int64)
            if row.shape != (n_sig,) or (row < 0).any():
                raise PprError(f"malformed profile counts {p['counts']!r}.")
            for a, b in p["devices"]:
                if not 0 <= a < b <= spend.n_devices or seen[a:b].any():
                    raise PprError(f"malformed device range [{a}, {b}).")
                counts[a:b] = row
                seen[a:b] = True
    except (KeyError, TypeError, ValueError) as exc:
        raise PprError(f"malformed privacy spend record: {exc!r}.") from None
    if n_sig and not seen.all():
        raise PprError("privacy spend record does not cover every device.")
    for k in range(n_sig):
        base = int(counts[:, k].min()) if counts.shape[0] else 0
        spend._base[k] = base
        if (counts[:, k] != base).any():
            spend._extra[k] = (counts[:, k] - base).astype(np.int32)
    run = spend._run_counts()
    if n_sig and (counts > run[None, :]).any():
        raise PprError("a device is charged more often than the run released.")
    return spend


def load_spend(path: str | Path) -> PrivacySpend:
    """Read a record written by :meth:`PrivacySpend.save`."""
    return spend_from_json(Path(path).read_text(encoding="utf-8"))

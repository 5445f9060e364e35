"""The privacy ledger: every DP release of a run as named DpEvents (privacy as data).

A :class:`PrivacyLedger` is immutable; :meth:`PrivacyLedger.add` returns a new ledger with one
more entry. Its ε is computed only by an accountant over the composition of all entries, so a
release that is not in the ledger is not covered by the reported ε. The JSON form is
``{"format": "ppr.privacy.ledger/1", "entries": [{"name", "description", "event"}], ...}`` with
events encoded by :func:`ppr.privacy.events.event_to_json`; :func:`ledger_from_json` reverses it.

Honest ε: an empty ledger (nothing released) has ε = 0; a ledger with a non-private release
(``NonPrivateDpEvent``, e.g. an un-noised aggregate, or a Gaussian with σ = 0) has ε = inf, and
its JSON summary says ``"epsilon": "inf"`` (strict JSON has no infinity). The default accountant
is PLD; the format is unchanged from the first version (``ppr.privacy.ledger/1``), so older
ledgers load as before.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dp_accounting
from dp_accounting import dp_event

from ppr.errors import PprError
from ppr.io import atomic_write_text
from ppr.privacy.accounting import epsilon_of
from ppr.privacy.events import event_from_json, event_to_json

LEDGER_FORMAT = "ppr.privacy.ledger/1"


@dataclass(frozen=True)
class LedgerEntry:
    """One release: a unique ``name``, its DpEvent and a human description."""

    name: str
    event: dp_event.DpEvent
    description: str = ""


@dataclass(frozen=True)
class PrivacyLedger:
    """Immutable, ordered collection of named releases. Invariant: names are unique."""

    entries: tuple[LedgerEntry, ...] = ()

    def add(self, name: str, event: dp_event.DpEvent, description: str = "") -> PrivacyLedger:
        """A new ledger with ``(name, event, description)`` appended."""
        if not isinstance(event, dp_event.DpEvent):
            raise PprError(f"ledger entry `{name}` must be a DpEvent. Found {event!r}.")
        if any(e.name == name for e in self.entries):
            raise PprError(f"ledger already has an entry named `{name}`.")
        return PrivacyLedger((*self.entries, LedgerEntry(name, event, description)))

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)

    def get(self, name: str) -> LedgerEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    def composed(self) -> dp_accounting.ComposedDpEvent:
        """All entries composed, in order."""
        return dp_accounting.ComposedDpEvent([e.event for e in self.entries])

    def epsilon(self, delta: float, accountant: str = "pld") -> float:
        """ε of the whole ledger at ``delta``: 0 for an empty ledger, inf if any release is
        non-private."""
        return epsilon_of(self.composed(), delta, accountant)

    def to_dict(self, delta: float | None = None, accountant: str = "pld") -> dict[str, Any]:
        """JSON-compatible dict; with ``delta``, a ``summary`` with the accountant's ε is added
        (informational: :func:`ledger_from_json` ignores it)."""
        out: dict[str, Any] = {
            "format": LEDGER_FORMAT,
            "entries": [
                {"name": e.name, "description": e.description, "event": event_to_json(e.event)}
                for e in self.entries
            ],
        }
        if delta is not None:
            eps = self.epsilon(delta, accountant)
            out["summary"] = {
                "delta": float(delta),
                "accountant": accountant,
                "epsilon": eps if math.isfinite(eps) else "inf",
                "private": math.isfinite(eps),
            }
        return out

    def to_json(self, delta: float | None = None, accountant: str = "pld") -> str:
        """Strict JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(delta, accountant), indent=2, allow_nan=False)

    def save(self, path: str | Path, delta: float | None = None, accountant: str = "pld") -> Path:
        """Write :meth:`to_json` atomically (temporary file in the same folder + ``os.replace``)."""
        return atomic_write_text(path, self.to_json(delta, accountant) + "\n")


def decode_format(data: str | bytes | dict[str, Any], fmt: str, what: str) -> dict[str, Any]:
    """``data`` (JSON text or an already decoded dict) as a dict whose ``format`` is ``fmt``;
    anything else is a one-line :class:`PprError` naming ``what`` it should have been."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise PprError(f"{what} is not valid JSON: {exc}.") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise PprError(f"not a {what} (expected format {fmt!r}).")
    return data


def ledger_from_json(data: str | bytes | dict[str, Any]) -> PrivacyLedger:
    """Decode :meth:`PrivacyLedger.to_json` / :meth:`PrivacyLedger.to_dict` output."""
    data = decode_format(data, LEDGER_FORMAT, "privacy ledger")
    ledger = PrivacyLedger()
    for entry in data.get("entries", []):
        if not isinstance(entry, dict) or "name" not in entry or "event" not in entry:
            raise PprError(f"malformed ledger entry: {entry!r}.")
        ledger = ledger.add(
            str(entry["name"]), event_from_json(entry["event"]), str(entry.get("description", ""))
        )
    return ledger


def load_ledger(path: str | Path) -> PrivacyLedger:
    """Read a ledger written by :meth:`PrivacyLedger.save`."""
    return ledger_from_json(Path(path).read_text(encoding="utf-8"))

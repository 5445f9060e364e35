"""The one channel through which every message between roles passes, counting bytes.

Roles are named ``"<role>"`` or ``"<role>/<id>"`` (e.g. ``"device/17"``); counts are kept per
sender role, per receiver role, per message kind and per round, so reported sizes are the sizes
of the serialized bytes that actually crossed a role boundary.
"""

from __future__ import annotations

from collections import defaultdict

KIND_PUBLIC_CONTEXT = "public_context"
KIND_UPDATE = "update"
KIND_AGGREGATE = "aggregate"
KIND_RESULT = "result"


def role_of(name: str) -> str:
    """``"device/17"`` -> ``"device"``; ``"aggregator"`` -> ``"aggregator"``."""
    return name.split("/", 1)[0]


class Channel:
    """Byte-counting message channel (in-process; payloads are passed through unchanged).

    Invariant: ``totals()["total_bytes"]`` equals the sum of ``len(payload)`` over all
    ``send`` calls, and equals the sum of every breakdown (by sender role, receiver role, kind,
    round).
    """

    def __init__(self) -> None:
        self._messages = 0
        self._total = 0
        self._by_sender: dict[str, int] = defaultdict(int)
        self._by_receiver: dict[str, int] = defaultdict(int)
        self._by_kind: dict[str, int] = defaultdict(int)
        self._by_round: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._uploaders: dict[int, set[str]] = defaultdict(set)

    def send(self, sender: str, receiver: str, kind: str, payload: bytes, round_idx: int) -> bytes:
        """Record ``payload`` crossing from ``sender`` to ``receiver``; return it unchanged."""
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"`payload` must be bytes. Found {type(payload).__name__}.")
        if not sender or not receiver or not kind:
            raise ValueError("`sender`, `receiver` and `kind` must be non-empty strings.")
        n = len(payload)
        self._messages += 1
        self._total += n
        self._by_sender[role_of(sender)] += n
        self._by_receiver[role_of(receiver)] += n
        self._by_kind[kind] += n
        self._by_round[int(round_idx)][kind] += n
        if kind == KIND_UPDATE:
            self._uploaders[int(round_idx)].add(sender)
        return bytes(payload)

    def totals(self) -> dict:
        """Byte counts: total, messages, by_sender / by_receiver role, by_kind, by_round."""
        return {
            "total_bytes": self._total,
            "messages": self._messages,
            "by_sender": dict(self._by_sender),
            "by_receiver": dict(self._by_receiver),
            "by_kind": dict(self._by_kind),
            "by_round": {r: dict(k) for r, k in sorted(self._by_round.items())},
        }

    def bytes_per_device_upload(self, round_idx: int | None = None) -> float:
        """Mean ``update`` bytes per (device, round) upload, in one round or over all rounds."""
        rounds = [round_idx] if round_idx is not None else list(self._uploaders)
        n_uploads = sum(len(self._uploaders.get(r, ())) for r in rounds)
        if n_uploads == 0:
            return 0.0
        total = sum(self._by_round.get(r, {}).get(KIND_UPDATE, 0) for r in rounds)
        return total / n_uploads

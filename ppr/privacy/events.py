"""DpEvents of ppr's mechanisms and their faithful JSON encoding.

A DpEvent (``dp_accounting``) describes a mechanism precisely enough for any accountant. The JSON
encoding mirrors the attrs structure: ``{"type": "<class name>", <field>: <value>, ...}`` with
nested events encoded recursively (``event`` of a SelfComposed/PoissonSampled event, the
``events`` list of a ComposedDpEvent). Non-finite floats are written as ``{"$float": "inf"}`` so
the output is strict JSON. Decoding only instantiates DpEvent subclasses of
``dp_accounting.dp_event`` (nothing else is importable from a ledger file).
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import attr
import dp_accounting
from dp_accounting import dp_event

from ppr.errors import PprError
from ppr.privacy._checks import check_count, check_non_negative, check_rate
from ppr.privacy.ddg import DistributedDiscreteGaussianDpEvent


def gaussian_rounds_event(noise_multiplier: float, sampling_rate: float) -> dp_event.DpEvent:
    """One round of DP-FedAvg: Poisson-sampled Gaussian (plain Gaussian when ``q == 1``).

    ``noise_multiplier == 0`` is a non-private round (``NonPrivateDpEvent``: infinite epsilon).
    """
    check_non_negative("noise_multiplier", noise_multiplier)
    check_rate("sampling_rate", sampling_rate)
    if noise_multiplier == 0:
        return dp_accounting.NonPrivateDpEvent()
    gaussian = dp_accounting.GaussianDpEvent(float(noise_multiplier))
    if float(sampling_rate) == 1.0:
        return gaussian
    return dp_accounting.PoissonSampledDpEvent(float(sampling_rate), gaussian)


def dpfedavg_event(noise_multiplier: float, sampling_rate: float, rounds: int) -> dp_event.DpEvent:
    """``SelfComposed(PoissonSampled(q, Gaussian(σ)), T)``: T rounds of DP-FedAvg."""
    check_count("rounds", rounds)
    return dp_accounting.SelfComposedDpEvent(
        gaussian_rounds_event(noise_multiplier, sampling_rate), int(rounds)
    )


def realized_rounds_event(
    noise_multipliers: Iterable[float], sampling_rate: float
) -> dp_event.DpEvent:
    """The rounds actually run, one realized σ per round, grouped by value with ``count=``.

    Rounds with the same realized σ become one SelfComposed event (no loop of compositions);
    the groups are composed in order of first appearance.
    """
    counts = Counter(float(s) for s in noise_multipliers)
    if not counts:
        return dp_accounting.NoOpDpEvent()
    events = [
        dp_accounting.SelfComposedDpEvent(gaussian_rounds_event(s, sampling_rate), n)
        for s, n in counts.items()
    ]
    return events[0] if len(events) == 1 else dp_accounting.ComposedDpEvent(events)


# ------------------------------------------------------------------------------------------
# JSON encoding


def _encode_value(value: Any) -> Any:
    if isinstance(value, dp_event.DpEvent):
        return event_to_json(value)
    if isinstance(value, enum.Enum):
        return {"$enum": type(value).__name__, "value": value.name}
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if hasattr(value, "item") and not hasattr(value, "__len__"):  # numpy scalar
        return _encode_value(value.item())
    if isinstance(value, list | tuple):
        return [_encode_value(v) for v in value]
    raise PprError(f"cannot encode a DpEvent field of type {type(value).__name__} as JSON.")


def event_to_json(event: dp_event.DpEvent) -> dict[str, Any]:
    """Encode a DpEvent as a JSON-compatible dict (see the module docstring)."""
    if not isinstance(event, dp_event.DpEvent):
        raise PprError(f"not a DpEvent: {event!r}.")
    out: dict[str, Any] = {"type": type(event).__name__}
    for f in attr.fields(type(event)):
        out[f.name] = _encode_value(getattr(event, f.name))
    return out


def _event_class(name: Any) -> type[dp_event.DpEvent]:
    cls = getattr(dp_event, str(name), None)
    if str(name) == DistributedDiscreteGaussianDpEvent.__name__:  # ppr's own (ppr.privacy.ddg)
        cls = DistributedDiscreteGaussianDpEvent
    if not (isinstance(cls, type) and issubclass(cls, dp_event.DpEvent)):
        raise PprError(f"unknown DpEvent type {name!r} in ledger.")
    return cls


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "$float" in value:
            return float(value["$float"])
        if "$enum" in value:
            enum_cls = getattr(dp_accounting, str(value["$enum"]), None)
            if not (isinstance(enum_cls, type) and issubclass(enum_cls, enum.Enum)):
                raise PprError(f"unknown enum {value['$enum']!r} in ledger.")
            return enum_cls[value["value"]]
        return event_from_json(value)
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def event_from_json(data: dict[str, Any]) -> dp_event.DpEvent:
    """Decode :func:`event_to_json` output back into an equal DpEvent."""
    if not isinstance(data, dict) or "type" not in data:
        raise PprError(f"malformed DpEvent in ledger: {data!r}.")
    cls = _event_class(data["type"])
    names = {f.name for f in attr.fields(cls)}
    extra = set(data) - names - {"type"}
    if extra:
        raise PprError(f"unknown field(s) {sorted(extra)} for {cls.__name__} in ledger.")
    try:
        return cls(**{k: _decode_value(v) for k, v in data.items() if k != "type"})
    except TypeError as exc:
        raise PprError(f"malformed {cls.__name__} in ledger: {exc}.") from None

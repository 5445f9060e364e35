"""The typed run summary, and the release boundary: every field is public, protected or diagnostic.

Classification (field metadata ``release``):

* ``public``: a function of the config and the privacy plan only (data-independent): the run's
  name, seed, rounds, ε target, δ, σ, clip norm, accountant, the noise mode...
* ``protected``: released under the run's DP guarantee, covered by the ledger: the spent ε read
  from the ledger of the rounds that really ran (a function of planned quantities and of the
  privacy filter's data-independent decisions), the model's version.
* ``diagnostic``: computed on raw data and NOT private: metrics on held-out events (their users'
  raw items), exact counts, per-round norms and clipped fractions, bytes, timings, baselines
  trained without DP. Useful to an experimenter; never to be published as private.

A protected-only run directory (``output.protected_only``) writes :meth:`RunSummary.to_dict` with
``kinds={"public", "protected"}``. A test walks every field and fails on an unclassified one.
``to_dict`` keeps the JSON layout the sweep and the reports read (``metrics``, ``privacy``...).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ppr.io import json_safe

PUBLIC, PROTECTED, DIAGNOSTIC = "public", "protected", "diagnostic"
KINDS = (PUBLIC, PROTECTED, DIAGNOSTIC)
ALL = frozenset(KINDS)
RELEASED = frozenset({PUBLIC, PROTECTED})


def _r(kind: str, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    assert kind in KINDS
    if callable(default) and not isinstance(default, type):
        return field(default_factory=default, metadata={"release": kind}, **kw)
    return field(default=default, metadata={"release": kind}, **kw)


@dataclass(frozen=True)
class DataSummary:
    source: str = _r(PUBLIC)
    items: int = _r(PUBLIC)  # the catalog: the released model has one row per item
    users: int = _r(DIAGNOSTIC)
    devices: int = _r(DIAGNOSTIC)
    train_positives: int = _r(DIAGNOSTIC)
    evaluation_positives: int = _r(DIAGNOSTIC)


@dataclass(frozen=True)
class PrivacySummary:
    epsilon: float = _r(PUBLIC)
    delta: float = _r(PUBLIC)
    noise_multiplier: float = _r(PUBLIC)
    popularity_noise_multiplier: float = _r(PUBLIC)
    clip_norm: float = _r(PUBLIC)
    noise: str | None = _r(PUBLIC)
    accountant: str = _r(PUBLIC)
    randomness: str = _r(PUBLIC)  # "secret (OS)" or "seeded (noise_seed = S): ..." or "none"
    epsilon_spent: float = _r(PROTECTED)
    rounds_released: int = _r(PROTECTED)
    ledger: list = _r(PROTECTED, list)
    not_included: str = _r(PUBLIC, "")  # what the printed epsilon does not cover

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon)

    @property
    def secret(self) -> bool:
        return self.randomness.startswith("secret")


@dataclass(frozen=True)
class CommunicationSummary:
    mode: str = _r(PUBLIC)
    channel: dict | None = _r(DIAGNOSTIC, None)
    upload_bytes_total: int = _r(DIAGNOSTIC, 0)
    upload_bytes_per_device: float = _r(DIAGNOSTIC, 0.0)
    mean_participants: float = _r(DIAGNOSTIC, 0.0)
    flooding_std: float = _r(PUBLIC, 0.0)


@dataclass(frozen=True)
class TimingSummary:
    data_s: float = _r(DIAGNOSTIC)
    train_s: float = _r(DIAGNOSTIC)
    evaluation_s: float = _r(DIAGNOSTIC)
    total_s: float = _r(DIAGNOSTIC)
    peak_rss_mib: float = _r(DIAGNOSTIC)


@dataclass(frozen=True)
class RunSummary:
    """What a run produced, by attribute; :meth:`to_dict` is its JSON form (``summary.json``)."""

    name: str = _r(PUBLIC)
    seed: int = _r(PUBLIC)
    rounds: int = _r(PUBLIC)
    evaluated_on: str = _r(PUBLIC)
    data: DataSummary = _r(PUBLIC)
    privacy: PrivacySummary = _r(PUBLIC)
    communication: CommunicationSummary = _r(PUBLIC)
    timing: TimingSummary = _r(PUBLIC)
    metrics: dict = _r(DIAGNOSTIC, dict)
    baselines: dict = _r(DIAGNOSTIC, dict)
    tiers: dict = _r(DIAGNOSTIC, dict)  # device tiers: rounds and recall by tier, activity
    model_version: str = _r(PROTECTED, "")
    run_dir: str | None = _r(PUBLIC, None)

    def recall(self, k: int | None = None) -> float:
        """recall@k of the federated model (the first recall@ key when ``k`` is None)."""
        key = f"recall@{k}" if k else next(m for m in self.metrics if m.startswith("recall@"))
        return float(self.metrics[key])

    def to_dict(self, kinds: frozenset[str] = ALL) -> dict[str, Any]:
        """JSON-safe dict of the fields whose class is in ``kinds`` (nested summaries are
        containers: their own fields are filtered)."""
        return json_safe(_filtered(self, kinds))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        """Rebuild from :meth:`to_dict` output (``"inf"`` strings back to floats)."""
        return _build(cls, data)


def _filtered(obj: Any, kinds: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = _filtered(v, kinds)
        elif f.metadata["release"] in kinds:
            out[f.name] = v
    return out


def _build(cls: type, data: dict[str, Any]) -> Any:
    kw: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        v = data[f.name]
        nested = globals().get(str(f.type))
        if isinstance(nested, type) and dataclasses.is_dataclass(nested) and isinstance(v, dict):
            v = _build(nested, v)
        elif v in ("inf", "-inf") and str(f.type) in ("float", "float | None"):
            v = float(v)
        kw[f.name] = v
    return cls(**kw)


def classification(cls: type = RunSummary, prefix: str = "") -> dict[str, str]:
    """``{"privacy.epsilon": "public", ...}`` for every leaf field (missing class: ``""``)."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        tp = f.type if isinstance(f.type, type) else globals().get(str(f.type))
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out.update(classification(tp, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = f.metadata.get("release", "")
    return out

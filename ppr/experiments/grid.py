"""The grid of a sweep: ``cfg.sweep`` expanded into points, their ids and their configs.

Invariants:

* Points come in a fixed order: ε (outer) × grid values (in the key order of ``sweep.grid``) ×
  seeds (inner); ``SweepPoint.index`` is the position in that order.
* A point's id names its directory (``points/<point_id>/``) and is a pure function of
  (ε, seed, resolved grid values): ``eps-<ε>_seed-<seed>`` then ``_<key>-<value>`` per grid key
  (``inf`` for ∞, integral floats below 1e15 without ``.0``, booleans as ``true``/``false``).
  When that raw id holds characters outside ``[A-Za-z0-9_.+-]`` or is longer than 120
  characters, the id is its first 110 characters with those replaced by ``_``, then ``-`` and 8
  hex digits of the SHA-1 of the raw id. Ids are unique within a sweep (a collision, possible
  only via the hashed form, is refused).
* A point's config is ``base.replace(privacy.epsilon=ε, seed=s, **grid values,
  baselines.centralized=False)`` with the ``sweep`` section reset to its defaults: the sweep
  section only describes the grid, so editing it (adding an ε or a seed) never invalidates the
  points already computed. ``baselines.centralized`` is off because it does not depend on ε; the
  non-private reference is the ε = ∞ point (a grid may still set ``baselines.centralized``).
* Every point's config is validated against the schema by :func:`expand_grid`, so a bad grid key
  or value raises :class:`~ppr.errors.ConfigError` naming it before anything is written or run.
* Two configs are the same when their TOML texts are (:func:`canonical_config`); a sweep's runs
  are identified by the base config with the ``sweep`` section reset (:func:`sweep_neutral`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from ppr.config import Config, get_dotted, to_dict, to_toml
from ppr.errors import ConfigError
from ppr.io import json_safe

__all__ = [
    "SweepPoint",
    "canonical_config",
    "expand_grid",
    "point_config",
    "sweep_neutral",
]

_RESERVED_GRID_KEYS = {
    "privacy.epsilon": "sweep.epsilons",
    "seed": "sweep.seeds",
}


class SweepPoint(NamedTuple):
    """One run of the grid. ``grid`` holds ``(dotted key, resolved value)`` pairs in the order of
    ``sweep.grid``; ``point_id`` names its directory and is unique within the sweep."""

    index: int
    epsilon: float
    seed: int
    grid: tuple[tuple[str, Any], ...]
    point_id: str

    @property
    def overrides(self) -> dict[str, Any]:
        """The dotted-key overrides that turn the base config into this point's config."""
        return {"privacy.epsilon": self.epsilon, "seed": self.seed, **dict(self.grid)}

    def info(self) -> dict[str, Any]:
        """JSON-safe description (stored in ``point.json``)."""
        info = {"point_id": self.point_id, "epsilon": self.epsilon, "seed": self.seed}
        return json_safe({**info, "grid": dict(self.grid)})


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _point_id(epsilon: float, seed: int, grid: Sequence[tuple[str, Any]]) -> str:
    raw = f"eps-{_fmt_value(epsilon)}_seed-{seed}" + "".join(
        f"_{k}-{_fmt_value(v)}" for k, v in grid
    )
    safe = re.sub(r"[^\w.+-]", "_", raw, flags=re.ASCII)
    if safe != raw or len(safe) > 120:
        digest = hashlib.sha1(raw.encode("utf-8")).hexdigest()[:8]
        safe = f"{safe[:110]}-{digest}"
    return safe


def sweep_neutral(cfg: Config) -> Config:
    """``cfg`` with the ``sweep`` section reset: what identifies the runs of a sweep."""
    return cfg.replace(sweep={})


def canonical_config(cfg: Config) -> str:
    """Comparison key of a config: its TOML text. (Dataclass equality is not enough: an
    unvalidated default such as ``"inf"`` compares unequal to the parsed ``math.inf``.)"""
    return to_toml(cfg)


def point_config(base: Config, point: SweepPoint) -> Config:
    """The validated config of one point (see the module invariants)."""
    return base.replace(**{"sweep": {}, "baselines.centralized": False, **point.overrides})


def expand_grid(cfg: Config) -> list[SweepPoint]:
    """All points of ``cfg.sweep``: ε (outer) × grid values (in key order) × seeds (inner).

    Every point's config is validated here, so a bad grid key or value raises
    :class:`~ppr.errors.ConfigError` naming it before anything runs."""
    sw = cfg.sweep
    epsilons = [float(e) for e in sw.epsilons]  # the default list holds the string "inf"
    for name, values in (("sweep.epsilons", epsilons), ("sweep.seeds", sw.seeds)):
        if len(set(values)) != len(values):
            raise ConfigError(f"`{name}` has duplicate values. Found {json_safe(list(values))}.")
    keys = list(sw.grid)
    for key in keys:
        if key in _RESERVED_GRID_KEYS:
            raise ConfigError(
                f"`sweep.grid` must not contain `{key}`; use `{_RESERVED_GRID_KEYS[key]}`."
            )
        if key == "sweep" or key.startswith("sweep."):
            raise ConfigError(f"`sweep.grid` must not contain `{key}`.")
        values = sw.grid[key]
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"`sweep.grid.{key}` must be a non-empty list of values. Found {values!r}."
            )
    # Validate and resolve every grid value once (e.g. 1 -> 1.0 for a float key).
    resolved: list[list[Any]] = []
    for key in keys:
        vals = []
        for v in sw.grid[key]:
            try:
                d = to_dict(cfg.replace(**{key: v}))
            except ConfigError as exc:
                raise ConfigError(f"sweep.grid: {exc}") from None
            vals.append(get_dotted(d, key))
        if len({json.dumps(json_safe(x), sort_keys=True) for x in vals}) != len(vals):
            raise ConfigError(
                f"`sweep.grid.{key}` has duplicate values. Found {json_safe(sw.grid[key])}."
            )
        resolved.append(vals)
    points: list[SweepPoint] = []
    for eps in epsilons:
        for combo in itertools.product(*resolved):
            grid = tuple(zip(keys, combo, strict=True))
            for seed in sw.seeds:
                pid = _point_id(eps, seed, grid)
                points.append(SweepPoint(len(points), float(eps), int(seed), grid, pid))
    if len({p.point_id for p in points}) != len(points):  # only via hash-truncated ids
        raise ConfigError("sweep.grid: two points map to the same directory name.")
    for p in points:  # combinations may still be invalid together
        try:
            point_config(cfg, p)
        except ConfigError as exc:
            raise ConfigError(f"sweep point {p.point_id}: {exc}") from None
    return points

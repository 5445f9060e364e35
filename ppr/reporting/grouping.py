"""The rows of a finished sweep and its aggregated files.

Run rows (one per point, i.e. per seed: :func:`ppr.experiments.sweep.run_row`) come in; the
aggregated rows (one per (ε, grid values)) average the numeric fields over seeds. The aggregated
rows go to ``points.json`` and ``points.csv``, the run rows to ``runs.csv``, and recall@k against ε
to ``recall_vs_epsilon.png`` (:mod:`ppr.reporting.plots`; the layout of a sweep directory:
:mod:`ppr.experiments.sweep`).

Invariants:

* Rows are JSON-safe (ε = ∞ is ``"inf"``, :func:`~ppr.io.json_safe`); a mean over no
  value is ``None``, and a std is the sample std, ``None`` for fewer than two seeds.
* Rows keep the order of the grid (:func:`~ppr.experiments.grid.expand_grid`): aggregated rows in
  first-seen order of their (ε, grid values).
* CSV columns: the leading ones named by the caller, then every other field in first-seen order;
  a column no row has is left out.
* Every file is written atomically (:mod:`ppr.io`); matplotlib is imported only when the
  plot is drawn.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ppr.io import atomic_write_csv, atomic_write_json, json_safe

__all__ = ["summarize_runs", "write_reports"]

_NOT_AVERAGED = {"point_id", "epsilon", "seed", "k", "run_dir", "epsilon_spent"}


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, str):
        return math.inf if v == "inf" else None
    return float(v)


def _mean(vals: list[float]) -> float | None:
    return sum(vals) / len(vals) if vals else None


def _std(vals: list[float]) -> float | None:
    if len(vals) < 2:
        return None
    m = sum(vals) / len(vals)
    return math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def summarize_runs(
    runs: list[dict[str, Any]], grid_keys: Sequence[str], metric_keys: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per (ε, grid values), in first-seen order: numeric fields averaged over seeds,
    ``metric_keys`` (the run's own metrics) also get ``<key>_std``; ``epsilon_spent`` is the max
    over seeds. Missing values are skipped (a mean over none is ``None``)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        key = json.dumps([r["epsilon"], *[r.get(g) for g in grid_keys]], sort_keys=True)
        groups.setdefault(key, []).append(r)
    points: list[dict[str, Any]] = []
    for rows in groups.values():
        first = rows[0]
        p: dict[str, Any] = {"epsilon": first["epsilon"]}
        p.update({g: first.get(g) for g in grid_keys})
        p["k"] = first["k"]
        p["seeds"] = [r["seed"] for r in rows]
        p["n_seeds"] = len(rows)
        fields = [f for f in dict.fromkeys(k for r in rows for k in r)
                  if f not in _NOT_AVERAGED and f not in grid_keys]  # fmt: skip
        for f in fields:
            vals = [x for x in (_num(r.get(f)) for r in rows) if x is not None]
            p[f] = json_safe(_mean(vals))
            if f in metric_keys:
                p[f"{f}_std"] = json_safe(_std(vals))
        spent = [x for x in (_num(r.get("epsilon_spent")) for r in rows) if x is not None]
        p["epsilon_spent"] = json_safe(max(spent)) if spent else None
        points.append(p)
    return points


def _order_columns(rows: list[dict[str, Any]], first: Sequence[str]) -> list[str]:
    cols = list(dict.fromkeys([*first, *(k for r in rows for k in r)]))
    return [c for c in cols if any(c in r for r in rows)]


def write_reports(
    out_dir: Path,
    agg: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    grid_keys: Sequence[str],
    *,
    plot: bool = True,
) -> dict[str, Path]:
    """Write ``points.json``, ``points.csv``, ``runs.csv`` and (with ``plot``)
    ``recall_vs_epsilon.png`` into ``out_dir``; returns their paths by name (``points_json``,
    ``points_csv``, ``runs_csv``, ``plot``)."""
    files: dict[str, Path] = {}
    first = ["epsilon", "noise_multiplier", *grid_keys]
    files["points_json"] = atomic_write_json(out_dir / "points.json", agg)
    files["points_csv"] = atomic_write_csv(out_dir / "points.csv", agg, _order_columns(agg, first))
    run_cols = _order_columns(runs, ["point_id", "epsilon", "seed", *grid_keys])
    files["runs_csv"] = atomic_write_csv(out_dir / "runs.csv", runs, run_cols)
    if plot:
        from ppr.reporting.plots import plot_recall_vs_epsilon

        files["plot"] = plot_recall_vs_epsilon(agg, out_dir / "recall_vs_epsilon.png", grid_keys)
    return files

"""Grid sweeps: ε (including ∞) × seeds × optional other config keys, run in parallel, resumable.

This module holds the entry point :func:`run_sweep` and the sweep-level rules; the parts live in
:mod:`ppr.experiments.grid` (points, their ids and configs), :mod:`ppr.experiments.executor`
(running points, ``point.json``, workers) and :mod:`ppr.reporting.grouping` (mean/std over
seeds, the aggregated files).

Layout of a sweep directory ``out_dir``::

    sweep_config.toml          resolved base config (written first)
    points/<point_id>/         one run directory per (ε, grid values, seed): the files of
                               ``simulate`` (config.toml, metrics.jsonl, summary.json, ...)
                               and ``point.json``, the point's result, written atomically LAST,
                               after the run succeeded
    points.json, points.csv    aggregated rows (mean/std over seeds), one per (ε, grid values)
    runs.csv                   one row per run (per seed)
    recall_vs_epsilon.png      recall@k against ε (log axis), non-private and popularity lines

Invariants:

* A point's config is the base config with the point's ε, seed and grid values,
  ``baselines.centralized`` off and the ``sweep`` section reset, so editing the sweep section
  (adding an ε or a seed) never invalidates the points already computed (details:
  :mod:`ppr.experiments.grid`).
* Every point's config is validated (schema, then the run's cross-key checks) before
  anything is written or run.
* On resume, a point counts as done only when its ``point.json`` parses and holds the point's
  config; any other point (missing, partial, corrupted, stale) is rerun from an empty directory
  (details: :mod:`ppr.experiments.executor`).
* Resume refuses (``ConfigError`` naming the differing keys) when the directory was swept with a
  different base config outside the ``sweep`` section: mixing results from two configs in one
  table would be silently wrong, and rerunning everything would silently destroy them.
* Aggregated outputs are written only when every point of the current grid is done, and cover
  exactly the current grid (points left over from a larger earlier grid are kept on disk, unused).
* Points run in parallel ``spawn``-ed workers that share the cores without oversubscribing them;
  one worker runs in-process. A failed point stops the sweep and its error is re-raised, a user
  error as a :class:`~ppr.errors.PprError` (details: :mod:`ppr.experiments.executor`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from ppr.config import Config, flatten, load_config, to_dict, to_toml
from ppr.errors import ConfigError, PprError
from ppr.experiments.executor import (
    POINT_FILE,
    auto_workers,
    execute_points,
    load_done,
    sweep_executor,
)
from ppr.experiments.factories import check_run
from ppr.experiments.grid import (
    SweepPoint,
    canonical_config,
    expand_grid,
    point_config,
    sweep_neutral,
)
from ppr.io import atomic_write_text, json_safe
from ppr.reporting.grouping import summarize_runs, write_reports

__all__ = [
    "POINT_FILE",
    "SweepPoint",
    "SweepProgress",
    "SweepResult",
    "auto_workers",
    "expand_grid",
    "point_config",
    "run_sweep",
    "summarize_runs",
]

SWEEP_CONFIG_FILE = "sweep_config.toml"
POINTS_DIR = "points"


class SweepProgress(NamedTuple):
    """What a sweep reports to its ``progress`` callback.

    ``kind`` is ``"start"`` once (``done`` = points already complete on resume), ``"point"`` after
    each finished point, and ``"round"`` during a point run in-process (``round``/``rounds``)."""

    kind: Literal["start", "round", "point"]
    done: int
    total: int
    point: SweepPoint | None = None
    round: int = 0
    rounds: int = 0


@dataclass(frozen=True)
class SweepResult:
    """Outcome of :func:`run_sweep`.

    ``points``: aggregated rows, one per (ε, grid values), JSON-safe (ε = ∞ is ``"inf"``), with
    ``epsilon``, ``noise_multiplier``, ``recall@K``/``ndcg@K`` (mean over seeds) and their
    ``_std`` (sample std, ``None`` for one seed), ``seeds``, the grid keys, the baselines'
    metrics (``popularity_recall@K``, ``private_popularity_recall@K`` ...) and
    ``upload_bytes_per_device``. ``runs``: one row per run (per seed), same fields without std.
    """

    out_dir: Path
    points: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    ran: int
    skipped: int
    files: dict[str, Path] = field(default_factory=dict)


def _preflight(points: list[SweepPoint], configs: dict[str, Config]) -> None:
    """The run's own cross-key checks on every point, before anything runs (a sweep
    should not fail after an hour on a combination it could have refused up front)."""
    for p in points:
        try:
            check_run(configs[p.point_id])
        except ConfigError as exc:
            raise ConfigError(f"sweep point {p.point_id}: {exc}") from None


def _check_resumable(out_dir: Path, base: Config, resume: bool) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise PprError(f"{out_dir}: exists and is not a directory.")
    if not any(out_dir.iterdir()):
        return
    if not resume:
        raise PprError(
            f"{out_dir} already exists and is not empty; resume it (--resume) or choose another "
            "output directory."
        )
    saved_path = out_dir / SWEEP_CONFIG_FILE
    if not saved_path.is_file():
        raise PprError(f"{out_dir} is not a sweep directory (no {SWEEP_CONFIG_FILE}).")
    saved = sweep_neutral(load_config(saved_path))
    current = sweep_neutral(base)
    if canonical_config(saved) != canonical_config(current):
        a, b = flatten(to_dict(saved)), flatten(to_dict(current))
        diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        raise ConfigError(
            f"{out_dir} was swept with a different base config (differs in: {', '.join(diff)}); "
            "resume with the same config (only the [sweep] section may change) or choose another "
            "output directory."
        )


def run_sweep(
    cfg: Config,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    resume: bool = False,
    progress: Callable[[SweepProgress], None] | None = None,
    plot: bool = True,
) -> SweepResult:
    """Run (or, with ``resume``, complete) the sweep ``cfg.sweep`` of the base config ``cfg``
    into ``out_dir`` and write its reports. ``workers``: parallel points (None:
    ``execution.workers`` or ``cfg.sweep.workers``; 0: auto) on ``execution.executor``.
    Raises :class:`~ppr.errors.PprError` for a bad grid, a non-empty ``out_dir`` without
    ``resume``, or a resume with a different base config."""
    points = expand_grid(cfg)
    configs = {p.point_id: point_config(cfg, p) for p in points}
    _preflight(points, configs)
    out_dir = Path(out_dir)
    _check_resumable(out_dir, cfg, resume)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"sweep_config": atomic_write_text(out_dir / SWEEP_CONFIG_FILE, to_toml(cfg))}

    records: dict[str, dict] = {}
    tasks: list[tuple[SweepPoint, Config, Path]] = []
    for p in points:
        pdir = out_dir / POINTS_DIR / p.point_id
        rec = load_done(pdir, configs[p.point_id]) if resume else None
        if rec is not None:
            records[p.point_id] = rec
        else:
            tasks.append((p, configs[p.point_id], pdir))
    skipped, total = len(records), len(points)
    if progress is not None:
        progress(SweepProgress("start", skipped, total))

    def on_done(point: SweepPoint, record: dict) -> None:
        records[point.point_id] = record
        if progress is not None:
            progress(SweepProgress("point", len(records), total, point))

    def on_round(point: SweepPoint, r: int, n: int) -> None:
        if progress is not None:
            progress(SweepProgress("round", len(records), total, point, r, n))

    with sweep_executor(cfg, workers, len(tasks)) as executor:
        execute_points(tasks, executor, on_done, on_round if progress is not None else None)

    grid_keys = list(cfg.sweep.grid)
    agg, runs = sweep_rows(points, configs, records, grid_keys)
    files.update(write_reports(out_dir, agg, runs, grid_keys, plot=plot))
    return SweepResult(out_dir, agg, runs, ran=len(tasks), skipped=skipped, files=files)


def run_row(point: SweepPoint, cfg: Config, record: dict) -> dict[str, Any]:
    """The row of one run: the point, its metrics, baselines' metrics, privacy, bytes, time."""
    s = record["summary"]
    priv = s.get("privacy", {})
    comm = s.get("communication", {})
    row: dict[str, Any] = {
        "point_id": point.point_id,
        "epsilon": json_safe(point.epsilon),
        "seed": point.seed,
        **{k: json_safe(v) for k, v in point.grid},
        "k": cfg.evaluation.k,
        "noise_multiplier": priv.get("noise_multiplier"),
        "delta": priv.get("delta"),
        "epsilon_spent": priv.get("epsilon_spent"),
    }
    row.update(s.get("metrics", {}))
    for name, metrics in (s.get("baselines") or {}).items():
        for m, v in (metrics or {}).items():
            row[f"{name}_{m}"] = v
    row["upload_bytes_per_device"] = comm.get("upload_bytes_per_device")
    row["upload_bytes_total"] = comm.get("upload_bytes_total")
    row["total_s"] = (s.get("timing") or {}).get("total_s")
    row["run_dir"] = s.get("run_dir")
    return row


def sweep_rows(
    points: Sequence[SweepPoint],
    configs: dict[str, Config],
    records: dict[str, dict],
    grid_keys: Sequence[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(aggregated rows, run rows)`` of the finished ``points`` (configs and ``point.json``
    records by point id); the metrics of any run get a ``_std`` in the aggregated rows."""
    runs = [run_row(p, configs[p.point_id], records[p.point_id]) for p in points]
    metric_keys = sorted({m for p in points for m in records[p.point_id]["summary"]
                          .get("metrics", {})})  # fmt: skip
    return summarize_runs(runs, grid_keys, metric_keys), runs

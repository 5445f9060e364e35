"""Reporting: sweeps over ε × seeds × config keys, their tables, CSV/JSON files and plots.

``run_sweep(cfg, out_dir, workers=..., resume=..., progress=...) -> SweepResult`` is the entry
point (see :mod:`ppr.reporting.sweep` for the directory layout and the resume rules). Its parts:
:mod:`ppr.reporting.grid` (the points of a grid, their ids and configs),
:mod:`ppr.reporting.runner` (running points, ``point.json``, parallel workers),
:mod:`ppr.reporting.aggregate` (run rows, mean/std over seeds, the CSV/JSON files and the plot).
Every file is written atomically (:mod:`ppr.io`). matplotlib is imported only when a plot
is drawn.
"""

from ppr.io import (
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    json_safe,
)
from ppr.reporting.aggregate import aggregate_runs
from ppr.reporting.grid import SweepPoint, expand_grid, point_config
from ppr.reporting.runner import auto_workers
from ppr.reporting.sweep import SweepProgress, SweepResult, run_sweep
from ppr.reporting.tables import sweep_table

__all__ = [
    "SweepPoint",
    "SweepProgress",
    "SweepResult",
    "aggregate_runs",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_text",
    "auto_workers",
    "expand_grid",
    "json_safe",
    "point_config",
    "run_sweep",
    "sweep_table",
]

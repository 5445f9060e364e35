"""Reporting: tables, plots and grouping of run rows (mean and std over seeds) and their files.

The sweep itself (its grid, its executor, its directory) is in :mod:`ppr.experiments`; this
package only turns rows into tables (:mod:`~ppr.reporting.tables`), aggregated rows and files
(:mod:`~ppr.reporting.grouping`) and plots (:mod:`~ppr.reporting.plots`; matplotlib is imported
only when a plot is drawn). It imports nothing above it.
"""

from ppr.reporting.grouping import summarize_runs, write_reports
from ppr.reporting.tables import sweep_table

__all__ = ["summarize_runs", "sweep_table", "write_reports"]

"""The composition root: where a config becomes a run, and runs become a sweep.

* :mod:`~ppr.experiments.factories`: one factory per role (fleet, summation, trainer, keys).
* :mod:`~ppr.experiments.simulate`: :func:`simulate`, a run as the list of its stages.
* :mod:`~ppr.experiments.accounting`: the live ledger, charged as rounds are released.
* :mod:`~ppr.experiments.session`: the run directory, checkpoints, resume, the release boundary.
* :mod:`~ppr.experiments.summary`: the typed :class:`RunSummary` and its field classification.
* :mod:`~ppr.experiments.grid`, :mod:`~ppr.experiments.executor`, :mod:`~ppr.experiments.sweep`:
  sweeps (the grid of points, running them, resuming them).
"""

from ppr.experiments.factories import RunKeys, check_run, prepare_data
from ppr.experiments.simulate import SimulationResult, resume, simulate
from ppr.experiments.summary import RunSummary
from ppr.experiments.sweep import SweepResult, run_sweep

__all__ = [
    "RunKeys",
    "RunSummary",
    "SimulationResult",
    "SweepResult",
    "check_run",
    "prepare_data",
    "resume",
    "run_sweep",
    "simulate",
]

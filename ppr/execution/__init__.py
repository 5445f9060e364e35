"""Where work runs: one executor interface for device encryption and sweep points.

* :mod:`ppr.execution.base`: the :class:`Executor` contract (``as_completed``, ``map``, per-worker
  :class:`Setup`), :class:`Done`, and the in-process :class:`LocalExecutor`.
* :mod:`ppr.execution.processes`: :class:`ProcessExecutor`, a pool of worker processes that
  survives killed and frozen workers and never stalls.
* :mod:`ppr.execution.ray_executor`: :class:`RayExecutor`, Ray actors on a local instance or a
  cluster (the optional ``ray`` extra).

:func:`make_executor` picks one from the ``[execution]`` config section.
"""

from __future__ import annotations

from ppr.config import ExecutionConfig
from ppr.execution.base import (
    WORKER_CRASHED,
    WORKERS_STALLED,
    Done,
    ExecutionError,
    Executor,
    LocalExecutor,
    Setup,
)
from ppr.execution.processes import DEFAULT_STALL_TIMEOUT_S, ProcessExecutor, cores

__all__ = [
    "DEFAULT_STALL_TIMEOUT_S",
    "WORKERS_STALLED",
    "WORKER_CRASHED",
    "Done",
    "ExecutionError",
    "Executor",
    "LocalExecutor",
    "ProcessExecutor",
    "Setup",
    "batch_size",
    "cores",
    "make_executor",
    "n_workers",
]

#: devices per encryption task on Ray: a task costs milliseconds of scheduling, a device's
#: encryption tens of milliseconds
RAY_BATCH = 8


def n_workers(execution: ExecutionConfig, role_workers: int) -> int:
    """The workers of a role: ``execution.workers`` when set (> 0), else the role's own key
    (``aggregation.workers``, ``sweep.workers``)."""
    return execution.workers if execution.workers > 0 else int(role_workers)


def batch_size(execution: ExecutionConfig) -> int:
    """Devices per encryption task: ``execution.batch``, or 1 (processes) / ``RAY_BATCH`` (ray)."""
    if execution.batch > 0:
        return execution.batch
    return RAY_BATCH if execution.executor == "ray" else 1


def make_executor(
    execution: ExecutionConfig,
    workers: int,
    *,
    stall_timeout_s: float | None = None,
    start_method: str = "spawn",
) -> Executor:
    """The executor of ``execution.executor`` with ``workers`` workers. ``processes`` with one
    worker runs in-process (:class:`LocalExecutor`): a process of its own would only add a start.
    ``stall_timeout_s``: how long a worker may hold one item (None: no limit)."""
    if execution.executor == "local" or (execution.executor == "processes" and workers <= 1):
        return LocalExecutor()
    if execution.executor == "processes":
        return ProcessExecutor(workers, start_method, stall_timeout_s)
    from ppr.execution.ray_executor import RayExecutor  # the optional extra, only when asked

    return RayExecutor(workers, execution.ray_address, stall_timeout_s)

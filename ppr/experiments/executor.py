"""Running the points of a sweep: one point into its directory, its ``point.json``, workers.

A point runs into ``points/<point_id>/`` (the id: :mod:`ppr.experiments.grid`): the files of
``simulate`` (config.toml, metrics.jsonl, summary.json, ...) and ``point.json``, the point's
result, written atomically LAST, after the run succeeded.

Invariants:

* ``point.json`` exists only for a run that finished, and it holds the point's resolved config
  (TOML), its description and the run's summary. On resume, a point counts as done only when its
  ``point.json`` parses and its config equals the point's config (:func:`load_done`); any other
  point (missing, partial, corrupted, stale) is rerun from an empty directory.
* Points run on the sweep's executor (:mod:`ppr.execution`, ``[execution]``): in-process
  (``local``, or ``processes`` with one worker: round progress is reported), in ``spawn``-ed
  worker processes (JAX is not fork-safe) with ``cores // workers`` BLAS threads each (XLA's
  threading stays the caller's: it would change the float32 sums' order), or on Ray actors (a
  local instance or a cluster; the sweep directory must then be on a filesystem every node
  sees). The executor does not change a point's result.
* A failed point stops the sweep (pending points are never started, running ones finish and are
  saved) and its error is re-raised: a user error stays a :class:`~ppr.errors.PprError`; a point
  whose worker died is a ``RuntimeError`` naming it.
* Ctrl-C (SIGINT to the whole process group) is the parent's alone: workers start with SIGINT
  blocked and ignore it, and on ``KeyboardInterrupt`` the parent kills them instead of waiting
  for their points (which ``--resume`` reruns: they wrote no ``point.json``).
"""

from __future__ import annotations

import contextlib
import shutil
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ppr.config import Config, from_dict, to_toml
from ppr.errors import ConfigError, PprError
from ppr.execution import ExecutionError, Executor, LocalExecutor, cores, make_executor, n_workers
from ppr.execution.processes import scoped_env, worker_env
from ppr.experiments.grid import SweepPoint, canonical_config
from ppr.experiments.simulate import simulate
from ppr.io import atomic_write_json, read_json

__all__ = ["POINT_FILE", "auto_workers", "execute_points", "load_done", "sweep_executor"]

POINT_FILE = "point.json"
_FORMAT = 1


def auto_workers(requested: int = 0) -> int:
    """``requested`` if positive, else one worker per two usable cores (at least one)."""
    if requested < 0:
        raise ConfigError(f"`workers` must be >= 0. Found {requested}.")
    if requested > 0:
        return requested
    return max(1, _cores() // 2)


def _cores() -> int:
    return cores()


def _worker_env(workers: int) -> contextlib.AbstractContextManager[None]:
    """The environment a spawned point worker gets (:func:`ppr.execution.processes.worker_env`),
    set in this process until the block ends."""
    return scoped_env(worker_env(workers))


def sweep_executor(cfg: Config, workers: int | None, n_points: int) -> Executor:
    """The executor of a sweep's points: ``[execution]`` with ``workers`` (None:
    ``execution.workers``, else ``sweep.workers``; 0: auto), at most one per point. No stall
    limit: a point may run for hours."""
    requested = n_workers(cfg.execution, cfg.sweep.workers) if workers is None else workers
    n = min(auto_workers(requested), max(1, n_points))
    return make_executor(cfg.execution, n, stall_timeout_s=None)


def load_done(point_dir: Path, cfg: Config) -> dict | None:
    """The saved record of a finished point whose config equals ``cfg``, else None."""
    path = point_dir / POINT_FILE
    if not path.is_file():
        return None
    try:
        record = read_json(path)
        saved = from_dict(tomllib.loads(record["config"]))
        summary = record["summary"]
    except (OSError, ValueError, KeyError, TypeError, tomllib.TOMLDecodeError, ConfigError):
        return None
    if canonical_config(saved) != canonical_config(cfg) or not isinstance(summary, dict):
        return None
    if record.get("format") != _FORMAT:
        return None
    return record


def _run_point(
    cfg: Config,
    point_dir: str,
    info: dict[str, Any],
    progress: Callable[[int, int, Any], None] | None = None,
) -> dict[str, Any]:
    """Run one point into a fresh ``point_dir``; write ``point.json`` last. Runs in a worker."""
    pdir = Path(point_dir)
    if pdir.exists():  # a stale or partial earlier attempt
        shutil.rmtree(pdir)
    # simulate writes into a hidden partial directory and renames it to pdir when done.
    res = simulate(cfg, run_dir=pdir, progress=progress)
    record = {"format": _FORMAT, "point": info, "config": to_toml(cfg),
              "summary": res.summary.to_dict()}  # fmt: skip
    atomic_write_json(pdir / POINT_FILE, record)
    return record


class _RoundRelay(NamedTuple):
    """``simulate``'s progress callback -> the sweep's round events for one point."""

    on_round: Callable[[SweepPoint, int, int], None]
    point: SweepPoint

    def __call__(self, r: int, n: int, _info: Any = None) -> None:
        self.on_round(self.point, r, n)


def _reraise(point: SweepPoint, exc: BaseException) -> None:
    if isinstance(exc, PprError):
        raise type(exc)(f"sweep point {point.point_id}: {exc}") from None
    raise RuntimeError(f"sweep point {point.point_id} failed: {exc!r}") from exc


def _point_task(_state: None, task: tuple[Config, str, dict[str, Any]]) -> dict[str, Any]:
    """A worker's item: ``(config, point dir, point info)`` -> the point's record."""
    return _run_point(*task)


def execute_points(
    tasks: list[tuple[SweepPoint, Config, Path]],
    executor: Executor,
    on_done: Callable[[SweepPoint, dict], None],
    on_round: Callable[[SweepPoint, int, int], None] | None,
) -> None:
    """Run every ``(point, config, point_dir)`` of ``tasks`` on ``executor`` (see the module
    invariants): ``on_done(point, record)`` after each, in completion order; ``on_round`` only
    for points run in-process (the ``local`` executor)."""
    if isinstance(executor, LocalExecutor):
        for point, cfg, pdir in tasks:
            cb = None if on_round is None else _RoundRelay(on_round, point)
            try:
                record = _run_point(cfg, str(pdir), point.info(), cb)
            except Exception as exc:
                _reraise(point, exc)
            on_done(point, record)
        return
    failed: list[tuple[SweepPoint, BaseException]] = []

    def items() -> Iterator[tuple[Config, str, dict[str, Any]]]:
        for point, cfg, pdir in tasks:
            if failed:  # a failed point stops the sweep: pending points are never started
                return
            yield cfg, str(pdir), point.info()

    stream = executor.as_completed(_point_task, items())
    try:
        for done in stream:
            point = tasks[done.index][0]
            if done.ok:
                on_done(point, done.value)
            elif not failed:  # the points still running finish (and are saved) first
                failed.append((point, done.error or ExecutionError(done.lost)))
    finally:
        stream.close()  # on Ctrl-C (raised in on_done too): the busy workers are killed
    if failed:
        _reraise(*failed[0])

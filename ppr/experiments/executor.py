"""Running the points of a sweep: one point into its directory, its ``point.json``, workers.

A point runs into ``points/<point_id>/`` (the id: :mod:`ppr.experiments.grid`): the files of
``simulate`` (config.toml, metrics.jsonl, summary.json, ...) and ``point.json``, the point's
result, written atomically LAST, after the run succeeded.

Invariants:

* ``point.json`` exists only for a run that finished, and it holds the point's resolved config
  (TOML), its description and the run's summary. On resume, a point counts as done only when its
  ``point.json`` parses and its config equals the point's config (:func:`load_done`); any other
  point (missing, partial, corrupted, stale) is rerun from an empty directory.
* Parallel points run in ``spawn``-ed processes (JAX is not fork-safe); each worker gets
  ``cores // workers`` BLAS threads and, when that is 1, single-threaded XLA CPU (Eigen) kernels,
  so workers never oversubscribe the cores. One worker runs in-process.
* A failed point stops the sweep (pending points are cancelled, running ones finish and are saved)
  and its error is re-raised: a user error stays a :class:`~ppr.errors.PprError`.
* Ctrl-C (SIGINT to the whole process group) is the parent's alone: workers are spawned with
  SIGINT blocked and ignore it, and on ``KeyboardInterrupt`` the parent kills them instead of
  waiting for their points (which ``--resume`` reruns: they wrote no ``point.json``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, NamedTuple

from ppr.config import Config, from_dict, to_toml
from ppr.errors import ConfigError, PprError
from ppr.experiments.grid import SweepPoint, canonical_config
from ppr.experiments.simulate import simulate
from ppr.io import atomic_write_json, read_json

__all__ = ["POINT_FILE", "auto_workers", "execute_points", "load_done"]

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
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


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


@contextlib.contextmanager
def _worker_env(workers: int) -> Iterator[None]:
    """Environment inherited by the spawned workers: a fair share of the cores each.

    Set in the parent while the workers are spawned (so it is in place before anything in the
    child imports numpy or jax), restored afterwards."""
    threads = max(1, _cores() // workers)
    env = {v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS") if v not in os.environ}  # fmt: skip
    xla = os.environ.get("XLA_FLAGS", "")
    if threads == 1 and "xla_cpu_multi_thread_eigen" not in xla:
        env["XLA_FLAGS"] = f"{xla} --xla_cpu_multi_thread_eigen=false".strip()
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


def execute_points(
    tasks: list[tuple[SweepPoint, Config, Path]],
    workers: int,
    on_done: Callable[[SweepPoint, dict], None],
    on_round: Callable[[SweepPoint, int, int], None] | None,
) -> None:
    """Run every ``(point, config, point_dir)`` of ``tasks`` (see the module invariants):
    ``on_done(point, record)`` after each, in index order among those finishing together;
    ``on_round`` only for points run in-process (``workers <= 1``)."""
    if workers <= 1:
        for point, cfg, pdir in tasks:
            cb = None if on_round is None else _RoundRelay(on_round, point)
            try:
                record = _run_point(cfg, str(pdir), point.info(), cb)
            except Exception as exc:
                _reraise(point, exc)
            on_done(point, record)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_ignore_sigint) as ex:
        pending: dict[Future, SweepPoint] = {}
        try:
            with _worker_env(workers), _sigint_blocked():  # workers are spawned on submit
                for point, cfg, pdir in tasks:
                    pending[ex.submit(_run_point, cfg, str(pdir), point.info())] = point
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: pending[f].index):
                    point = pending.pop(fut)
                    exc = fut.exception()
                    if exc is not None:
                        _reraise(point, exc)
                    on_done(point, fut.result())
        except KeyboardInterrupt:
            # The executor has no public way to stop running calls; its process table is the
            # only handle (stable across CPython 3.8-3.13).
            for proc in list((getattr(ex, "_processes", None) or {}).values()):
                proc.kill()
            ex.shutdown(wait=False, cancel_futures=True)
            raise
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)
            raise


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked while workers are spawned: the mask survives fork and exec, so a Ctrl-C
    cannot reach a worker before its initializer runs; the parent's own is only deferred."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)

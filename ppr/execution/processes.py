"""The ``processes`` executor: a robust pool of worker processes on this machine.

Workers start with ``"spawn"`` by default (safe with JAX threads in the parent; ``"forkserver"``
also works), build their state from the :class:`~ppr.execution.base.Setup` once, and stay alive
across calls. Each gets ``cores // workers`` BLAS threads (which does not change numpy's results);
XLA's CPU threading is left as in the caller, because single-threaded Eigen kernels sum in another
order and the executor must never change a result (``tests/execution``: bitwise identical).

Invariants (why this is not a ``ProcessPoolExecutor``):

* Each worker has its own pipe, whose other end only that worker holds, at most one item in
  flight, and a parent-side I/O thread that does the blocking sends and receives. A worker that
  dies, even half-way through writing a multi-megabyte result, shows up as end-of-file on its
  own pipe: its item is reported lost (``WORKER_CRASHED``), the worker is replaced, and the call
  goes on. (``ProcessPoolExecutor`` shares one result pipe among all workers; a worker killed
  mid-write leaves its reader blocked forever.)
* The parent never blocks on a pipe, only on a queue with a deadline: a worker that holds one
  item (or takes to start) for more than ``stall_timeout_s`` seconds (``None``: no limit) is
  hung, frozen mid-write included; it is killed (which unblocks its I/O thread) and replaced,
  and its item is reported lost (``WORKERS_STALLED``). A call can never stall.
* At most ``workers`` replacements per call; past that the failure is systemic and every item
  left is reported lost (fresh workers start on the next call), so a poisoned environment cannot
  turn one call into a loop of process starts.
* An item handed to a worker that was already dead never left the parent: it is retried on
  another worker, not lost.
* Answers from a retired worker (killed, or abandoned when the caller stopped reading) are
  discarded: they never count towards a later call.
* Ctrl-C (SIGINT to the whole process group) is the parent's alone: workers start with SIGINT
  blocked and then ignore it; a ``KeyboardInterrupt`` in the parent kills the busy workers (the
  iterator's cleanup) and :meth:`close` the idle ones.
* Workers are not daemonic (a sweep point's worker may start encryption workers of its own); an
  exit hook kills any worker still alive when the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import multiprocessing.util  # its exit hook is registered before ours (see the end)
import os
import queue
import signal
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from ppr.execution.base import (
    WORKER_CRASHED,
    WORKERS_STALLED,
    Done,
    Executor,
    Setup,
    build_state,
)

__all__ = [
    "DEFAULT_STALL_TIMEOUT_S",
    "Feed",
    "ProcessExecutor",
    "cores",
    "scoped_env",
    "worker_env",
]

DEFAULT_STALL_TIMEOUT_S = 300.0
_READY = "ready"
_DEAD = "dead"
_UNSENT = "unsent"
_LIVE: weakref.WeakSet = weakref.WeakSet()  # every started worker, for the exit hook


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def worker_env(workers: int) -> dict[str, str]:
    """Environment for one of ``workers`` workers: a fair share of the cores for BLAS (only the
    variables the parent does not set itself)."""
    threads = max(1, cores() // max(1, workers))
    env = {v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS") if v not in os.environ}  # fmt: skip
    # XLA's own threading stays the caller's: single-threaded Eigen kernels sum in another order
    # (float32 results differ in the last bits), and the executor must not change a result.
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


@contextlib.contextmanager
def scoped_env(env: dict[str, str]) -> Iterator[None]:
    """``env`` set while a worker is spawned (before anything in it imports numpy or jax)."""
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


def _send_answer(conn: Connection, fn: Callable, state: Any, item: Any) -> None:
    try:
        answer: tuple[str, Any] = ("ok", fn(state, item))
    except Exception as exc:  # an item's own failure must not end its worker
        answer = ("err", exc)
    try:
        conn.send(answer)
    except (TypeError, AttributeError, ValueError) as exc:  # an unpicklable value or exception
        conn.send(("err", RuntimeError(f"{answer[1]!r} could not be sent back: {exc}")))


def _worker_main(conn: Connection, setup: Setup | None) -> None:
    """Worker process: build the state, say ready, then run one item at a time; a parent that
    closed the pipe ends the worker quietly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    state = build_state(setup)
    try:
        conn.send(_READY)
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            fn, item = task
            _send_answer(conn, fn, state, item)
    except (BrokenPipeError, ConnectionResetError):
        return  # the parent closed our pipe (it stopped the pool, e.g. on Ctrl-C): nothing to do


class _Worker:
    """A worker process, the parent's end of its pipe, its I/O thread, and the item it holds.

    The I/O thread posts ``(worker, message)`` on the pool's queue: ``_READY`` once, then one
    ``("ok" | "err", value)`` per item; ``_UNSENT`` when an item could not be handed over (the
    worker was already dead: the item never left the parent) and ``_DEAD`` when the pipe breaks.
    """

    def __init__(
        self, ctx: Any, setup: Setup | None, env: dict[str, str], answers: queue.Queue
    ) -> None:
        parent_end, child_end = ctx.Pipe(duplex=True)
        self.setup_key = None if setup is None else setup.key
        self.process = ctx.Process(target=_worker_main, args=(child_end, setup), daemon=False)
        # The child starts with SIGINT blocked (the mask survives fork and exec), so a Ctrl-C
        # while it is still importing cannot kill it with a traceback; the parent's own SIGINT
        # is only deferred until the mask is restored.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            with scoped_env(env):
                self.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _LIVE.add(self.process)
        child_end.close()  # the child now holds the only other end: its death is EOF here
        self.conn: Connection = parent_end  # read and written by the I/O thread only
        self.ready = False
        self.retired = False
        self.task: tuple[int, Any] | None = None  # (index, item) held (kept for a retry)
        self.since = time.monotonic()  # start, or when the current item was handed over
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._io = threading.Thread(
            target=self._pump, args=(answers,), name="ppr-worker-io", daemon=True
        )
        self._io.start()

    def _pump(self, answers: queue.Queue) -> None:
        conn = self.conn
        try:
            answers.put((self, conn.recv()))
            while (task := self._tasks.get()) is not None:
                try:
                    conn.send(task)
                except OSError:
                    answers.put((self, _UNSENT))
                    return
                answers.put((self, conn.recv()))
        except (EOFError, OSError):
            answers.put((self, _DEAD))
        finally:
            conn.close()

    def assign(self, fn: Callable, index: int, item: Any) -> None:
        self.task = (index, item)
        self.since = time.monotonic()
        self._tasks.put((fn, item))

    def kill(self) -> None:
        """Kill the process (which breaks the pipe and so ends the I/O thread)."""
        self.retired = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self._tasks.put(None)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask an idle worker to exit; kill it if it does not (or is not idle)."""
        if self.ready and self.task is None:
            self.retired = True
            self._tasks.put(None)  # the I/O thread closes the pipe: the worker sees EOF
            self.process.join(timeout=timeout)
        self.kill()


class ProcessExecutor(Executor):
    """``workers`` worker processes on this machine (see the module invariants)."""

    kind = "processes"

    def __init__(
        self,
        workers: int,
        start_method: str = "spawn",
        stall_timeout_s: float | None = DEFAULT_STALL_TIMEOUT_S,
    ) -> None:
        if int(workers) < 1:
            raise ValueError(f"`workers` must be at least 1. Found {workers}.")
        if start_method not in ("spawn", "forkserver", "fork"):
            raise ValueError(
                f"`start_method` must be spawn, forkserver or fork. Found {start_method!r}."
            )
        if stall_timeout_s is not None and not stall_timeout_s > 0:
            raise ValueError(f"`stall_timeout_s` must be positive. Found {stall_timeout_s}.")
        self.workers = int(workers)
        self.stall_timeout_s = None if stall_timeout_s is None else float(stall_timeout_s)
        self._ctx = multiprocessing.get_context(start_method)
        self._env = worker_env(self.workers)
        self._pool: list[_Worker] = []
        self._answers: queue.Queue = queue.Queue()
        self._setup: Setup | None = None

    # -- workers ------------------------------------------------------------------------------

    def _use(self, setup: Setup | None) -> None:
        """Workers of another setup key are stopped: new ones start with ``setup``."""
        key = None if setup is None else setup.key
        for w in [w for w in self._pool if w.setup_key != key]:
            w.stop()
            self._pool.remove(w)
        self._setup = setup

    def _fill(self) -> None:
        while len(self._pool) < self.workers:
            self._pool.append(_Worker(self._ctx, self._setup, self._env, self._answers))

    def _deadline(self, since: float) -> float | None:
        return None if self.stall_timeout_s is None else since + self.stall_timeout_s

    def _next_answer(self, deadline: float | None) -> tuple[_Worker, Any] | None:
        """The next answer of a live worker, or None when ``deadline`` passes first."""
        while True:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                worker, msg = self._answers.get(timeout=timeout)
            except queue.Empty:
                return None
            if not worker.retired:
                return worker, msg

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        self._pool.remove(worker)

    def warm_up(self, setup: Setup | None = None) -> None:
        """Start the workers now and wait until each has built its state."""
        self._use(setup)
        self._fill()
        deadline = self._deadline(time.monotonic())
        while not all(w.ready for w in self._pool):
            got = self._next_answer(deadline)
            if got is None or got[1] != _READY:
                raise RuntimeError("worker processes did not start")
            got[0].ready = True

    # -- a call -------------------------------------------------------------------------------

    def as_completed(
        self, fn: Callable[[Any, Any], Any], items: Iterable[Any], setup: Setup | None = None
    ) -> Iterator[Done]:
        self._use(setup)
        return self._run(fn, iter(items))

    def _run(self, fn: Callable, items: Iterator[Any]) -> Iterator[Done]:
        feed = Feed(items)
        replacements = 0
        self._fill()
        try:
            while True:
                for w in self._pool:
                    if w.ready and w.task is None and (nxt := feed.next()) is not None:
                        w.assign(fn, *nxt)
                if feed.done and all(w.task is None for w in self._pool):
                    return
                if replacements > self.workers:  # systemic failure: stop starting processes
                    yield from self._drop_rest(feed)
                    return
                waiting = [w for w in self._pool if w.task is not None or not w.ready]
                if not waiting:  # every worker died idle: start new ones
                    self._fill()
                    continue
                got = self._next_answer(self._deadline(min(w.since for w in waiting)))
                for done in self._handle(got, waiting, feed):
                    if done is None:
                        replacements += 1
                    else:
                        yield done
                if replacements <= self.workers:
                    self._fill()
        finally:
            # Workers still holding an item (the caller stopped early, or Ctrl-C) are killed:
            # their answers must never be read as part of a later call.
            for w in [w for w in self._pool if w.task is not None]:
                self._retire(w)

    def _handle(
        self, got: tuple[_Worker, Any] | None, waiting: list[_Worker], feed: Feed
    ) -> Iterator[Done | None]:
        """What one answer (or a deadline) means: outcomes, and ``None`` per retired worker."""
        if got is None:  # somebody is past the deadline: hung, kill and replace
            now = time.monotonic()
            for w in waiting:
                deadline = self._deadline(w.since)
                if deadline is not None and now >= deadline:
                    if w.task is not None:
                        yield Done(*w.task, lost=WORKERS_STALLED)
                    self._retire(w)
                    yield None
            return
        w, msg = got
        if msg == _UNSENT:  # dead before it took the item: retry elsewhere
            feed.retry.append(w.task)
            self._retire(w)
            yield None
        elif msg == _DEAD:  # died, maybe half-way through writing its answer
            if w.task is not None:
                yield Done(*w.task, lost=WORKER_CRASHED)
            self._retire(w)
            yield None
        elif msg == _READY:
            w.ready = True
        else:
            (index, item), w.task = w.task, None
            status, value = msg
            yield Done(index, item, value) if status == "ok" else Done(index, item, error=value)

    def _drop_rest(self, feed: Feed) -> Iterator[Done]:
        for w in list(self._pool):
            if w.task is not None:
                yield Done(*w.task, lost=WORKER_CRASHED)
                self._retire(w)
        while (nxt := feed.next()) is not None:
            yield Done(*nxt, lost=WORKER_CRASHED)

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        for w in self._pool:
            w.stop()
        self._pool = []


class Feed:
    """The items of one call, numbered as pulled; retried items (handed to a worker that was
    already dead) come first."""

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items
        self._count = 0
        self.retry: deque[tuple[int, Any]] = deque()
        self.exhausted = False

    def next(self) -> tuple[int, Any] | None:
        if self.retry:
            return self.retry.popleft()
        if self.exhausted:
            return None
        try:
            item = next(self._items)
        except StopIteration:
            self.exhausted = True
            return None
        self._count += 1
        return self._count - 1, item

    @property
    def done(self) -> bool:
        return self.exhausted and not self.retry


@atexit.register
def _kill_leftovers() -> None:
    """Workers of a pool that was never closed must not keep the interpreter from exiting
    (registered after multiprocessing's own hook, so it runs first)."""
    for proc in list(_LIVE):
        with contextlib.suppress(Exception):
            if proc.is_alive():
                proc.kill()

"""Device-side encryption fanned out over worker processes.

TenSEAL holds the GIL and its contexts and vectors do not pickle, so each worker process receives
the serialized *public* context once, at start, and builds its own
:class:`~ppr.crypto.roles.DeviceEncryptor`; tasks carry plaintext rows as numpy arrays and return
framed ciphertext bytes. Workers start with ``"spawn"`` by default (safe with JAX threads in the
parent; ``"forkserver"`` also works) and stay alive across rounds. ``workers=1`` encrypts in the
calling process with the same code.

Invariants (why this is not a ``ProcessPoolExecutor``):

* Each worker has its own pipe, whose other end only that worker holds, at most one task in
  flight, and a parent-side I/O thread that does the blocking sends and receives. A worker that
  dies, even half-way through writing a multi-megabyte result, shows up as end-of-file on its
  own pipe: the device it held is reported as dropped out, the worker is replaced, and the round
  goes on. (``ProcessPoolExecutor`` shares one result pipe among all workers; a worker killed
  mid-write leaves its reader blocked forever.)
* The round loop itself never blocks on a pipe, only on a queue with a deadline: a worker that
  holds one task (or takes to start) for more than ``stall_timeout_s`` seconds is hung, frozen
  mid-write included; it is killed (which unblocks its I/O thread) and replaced, and its device
  is reported as dropped out. A round can never stall.
* At most ``workers`` replacements per round; past that the failure is systemic and the rest of
  the round's devices are dropped (fresh workers start on the next round), so a poisoned
  environment cannot turn one round into a loop of process starts.
* Answers from a worker that was retired (killed, or abandoned when the caller stopped reading a
  round) are discarded: they never count towards a later round.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

import numpy as np

from ppr.crypto.errors import UpdateRejected
from ppr.crypto.roles import DeviceEncryptor
from ppr.crypto.spec import AggregationSpec

WORKER_CRASHED = "encryption worker crashed"
WORKERS_STALLED = "encryption workers stalled"
DEFAULT_STALL_TIMEOUT_S = 300.0
_READY = "ready"
_DEAD = "dead"
_UNSENT = "unsent"


class Outcome(NamedTuple):
    """One device's encryption: framed ciphertexts, or the reason there are none.

    ``dropped`` is True when the device's update never reached encryption (a crashed or hung
    worker); otherwise a missing payload means the device refused its own update.
    """

    device_id: int
    payload: bytes | None
    reason: str | None = None
    dropped: bool = False


def _encrypt_one(
    encryptor: DeviceEncryptor, device_id: int, row: np.ndarray, round_idx: int
) -> Outcome:
    try:
        return Outcome(device_id, encryptor.encrypt(row, round_idx))
    except UpdateRejected as exc:
        return Outcome(device_id, None, f"device refused its update: {exc}")
    except Exception as exc:  # a device's own failure must not end its worker
        return Outcome(device_id, None, f"encryption failed ({type(exc).__name__})")


def _worker_main(conn: Connection, public_context: bytes, spec: AggregationSpec) -> None:
    """Worker process: build the encryptor, say ready, then encrypt one task at a time.

    Ctrl-C (SIGINT to the whole process group) is the parent's to handle: it stops the workers.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    encryptor = DeviceEncryptor(public_context, spec)
    conn.send(_READY)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        device_id, row, round_idx = task
        conn.send(_encrypt_one(encryptor, device_id, row, round_idx))


class _Worker:
    """A worker process, the parent's end of its pipe, its I/O thread, and the device it holds.

    The I/O thread posts ``(worker, message)`` on the pool's queue: ``_READY`` once, then one
    :class:`Outcome` per task; ``_UNSENT`` when a task could not be handed over (the worker was
    already dead: the update never left the parent) and ``_DEAD`` when the pipe breaks later.
    """

    def __init__(
        self, ctx: Any, public_context: bytes, spec: AggregationSpec, answers: queue.Queue
    ) -> None:
        parent_end, child_end = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(child_end, public_context, spec), daemon=True
        )
        # The child starts with SIGINT blocked (the mask survives fork and exec), so a Ctrl-C
        # while it is still importing cannot kill it with a traceback; the parent's own SIGINT
        # is only deferred until the mask is restored.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child_end.close()  # the child now holds the only other end: its death is EOF here
        self.conn: Connection = parent_end  # read and written by the I/O thread only
        self.ready = False
        self.retired = False
        self.device: int | None = None
        self.row: np.ndarray | None = None  # the held device's update (kept for a retry)
        self.since = time.monotonic()  # start, or when the current task was handed over
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._io = threading.Thread(
            target=self._pump, args=(answers,), name="ppr-encrypt-io", daemon=True
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

    def assign(self, device_id: int, row: np.ndarray, round_idx: int) -> None:
        self.device, self.row = device_id, row
        self.since = time.monotonic()
        self._tasks.put((device_id, row, round_idx))

    def kill(self) -> None:
        """Kill the process (which breaks the pipe and so ends the I/O thread)."""
        self.retired = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self._tasks.put(None)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask an idle worker to exit; kill it if it does not (or is not idle)."""
        if self.ready and self.device is None:
            self.retired = True
            self._tasks.put(None)  # the I/O thread closes the pipe: the worker sees EOF
            self.process.join(timeout=timeout)
        self.kill()


class EncryptionPool:
    """Encrypts many devices' updates per round; a context manager that owns its workers."""

    def __init__(
        self,
        public_context: bytes,
        spec: AggregationSpec,
        workers: int = 1,
        start_method: str = "spawn",
        stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
    ) -> None:
        if int(workers) < 1:
            raise ValueError(f"`workers` must be at least 1. Found {workers}.")
        if start_method not in ("spawn", "forkserver", "fork"):
            raise ValueError(
                f"`start_method` must be spawn, forkserver or fork. Found {start_method!r}."
            )
        if not stall_timeout_s > 0:
            raise ValueError(f"`stall_timeout_s` must be positive. Found {stall_timeout_s}.")
        self.workers = int(workers)
        self.spec = spec
        self.stall_timeout_s = float(stall_timeout_s)
        self._public_context = bytes(public_context)
        self._ctx = multiprocessing.get_context(start_method)
        self._local = DeviceEncryptor(self._public_context, spec) if self.workers == 1 else None
        self._pool: list[_Worker] = []
        self._answers: queue.Queue = queue.Queue()

    def _fill(self) -> None:
        while len(self._pool) < self.workers:
            self._pool.append(_Worker(self._ctx, self._public_context, self.spec, self._answers))

    def _next_answer(self, deadline: float) -> tuple[_Worker, Any] | None:
        """The next answer of a live worker, or None when ``deadline`` passes first."""
        while True:
            try:
                worker, msg = self._answers.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                return None
            if not worker.retired:
                return worker, msg

    def warm_up(self) -> None:
        """Start the workers now and wait until each has built its encryptor (otherwise they
        start on the first round)."""
        if self.workers == 1:
            return
        self._fill()
        deadline = time.monotonic() + self.stall_timeout_s
        while not all(w.ready for w in self._pool):
            got = self._next_answer(deadline)
            if got is None or got[1] != _READY:
                raise RuntimeError("encryption workers did not start")
            got[0].ready = True

    def encrypt_many(
        self, updates: np.ndarray, device_ids: np.ndarray, round_idx: int
    ) -> Iterator[Outcome]:
        """Yield one outcome per row of ``updates``, in completion order."""
        if len(device_ids) != len(updates):
            raise ValueError(f"{len(device_ids)} device ids for {len(updates)} updates.")
        pairs = ((int(d), row) for d, row in zip(device_ids, updates, strict=True))
        return self.encrypt_stream(pairs, round_idx)

    def encrypt_stream(
        self, rows: Iterable[tuple[int, np.ndarray]], round_idx: int
    ) -> Iterator[Outcome]:
        """Yield one outcome per ``(device id, row)``, in completion order. ``rows`` is pulled
        only as workers free up (one update in flight per worker), so memory stays bounded
        however large the cohort."""
        if self._local is not None:
            return (_encrypt_one(self._local, int(d), row, round_idx) for d, row in rows)
        return self._encrypt_parallel(iter(rows), round_idx)

    def _encrypt_parallel(
        self, rows: Iterator[tuple[int, np.ndarray]], round_idx: int
    ) -> Iterator[Outcome]:
        self._fill()
        retry: deque[tuple[int, np.ndarray]] = deque()  # handed to a worker that was dead
        exhausted, replacements = False, 0

        def next_row() -> tuple[int, np.ndarray] | None:
            nonlocal exhausted
            if retry:
                return retry.popleft()
            if exhausted:
                return None
            nxt = next(rows, None)
            exhausted = nxt is None
            return nxt

        try:
            while True:
                for w in self._pool:
                    if w.ready and w.device is None:
                        nxt = next_row()
                        if nxt is None:
                            break
                        w.assign(nxt[0], nxt[1], round_idx)
                if exhausted and not retry and all(w.device is None for w in self._pool):
                    break
                if replacements > self.workers:  # systemic failure: stop starting processes
                    yield from self._drop_rest(next_row, WORKER_CRASHED)
                    break
                waiting = [w for w in self._pool if w.device is not None or not w.ready]
                if not waiting:  # every worker died idle: start new ones
                    self._fill()
                    continue
                deadline = min(w.since for w in waiting) + self.stall_timeout_s
                got = self._next_answer(deadline)
                if got is None:  # somebody is past the deadline: hung, kill and replace
                    now = time.monotonic()
                    for w in waiting:
                        if now >= w.since + self.stall_timeout_s:
                            if w.device is not None:
                                yield Outcome(w.device, None, WORKERS_STALLED, dropped=True)
                            self._retire(w)
                            replacements += 1
                elif got[1] == _UNSENT:  # dead before it took the task: retry elsewhere
                    w = got[0]
                    retry.append((w.device, w.row))
                    self._retire(w)
                    replacements += 1
                elif got[1] == _DEAD:  # died, maybe half-way through writing its answer
                    w = got[0]
                    if w.device is not None:
                        yield Outcome(w.device, None, WORKER_CRASHED, dropped=True)
                    self._retire(w)
                    replacements += 1
                elif got[1] == _READY:
                    got[0].ready = True
                else:
                    got[0].device, got[0].row = None, None
                    yield got[1]
                if replacements <= self.workers:
                    self._fill()
        finally:
            # Workers still holding a device (the caller stopped early) are killed: their
            # answers must never be read as part of a later round.
            for w in [w for w in self._pool if w.device is not None]:
                self._retire(w)

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        self._pool.remove(worker)

    def _drop_rest(
        self, next_row: Callable[[], tuple[int, np.ndarray] | None], reason: str
    ) -> Iterator[Outcome]:
        for w in list(self._pool):
            if w.device is not None:
                yield Outcome(w.device, None, reason, dropped=True)
                self._retire(w)
        while (nxt := next_row()) is not None:
            yield Outcome(nxt[0], None, reason, dropped=True)

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        for w in self._pool:
            w.stop()
        self._pool = []

    def __enter__(self) -> EncryptionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

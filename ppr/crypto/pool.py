"""Device-side encryption fanned out over worker processes.

TenSEAL holds the GIL and its contexts and vectors do not pickle, so each worker receives the
serialized *public* context once (pool initializer) and builds its own
:class:`~ppr.crypto.roles.DeviceEncryptor`; tasks carry plaintext rows as numpy arrays and return
framed ciphertext bytes. Workers start with ``"spawn"`` by default (safe with JAX threads in the
parent; ``"forkserver"`` also works) and stay alive across rounds. ``workers=1`` encrypts in the
calling process with the same code.

A device whose encryption fails is reported with the reason; a crashed worker pool reports the
devices it still held as dropped out and is rebuilt for the next round, so a round never stalls.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

import numpy as np

from ppr.crypto.errors import UpdateRejected
from ppr.crypto.roles import DeviceEncryptor
from ppr.crypto.spec import AggregationSpec


class Outcome(NamedTuple):
    """One device's encryption: framed ciphertexts, or the reason there are none.

    ``dropped`` is True when the device's update never reached encryption (worker pool crash);
    otherwise a missing payload means the device refused its own update.
    """

    device_id: int
    payload: bytes | None
    reason: str | None = None
    dropped: bool = False


_WORKER: DeviceEncryptor | None = None
_POOL_FAILED = "encryption worker pool failed"


def _init_worker(public_context: bytes, spec: AggregationSpec) -> None:
    global _WORKER
    _WORKER = DeviceEncryptor(public_context, spec)


def _encrypt_one(
    encryptor: DeviceEncryptor, device_id: int, row: np.ndarray, round_idx: int
) -> Outcome:
    try:
        return Outcome(device_id, encryptor.encrypt(row, round_idx))
    except UpdateRejected as exc:
        return Outcome(device_id, None, f"device refused its update: {exc}")


def _worker_task(device_id: int, row: np.ndarray, round_idx: int) -> Outcome:
    if _WORKER is None:
        raise RuntimeError("encryption worker was not initialized")
    return _encrypt_one(_WORKER, device_id, row, round_idx)


class EncryptionPool:
    """Encrypts many devices' updates per round; a context manager that owns its workers."""

    def __init__(
        self,
        public_context: bytes,
        spec: AggregationSpec,
        workers: int = 1,
        start_method: str = "spawn",
    ) -> None:
        if int(workers) < 1:
            raise ValueError(f"`workers` must be at least 1. Found {workers}.")
        if start_method not in ("spawn", "forkserver", "fork"):
            raise ValueError(
                f"`start_method` must be spawn, forkserver or fork. Found {start_method!r}."
            )
        self.workers = int(workers)
        self.spec = spec
        self._public_context = bytes(public_context)
        self._start_method = start_method
        self._local = DeviceEncryptor(self._public_context, spec) if self.workers == 1 else None
        self._executor: ProcessPoolExecutor | None = None

    def _ensure_executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context(self._start_method),
                initializer=_init_worker,
                initargs=(self._public_context, self.spec),
            )
        return self._executor

    def warm_up(self) -> None:
        """Start the workers now (otherwise they start on the first round)."""
        if self.workers > 1:
            ex = self._ensure_executor()
            list(ex.map(_noop, range(self.workers)))

    def encrypt_many(
        self, updates: np.ndarray, device_ids: np.ndarray, round_idx: int
    ) -> Iterator[Outcome]:
        """Yield one outcome per device, in completion order (at most ``4 * workers`` updates in
        flight, so memory stays bounded however large the cohort)."""
        if self._local is not None:
            for dev, row in zip(device_ids, updates, strict=True):
                yield _encrypt_one(self._local, int(dev), row, round_idx)
            return
        yield from self._encrypt_parallel(updates, device_ids, round_idx)

    def _encrypt_parallel(
        self, updates: np.ndarray, device_ids: np.ndarray, round_idx: int
    ) -> Iterator[Outcome]:
        ex = self._ensure_executor()
        todo = iter(zip((int(d) for d in device_ids), updates, strict=True))
        pending: dict[Future, int] = {}
        window = 4 * self.workers
        broken = False
        while True:
            while not broken and len(pending) < window:
                nxt = next(todo, None)
                if nxt is None:
                    break
                try:
                    pending[ex.submit(_worker_task, nxt[0], nxt[1], round_idx)] = nxt[0]
                except BrokenProcessPool:
                    broken = True
                    yield Outcome(nxt[0], None, _POOL_FAILED, dropped=True)
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                dev = pending.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    broken = True
                    yield Outcome(dev, None, _POOL_FAILED, dropped=True)
                except Exception as exc:
                    yield Outcome(dev, None, f"encryption failed ({type(exc).__name__})")
        if broken:
            for dev, _row in todo:
                yield Outcome(dev, None, _POOL_FAILED, dropped=True)
            self._shutdown()

    def _shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        self._shutdown()

    def __enter__(self) -> EncryptionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _noop(i: int) -> int:
    return i

"""Device-side encryption fanned out over an executor (:mod:`ppr.execution`).

TenSEAL holds the GIL and its contexts and vectors do not pickle, so each worker receives the
serialized *public* context once (the executor's per-worker :class:`~ppr.execution.Setup`) and
builds its own :class:`~ppr.crypto.roles.DeviceEncryptor`; tasks carry batches of plaintext rows
as numpy arrays and return framed ciphertext bytes. ``workers=1`` (and the ``local`` executor)
encrypts in the calling process with the same code.

Invariants:

* Every device pulled from the stream is reported exactly once: its payload, the reason it
  refused its own update, or, when its worker crashed or stalled, as dropped out (the executor
  replaces the worker and the round goes on; see :mod:`ppr.execution.processes` for why a round
  can never stall). A lost task drops every device of its batch, and only those.
* Rows are pulled only as workers free up (one batch in flight per worker), so memory stays
  bounded however large the cohort.
* Answers of a round the caller stopped reading are never read as part of a later round.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import NamedTuple

import numpy as np

from ppr.crypto.errors import UpdateRejected
from ppr.crypto.roles import DeviceEncryptor
from ppr.crypto.spec import AggregationSpec
from ppr.execution import (
    DEFAULT_STALL_TIMEOUT_S,
    Executor,
    LocalExecutor,
    ProcessExecutor,
    Setup,
)

WORKER_CRASHED = "encryption worker crashed"
WORKERS_STALLED = "encryption workers stalled"
_LOST_REASONS = {"worker crashed": WORKER_CRASHED, "worker stalled": WORKERS_STALLED}


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


def _encrypt_batch(
    encryptor: DeviceEncryptor, task: tuple[list[tuple[int, np.ndarray]], int]
) -> list[Outcome]:
    """A worker's task: ``(batch of (device id, row), round)`` -> one outcome per device."""
    batch, round_idx = task
    return [_encrypt_one(encryptor, d, row, round_idx) for d, row in batch]


def encryptor_setup(public_context: bytes, spec: AggregationSpec) -> Setup:
    """A worker's state: the encryptor of ``public_context`` (keyed by its hash and the spec)."""
    digest = hashlib.sha256(public_context).hexdigest()[:32]
    return Setup(f"encryptor:{digest}:{spec!r}", DeviceEncryptor, (public_context, spec))


def _batches(
    rows: Iterable[tuple[int, np.ndarray]], size: int
) -> Iterator[list[tuple[int, np.ndarray]]]:
    it = ((int(d), row) for d, row in rows)
    while batch := list(islice(it, size)):
        yield batch


class EncryptionPool:
    """Encrypts many devices' updates per round over an executor; a context manager that owns
    it. Without ``executor``: ``workers`` processes (in-process for 1), with a
    ``stall_timeout_s`` per task. ``batch``: devices per task (1 keeps a lost worker's damage
    to one device; larger batches amortize a remote executor's per-task cost)."""

    def __init__(
        self,
        public_context: bytes,
        spec: AggregationSpec,
        workers: int = 1,
        start_method: str = "spawn",
        stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
        executor: Executor | None = None,
        batch: int = 1,
    ) -> None:
        if int(workers) < 1:
            raise ValueError(f"`workers` must be at least 1. Found {workers}.")
        if not stall_timeout_s > 0:
            raise ValueError(f"`stall_timeout_s` must be positive. Found {stall_timeout_s}.")
        if int(batch) < 1:
            raise ValueError(f"`batch` must be at least 1. Found {batch}.")
        if executor is None:
            executor = (
                LocalExecutor()
                if int(workers) == 1
                else ProcessExecutor(int(workers), start_method, stall_timeout_s)
            )
        self.executor = executor
        self.workers = executor.workers
        self.batch = int(batch)
        self.spec = spec
        self._setup = encryptor_setup(bytes(public_context), spec)

    def warm_up(self) -> None:
        """Start the workers now and wait until each has built its encryptor (otherwise they
        start on the first round)."""
        self.executor.warm_up(self._setup)

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
        """Yield one outcome per ``(device id, row)``, in completion order (see the module
        invariants)."""
        tasks = ((b, int(round_idx)) for b in _batches(rows, self.batch))
        return self._outcomes(self.executor.as_completed(_encrypt_batch, tasks, self._setup))

    @staticmethod
    def _outcomes(stream: Iterator) -> Iterator[Outcome]:
        try:
            for done in stream:
                batch = done.item[0]
                if done.ok:
                    yield from done.value
                elif done.lost is not None:
                    reason = _LOST_REASONS.get(done.lost, done.lost)
                    yield from (Outcome(d, None, reason, dropped=True) for d, _ in batch)
                else:  # _encrypt_one catches a device's failure: this is the worker's own
                    why = f"encryption failed ({type(done.error).__name__})"
                    yield from (Outcome(d, None, why) for d, _ in batch)
        finally:
            stream.close()  # abandoned mid-round: the executor kills the busy workers

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        self.executor.close()

    def __enter__(self) -> EncryptionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

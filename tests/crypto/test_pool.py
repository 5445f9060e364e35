"""The encryption worker pool (the ``processes`` executor) never stalls a round.

Faults are real: worker processes are killed (SIGKILL) or frozen (SIGSTOP) while they hold a
device's update. A crashed or hung worker turns only the device it held into a dropout, is
replaced, and the rest of the round is encrypted.
"""

from __future__ import annotations

import array
import fcntl
import os
import signal
import termios
import threading
import time
from typing import Any

import numpy as np
import pytest
from crypto_testutils import clipped_updates

from ppr.crypto import AggregationSpec, KeyHolder, default_params
from ppr.crypto.pool import WORKER_CRASHED, WORKERS_STALLED, EncryptionPool, Outcome

N_DEVICES = 12
#: The ML-1M item matrix (3706 x 32): a 3.6 MB result, far beyond a pipe's 64 KiB buffer, so a
#: worker killed as its answer starts to arrive dies half-way through writing it.
LARGE = 3706 * 32


@pytest.fixture(scope="module")
def large_spec() -> AggregationSpec:
    return AggregationSpec(LARGE, 1.0, default_params())


@pytest.fixture(scope="module")
def large_key_holder(large_spec: AggregationSpec) -> KeyHolder:
    return KeyHolder(large_spec)


@pytest.fixture(scope="module")
def updates() -> np.ndarray:
    return clipped_updates(np.random.default_rng(0), N_DEVICES, LARGE)


def _signal_first_writer(pool: EncryptionPool, sig: int, hit: list, timeout: float = 60.0) -> None:
    """Send ``sig`` to the first worker seen with bytes of its answer in its pipe (writing it)."""
    deadline = time.monotonic() + timeout
    buf = array.array("i", [0])
    while time.monotonic() < deadline:
        for w in list(pool.executor._pool):
            if w.task is None:
                continue
            held = w.task[1][0][0][0]  # the task's (batch, round): its one device
            try:
                fcntl.ioctl(w.conn.fileno(), termios.FIONREAD, buf, True)
            except (OSError, ValueError):
                continue
            if buf[0] > 0:
                os.kill(w.process.pid, sig)
                hit.append((held, w.process))
                return


def _round_with_signal(
    pool: EncryptionPool, updates: np.ndarray, sig: int
) -> tuple[list[Outcome], int, Any]:
    """Run round 0 on warm workers while a thread sends ``sig`` to the first worker caught
    writing its answer. Returns (outcomes, the device that worker held, its process)."""
    pool.warm_up()
    hit: list = []
    thread = threading.Thread(target=_signal_first_writer, args=(pool, sig, hit))
    thread.start()
    outcomes = list(pool.encrypt_many(updates, np.arange(N_DEVICES), 0))
    thread.join()
    assert hit, "no worker was caught writing its answer"
    ((held, proc),) = hit
    return outcomes, held, proc


def _check_round(outcomes: list[Outcome], reason: str) -> list[Outcome]:
    """Every device reported exactly once; payloads for all but the dropped ones."""
    assert sorted(o.device_id for o in outcomes) == list(range(N_DEVICES))
    dropped = [o for o in outcomes if o.dropped]
    assert all(o.reason == reason and o.payload is None for o in dropped)
    assert all(o.payload for o in outcomes if not o.dropped)
    return dropped


def test_stall_timeout_must_be_positive(spec: AggregationSpec, key_holder: KeyHolder):
    with pytest.raises(ValueError, match=r"`stall_timeout_s` must be positive\. Found 0"):
        EncryptionPool(key_holder.public_context(), spec, workers=2, stall_timeout_s=0)


def test_worker_killed_mid_write_drops_one_device_and_the_round_goes_on(
    large_spec: AggregationSpec, large_key_holder: KeyHolder, updates: np.ndarray
):
    with EncryptionPool(large_key_holder.public_context(), large_spec, workers=2) as p:
        outcomes, held, proc = _round_with_signal(p, updates, signal.SIGKILL)
        # Killed mid-write its device is dropped; had the 3.6 MB answer completed in the
        # microseconds before the kill, it counts. Either way nothing else is lost.
        dropped = _check_round(outcomes, WORKER_CRASHED)
        assert [o.device_id for o in dropped] in ([held], [])
        pool = p.executor._pool
        assert len(pool) == 2 and proc not in {w.process for w in pool}
        assert not any(o.dropped for o in p.encrypt_many(updates, np.arange(N_DEVICES), 1))


def test_hung_worker_is_killed_after_the_stall_timeout(
    large_spec: AggregationSpec, large_key_holder: KeyHolder, updates: np.ndarray
):
    with EncryptionPool(
        large_key_holder.public_context(), large_spec, workers=2, stall_timeout_s=3.0
    ) as p:
        outcomes, _, proc = _round_with_signal(p, updates, signal.SIGSTOP)
        # Frozen mid-write (its reader blocked mid-message) or, if its answer had just gone
        # through, frozen before its next task: either way exactly one device never comes back.
        dropped = _check_round(outcomes, WORKERS_STALLED)
        assert len(dropped) == 1
        assert not proc.is_alive()  # killed, not left behind
        assert not any(o.dropped for o in p.encrypt_many(updates, np.arange(N_DEVICES), 1))


def test_worker_dead_while_idle_loses_nothing(
    large_spec: AggregationSpec, large_key_holder: KeyHolder, updates: np.ndarray
):
    with EncryptionPool(large_key_holder.public_context(), large_spec, workers=2) as p:
        p.warm_up()
        idle = p.executor._pool[0]
        os.kill(idle.process.pid, signal.SIGKILL)
        idle.process.join(10)
        outcomes = list(p.encrypt_many(updates, np.arange(N_DEVICES), 0))
        # The update sent to the dead worker never left the parent: it is retried, not dropped.
        assert not _check_round(outcomes, WORKER_CRASHED)


def test_a_caller_that_stops_early_never_sees_stale_answers(
    large_spec: AggregationSpec, large_key_holder: KeyHolder, updates: np.ndarray
):
    with EncryptionPool(large_key_holder.public_context(), large_spec, workers=2) as p:
        stream = p.encrypt_many(updates, np.arange(N_DEVICES), 0)
        next(stream)
        stream.close()  # e.g. the aggregator raised mid-round
        ids = np.arange(100, 100 + N_DEVICES)
        outcomes = list(p.encrypt_many(updates, ids, 1))
        assert sorted(o.device_id for o in outcomes) == list(ids)
        assert not any(o.dropped for o in outcomes)

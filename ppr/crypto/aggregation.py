"""Whole aggregation rounds: CKKS secure aggregation and its plaintext twin, one contract.

Round protocol (CKKS): each device encrypts its update with the public context -> the aggregator
validates and sums the ciphertexts -> the aggregator adds the plaintext noise vector to the
encrypted sum (central DP: no party ever sees an un-noised aggregate) -> the key holder decrypts
the one aggregate of the round and floods it (no exact decryption ever leaves it; see
:mod:`ppr.crypto.roles`) -> the flat float64 sum goes to the server, with the flooding's std and
bounds in :attr:`AggregationResult.flooding`. Every message crosses
the :class:`~ppr.crypto.channel.Channel` as bytes; the public context is sent to each device the
first time it takes part.

Plaintext mode is the same contract with encryption replaced by identity: devices send their
update as float32 bytes and the aggregator sums in float64. Both modes reject wrong-shaped input
arrays with ``ValueError``, reject (and log) individual bad device updates while the round goes
on, and treat a missing row or a ``None`` message as a dropout.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from ppr.crypto.channel import (
    KIND_AGGREGATE,
    KIND_PUBLIC_CONTEXT,
    KIND_RESULT,
    KIND_UPDATE,
    Channel,
)
from ppr.crypto.errors import ProtocolError, UpdateRejected
from ppr.crypto.params import CkksParams, default_params, precision_bound
from ppr.crypto.pool import EncryptionPool
from ppr.crypto.roles import Aggregator, FloodingReport, KeyHolder
from ppr.crypto.spec import AggregationSpec, check_update
from ppr.execution import Executor

logger = logging.getLogger("ppr.crypto")

AGGREGATOR = "aggregator"
KEY_HOLDER = "key_holder"
SERVER = "server"


def device_name(device_id: int) -> str:
    return f"device/{int(device_id)}"


@dataclass
class AggregationResult:
    """One round's outcome. ``total`` is float64 of length ``update_size``: the (noised) sum of
    the accepted updates. ``rejected`` maps device id to the logged reason; ``dropped`` lists
    devices that sent nothing; ``upload_bytes`` counts all bytes devices sent this round.
    ``flooding`` (CKKS only; ``None`` in plaintext mode) is what the key holder added to
    ``total`` before releasing it: its std, the rule's floor, the stated error bound and where
    the noise came from (:class:`~ppr.crypto.roles.FloodingReport`)."""

    total: np.ndarray
    n_accepted: int
    rejected: dict[int, str]
    upload_bytes: int
    dropped: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    flooding: FloodingReport | None = None

    @property
    def flooding_std(self) -> float:
        """Std of the key holder's flooding noise per coordinate of ``total`` (0 in plaintext)."""
        return 0.0 if self.flooding is None else self.flooding.std

    @property
    def error_bound(self) -> float:
        """Stated per-coordinate bound on ``|total - exact sum|`` (CKKS error and flooding; 0 in
        plaintext mode, where the float64 sum of the float32 rows is exact up to rounding)."""
        return 0.0 if self.flooding is None else self.flooding.error_bound


def _check_inputs(
    updates: np.ndarray, device_ids: np.ndarray, noise: np.ndarray | None, n_values: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    u = np.asarray(updates)
    if u.ndim != 2 or u.shape[1] != n_values:
        raise ValueError(f"`updates` must have shape (n_devices, {n_values}). Found {u.shape}.")
    ids = np.asarray(device_ids).reshape(-1)
    if ids.shape[0] != u.shape[0]:
        raise ValueError(f"`device_ids` must have {u.shape[0]} entries. Found {ids.shape[0]}.")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"`device_ids` must be integers. Found dtype {ids.dtype}.")
    if np.unique(ids).size != ids.size:
        raise ValueError("`device_ids` must be unique within a round.")
    return u, ids, _check_noise(noise, n_values)


def _check_noise(noise: np.ndarray | None, n_values: int) -> np.ndarray | None:
    if noise is None:
        return None
    z = np.asarray(noise, dtype=np.float64).reshape(-1)
    if z.shape != (n_values,) or not np.all(np.isfinite(z)):
        raise ValueError(f"`noise` must be a finite vector of length {n_values}.")
    return z


def _device_rows(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], n_values: int, n_devices: int
) -> Iterator[tuple[int, np.ndarray]]:
    """``(device id, row)`` from ``(ids, rows)`` chunks, each chunk checked as :func:`_check_inputs`
    checks a whole round; ids unique across all chunks, at most ``n_devices`` rows."""
    seen: set[int] = set()
    for ids, rows in chunks:
        u, ids_ok, _ = _check_inputs(rows, ids, None, n_values)
        for dev, row in zip(ids_ok, u, strict=True):
            d = int(dev)
            if d in seen:
                raise ValueError("`device_ids` must be unique within a round.")
            if len(seen) == n_devices:
                raise ValueError(f"the round's stream has more than {n_devices} rows.")
            seen.add(d)
            yield d, row


class _RoundAggregation(ABC):
    """What both aggregations share: a whole round given as one array is a stream of one chunk.

    Subclasses implement ``aggregate_stream(chunks, n_devices, round_idx, noise)`` and ``close``.
    """

    spec: AggregationSpec

    def aggregate(
        self,
        updates: np.ndarray,
        device_ids: np.ndarray,
        round_idx: int,
        noise: np.ndarray | None = None,
    ) -> AggregationResult:
        """Sum the rows of ``updates`` (each ``|x| <= value_bound``) plus ``noise``; bad rows are
        rejected and logged, not raised; wrong-shaped arrays raise ``ValueError``."""
        u, ids, z = _check_inputs(updates, device_ids, noise, self.spec.n_values)
        return self.aggregate_stream([(ids, u)], len(ids), round_idx, z)

    @abstractmethod
    def aggregate_stream(
        self,
        chunks: Iterable[tuple[np.ndarray, np.ndarray]],
        n_devices: int,
        round_idx: int,
        noise: np.ndarray | None = None,
    ) -> AggregationResult:
        """One round over ``(device ids, rows)`` chunks, consumed one at a time."""

    def close(self) -> None:  # noqa: B027 - optional hook: only CKKS holds workers
        """Release what the aggregation holds (idempotent)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PlaintextAggregation(_RoundAggregation):
    """Same contract as :class:`CkksSecureAggregation`; updates travel as float32 bytes and are
    summed in float64 (so a float32 input gives exactly the float64 sum of its rows)."""

    def __init__(self, update_size: int, value_bound: float = 1.0) -> None:
        self.spec = AggregationSpec(update_size, value_bound)
        self.channel = Channel()

    def aggregate_stream(
        self,
        chunks: Iterable[tuple[np.ndarray, np.ndarray]],
        n_devices: int,
        round_idx: int,
        noise: np.ndarray | None = None,
    ) -> AggregationResult:
        """As :meth:`aggregate`, over ``(device ids, rows)`` chunks consumed one at a time (the
        round's ``n_devices`` rows are never all in memory)."""
        z = _check_noise(noise, self.spec.n_values)
        refused: dict[int, str] = {}

        def messages() -> Iterator[tuple[int, bytes | None]]:
            for dev, row in _device_rows(chunks, self.spec.n_values, n_devices):
                try:
                    yield dev, check_update(row, self.spec).astype("<f4").tobytes()
                except UpdateRejected as exc:
                    refused[dev] = f"device refused its update: {exc}"

        result = self.aggregate_messages(messages(), round_idx, z)
        for dev, reason in refused.items():
            logger.warning("round %d: rejected device %d: %s", round_idx, dev, reason)
        result.rejected.update(refused)
        return result

    def aggregate_messages(
        self,
        messages: Mapping[int, bytes | None] | Iterable[tuple[int, bytes | None]],
        round_idx: int,
        noise: np.ndarray | None = None,
    ) -> AggregationResult:
        """Aggregate raw device payloads (float32 little-endian bytes; ``None`` = dropout), given
        as a mapping or as ``(device id, payload)`` pairs."""
        t0 = time.perf_counter()
        pairs = messages.items() if isinstance(messages, Mapping) else messages
        z = _check_noise(noise, self.spec.n_values)
        n = self.spec.n_values
        total = np.zeros(n, dtype=np.float64)
        rejected: dict[int, str] = {}
        dropped: list[int] = []
        n_ok = 0
        upload = 0
        for dev, payload in pairs:
            if payload is None:
                dropped.append(int(dev))
                continue
            try:
                data = self.channel.send(
                    device_name(dev), AGGREGATOR, KIND_UPDATE, payload, round_idx
                )
                upload += len(data)
                if len(data) != 4 * n:
                    raise UpdateRejected(f"payload has {len(data)} bytes, expected {4 * n}")
                total += check_update(np.frombuffer(data, dtype="<f4"), self.spec)
                n_ok += 1
            except (UpdateRejected, TypeError) as exc:
                rejected[int(dev)] = str(exc)
                logger.warning("round %d: rejected device %d: %s", round_idx, int(dev), exc)
        if z is not None:
            total += z
        out = self.channel.send(AGGREGATOR, SERVER, KIND_RESULT, total.tobytes(), round_idx)
        total = np.frombuffer(out, dtype=np.float64).copy()
        return AggregationResult(
            total, n_ok, rejected, upload, dropped, {"total_s": time.perf_counter() - t0}
        )


class CkksSecureAggregation(_RoundAggregation):
    """Orchestrates KeyHolder, Aggregator, devices and Channel for whole rounds.

    ``seed`` is accepted for interface parity with the plaintext path and ignored: encryption
    randomness comes from SEAL's OS-backed CSPRNG and the key holder's flooding from the OS,
    neither may be seeded from a config. ``flooding_rng`` (a ``np.random.Generator``) is the one
    exception: an explicit, labelled reproducible-experiment mode for the flooding noise (every
    result's ``flooding.source`` says so). ``workers > 1`` encrypts in a pool of processes kept
    alive until :meth:`close` (also a context manager); ``executor`` (which the aggregation then
    owns) runs the encryption elsewhere (:mod:`ppr.execution`), ``batch`` devices per task.
    Before each round the cohort plus noise is checked against the overflow capacity; after
    decryption (and flooding) the key holder rejects
    (:class:`~ppr.crypto.errors.AggregateRejectedError`) an aggregate that is non-finite
    or beyond ``(n_accepted + max|noise| / value_bound)`` value bounds plus the precision margin
    (flooding included), and, when ``l2_clip`` (the devices' L2 clip norm) is given, one whose L2
    norm exceeds ``n_accepted * l2_clip + ||noise||`` plus the precision margin.
    """

    def __init__(
        self,
        update_size: int,
        params: CkksParams | None = None,
        workers: int = 1,
        value_bound: float = 1.0,
        seed: int | None = None,
        start_method: str = "spawn",
        l2_clip: float | None = None,
        flooding_rng: np.random.Generator | None = None,
        executor: Executor | None = None,
        batch: int = 1,
    ) -> None:
        self.spec = AggregationSpec(update_size, value_bound, params or default_params())
        self.l2_clip = None if l2_clip is None else float(l2_clip)
        self.channel = Channel()
        self._key_holder = KeyHolder(self.spec, rng=flooding_rng)
        public = self._key_holder.public_context()
        self._public_context = public
        received = self.channel.send(KEY_HOLDER, AGGREGATOR, KIND_PUBLIC_CONTEXT, public, -1)
        self.aggregator = Aggregator(received, self.spec)
        self._pool = EncryptionPool(
            public, self.spec, workers, start_method, executor=executor, batch=batch
        )
        self._devices_with_context: set[int] = set()

    @property
    def public_context(self) -> bytes:
        """The serialized public context (what devices and the aggregator hold)."""
        return self._public_context

    def _distribute_context(self, device_ids: list[int], round_idx: int) -> None:
        for dev in device_ids:
            if dev not in self._devices_with_context:
                self.channel.send(
                    KEY_HOLDER,
                    device_name(dev),
                    KIND_PUBLIC_CONTEXT,
                    self._public_context,
                    round_idx,
                )
                self._devices_with_context.add(dev)

    def _check_round(self, round_idx: int, n_devices: int, noise: np.ndarray | None) -> None:
        if self._key_holder.has_decrypted(round_idx):
            raise ProtocolError(f"round {round_idx} was already aggregated and decrypted.")
        peak = 0.0 if noise is None else float(np.max(np.abs(noise))) / self.spec.value_bound
        cap = self.spec.params.capacity
        if n_devices + peak >= cap:
            raise ProtocolError(
                f"a cohort of {n_devices} devices plus noise of {peak:.3g} value bounds could "
                f"overflow the CKKS capacity {cap:g}; use a smaller scale or a larger data prime."
            )

    def aggregate_stream(
        self,
        chunks: Iterable[tuple[np.ndarray, np.ndarray]],
        n_devices: int,
        round_idx: int,
        noise: np.ndarray | None = None,
    ) -> AggregationResult:
        """As :meth:`aggregate`, over ``(device ids, rows)`` chunks that are consumed as the
        encryption workers take them, so at most a chunk plus one row per worker is in memory.
        ``n_devices`` (the round's row count) bounds the sum for the overflow check up front; a
        stream with more rows raises ``ValueError``."""
        t0 = time.perf_counter()
        z = _check_noise(noise, self.spec.n_values)
        self._check_round(round_idx, int(n_devices), z)
        self.aggregator.start_round(round_idx)

        def rows() -> Iterator[tuple[int, np.ndarray]]:
            for dev, row in _device_rows(chunks, self.spec.n_values, n_devices):
                self._distribute_context([dev], round_idx)
                yield dev, row

        upload = 0
        t_agg = 0.0
        for out in self._pool.encrypt_stream(rows(), round_idx):
            if out.payload is None:
                self._record_failed_device(out.device_id, out.reason or "", out.dropped, round_idx)
                continue
            data = self.channel.send(
                device_name(out.device_id), AGGREGATOR, KIND_UPDATE, out.payload, round_idx
            )
            upload += len(data)
            t1 = time.perf_counter()
            self.aggregator.receive(out.device_id, data)
            t_agg += time.perf_counter() - t1
        t_enc = time.perf_counter() - t0 - t_agg
        return self._finish_round(round_idx, z, upload, t0, {"devices_s": t_enc}, t_agg)

    def _record_failed_device(self, dev: int, reason: str, dropped: bool, round_idx: int) -> None:
        if dropped:
            self.aggregator.receive(dev, None)
        else:
            self.aggregator.rejected[dev] = reason
            logger.warning("round %d: rejected device %d: %s", round_idx, dev, reason)

    def aggregate_messages(
        self,
        messages: dict[int, bytes | list[bytes] | None],
        round_idx: int,
        noise: np.ndarray | None = None,
    ) -> AggregationResult:
        """Aggregate raw device payloads (a frame, a list of serialized chunks, or ``None`` for
        a dropout). Bad payloads are rejected with a logged reason; the round always completes."""
        t0 = time.perf_counter()
        z = _check_noise(noise, self.spec.n_values)
        self._check_round(round_idx, len(messages), z)
        self.aggregator.start_round(round_idx)
        upload = 0
        for dev, payload in messages.items():
            if payload is not None:
                raw = payload if isinstance(payload, list | tuple) else [payload]
                for part in raw:
                    if isinstance(part, bytes | bytearray):
                        upload += len(
                            self.channel.send(
                                device_name(dev), AGGREGATOR, KIND_UPDATE, part, round_idx
                            )
                        )
            self.aggregator.receive(dev, payload)
        t_agg = time.perf_counter() - t0
        return self._finish_round(round_idx, z, upload, t0, {}, t_agg)

    def _finish_round(
        self,
        round_idx: int,
        noise: np.ndarray | None,
        upload: int,
        t0: float,
        timings: dict[str, float],
        t_agg: float,
    ) -> AggregationResult:
        agg = self.aggregator
        t1 = time.perf_counter()
        framed = agg.finish(noise)
        t_agg += time.perf_counter() - t1
        sent = self.channel.send(AGGREGATOR, KEY_HOLDER, KIND_AGGREGATE, framed, round_idx)
        peak = 0.0 if noise is None else float(np.max(np.abs(noise)))
        vb = self.spec.value_bound
        bound = (
            agg.n_accepted + peak / vb + precision_bound(self.spec.params, agg.n_accepted)
        ) * vb
        # L2: honest updates have norm <= l2_clip (the device's clip norm, when the orchestrator
        # knows it) and the noise vector's norm is known exactly; plus the CKKS error's norm
        z_norm = 0.0 if noise is None else float(np.linalg.norm(noise))
        l2_bound = None
        if self.l2_clip is not None:
            err = precision_bound(self.spec.params, agg.n_accepted) * vb
            l2_bound = (
                agg.n_accepted * self.l2_clip + z_norm + err * np.sqrt(self.spec.n_values)
            ) * (1 + 1e-9)
        t2 = time.perf_counter()
        released = self._key_holder.decrypt_aggregate(
            sent, round_idx, agg.n_accepted, abs_bound=bound * (1 + 1e-9), l2_bound=l2_bound
        )
        t_dec = time.perf_counter() - t2
        out = self.channel.send(
            KEY_HOLDER, SERVER, KIND_RESULT, released.total.tobytes(), round_idx
        )
        timings.update(aggregator_s=t_agg, key_holder_s=t_dec, total_s=time.perf_counter() - t0)
        return AggregationResult(
            total=np.frombuffer(out, dtype=np.float64).copy(),
            n_accepted=agg.n_accepted,
            rejected=dict(agg.rejected),
            upload_bytes=upload,
            dropped=list(agg.dropped),
            timings=timings,
            flooding=released.flooding,
        )

    def close(self) -> None:
        """Stop the encryption workers (idempotent)."""
        self._pool.close()

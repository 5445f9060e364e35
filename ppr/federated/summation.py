"""How a round's sum is formed: aggregation strategies, and DP noise that wraps them.

Every strategy has the same contract (:class:`SumStrategy`)::

    aggregate(round_idx, device_round, key) -> RoundSum(total, n_accepted, ...)

``total`` is the float64 ``(n_items, dim)`` sum of the accepted devices' clipped updates, plus the
noise a wrapper added. Strategies:

* :class:`StructuredSum`: plaintext, using the outer-product structure of the updates (the
  round sum is one matrix product; no dense per-device matrix). The fast path for utility sweeps.
  Upload bytes are counted as what each device would send (the float32 codec of its update).
* :class:`EncodedSum`: each device materializes its flat update and sends it through a
  :mod:`ppr.crypto` aggregation (``PlaintextAggregation`` or ``CkksSecureAggregation``): the
  aggregator then holds a public context only and never sees one device's update.

DP noise wraps a strategy instead of being a flag inside it:

* :class:`CentralNoise`: ``N(0, (sigma C)^2)`` on the sum. Under CKKS the noise vector is handed to
  the aggregator, which adds it to the *encrypted* sum before the key holder decrypts, so no party
  sees an un-noised aggregate.
* :class:`DistributedNoise`: each surviving device adds a share ``N(0, s^2)`` with
  ``s = sigma C / sqrt(n_min)`` (see :mod:`ppr.privacy.noise`) before its update leaves it. On the
  structured path the shares' sum is drawn as one Gaussian of std ``s sqrt(n)``: the same
  distribution as the sum of ``n`` independent shares.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import jax
import numpy as np

from ppr.federated.device import Float32Codec
from ppr.federated.fleet import DeviceRound
from ppr.privacy.noise import (
    central_noise,
    device_noise_shares,
    distributed_noise_share_std,
    gaussian_noise,
    realized_noise_multiplier,
)


@dataclass
class RoundSum:
    """The round's (noised) sum and what happened: accepted / rejected / dropped devices, bytes
    uploaded by devices, and the noise multiplier the sum really carries (``None``: no DP)."""

    total: np.ndarray
    n_accepted: int
    upload_bytes: int
    rejected: dict[int, str] = field(default_factory=dict)
    dropped: list[int] = field(default_factory=list)
    noise_multiplier: float | None = None
    timings: dict[str, float] = field(default_factory=dict)


class SumStrategy(Protocol):
    """Forms the round's sum. ``noise_share_std`` (distributed DP) is the std each device adds to
    its own update before sending; ``noise`` (central DP) a vector added to the sum before it is
    revealed."""

    n_items: int
    dim: int

    def aggregate(
        self,
        round_idx: int,
        devices: DeviceRound,
        key: jax.Array,
        *,
        noise: np.ndarray | None = None,
        noise_share_std: float = 0.0,
    ) -> RoundSum: ...

    def close(self) -> None: ...


class StructuredSum:
    """Plaintext round sum from the outer-product form of the updates (no dense matrices)."""

    def __init__(self, n_items: int, dim: int) -> None:
        self.n_items, self.dim = int(n_items), int(dim)

    def aggregate(
        self,
        round_idx: int,
        devices: DeviceRound,
        key: jax.Array,
        *,
        noise: np.ndarray | None = None,
        noise_share_std: float = 0.0,
    ) -> RoundSum:
        n = int(devices.device_ids.size)
        if n == 0:
            total = np.zeros((self.n_items, self.dim), np.float64)
        else:
            total = np.asarray(devices.clipped_sum(), dtype=np.float64)
        if noise_share_std > 0 and n > 0:
            # sum of n independent N(0, s^2) shares, drawn as one N(0, n s^2) vector
            shares = gaussian_noise(key, (self.n_items, self.dim), noise_share_std * np.sqrt(n))
            total = total + np.asarray(shares, np.float64)
        if noise is not None:
            total = total + np.asarray(noise, np.float64).reshape(total.shape)
        return RoundSum(total, n, n * Float32Codec().nbytes(self.n_items * self.dim))

    def close(self) -> None:
        """Nothing to release."""


class EncodedSum:
    """Devices send flat updates through a :mod:`ppr.crypto` aggregation (CKKS or plaintext).

    ``secure`` is a ``CkksSecureAggregation`` or ``PlaintextAggregation`` whose ``value_bound``
    covers every coordinate a device may send (the clip norm, plus the noise share's range under
    distributed DP). The participants' dense updates are streamed to it ``chunk`` devices at a time
    (float32, ``chunk * n_items * dim * 4`` bytes in memory: 14 MB at the ML-100K size for the
    default 64), never materialized for all participants at once.

    Distributed DP: device ``u``'s share is drawn from ``fold_in(key, u)``, so it does not depend
    on how the participants are bucketed or chunked.
    """

    def __init__(self, secure, n_items: int, dim: int, chunk: int = 64) -> None:
        if int(chunk) < 1:
            raise ValueError(f"`chunk` must be at least 1. Found {chunk}.")
        self.secure = secure
        self.n_items, self.dim = int(n_items), int(dim)
        self.chunk = int(chunk)
        self.flooding_std = 0.0  # the largest std the key holder flooded a release with

    def _chunks(
        self, devices: DeviceRound, key: jax.Array, share_std: float
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(device ids, float32 rows)`` as the devices send them: clipped update plus share."""
        for ids, rows in devices.dense_chunks(self.chunk):
            if share_std > 0:
                rows = rows + np.asarray(device_noise_shares(key, ids, rows.shape[1], share_std))
            yield ids, rows.astype(np.float32)

    def _rows(
        self, devices: DeviceRound, key: jax.Array, share_std: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """All participants' rows at once (for callers that must see them together)."""
        parts = list(self._chunks(devices, key, share_std))
        if not parts:
            return np.zeros((0, self.n_items * self.dim), np.float32), np.zeros(0, np.int64)
        return np.concatenate([r for _, r in parts]), np.concatenate([i for i, _ in parts])

    def aggregate(
        self,
        round_idx: int,
        devices: DeviceRound,
        key: jax.Array,
        *,
        noise: np.ndarray | None = None,
        noise_share_std: float = 0.0,
    ) -> RoundSum:
        flat_noise = None if noise is None else np.asarray(noise, np.float64).reshape(-1)
        res = self.secure.aggregate_stream(
            self._chunks(devices, key, noise_share_std),
            int(devices.device_ids.size),
            round_idx,
            noise=flat_noise,
        )
        self.flooding_std = max(self.flooding_std, float(res.flooding_std))
        return RoundSum(
            total=res.total.reshape(self.n_items, self.dim),
            n_accepted=res.n_accepted,
            upload_bytes=res.upload_bytes,
            rejected=dict(res.rejected),
            dropped=list(res.dropped),
            timings=dict(res.timings),
        )

    def close(self) -> None:
        self.secure.close()



class CentralNoise:
    """Central DP: Gaussian noise of std ``noise_multiplier * clip_norm`` added to the sum by the
    aggregator (inside the encrypted domain under CKKS)."""

    def __init__(self, inner: SumStrategy, noise_multiplier: float, clip_norm: float) -> None:
        self.inner = inner
        self.noise_multiplier, self.clip_norm = float(noise_multiplier), float(clip_norm)
        self.n_items, self.dim = inner.n_items, inner.dim

    def aggregate(
        self, round_idx: int, devices: DeviceRound, key: jax.Array, **_: object
    ) -> RoundSum:
        k_noise, k_inner = jax.random.split(key)
        z = np.asarray(
            central_noise(k_noise, (self.n_items, self.dim), self.noise_multiplier, self.clip_norm),
            np.float64,
        )
        out = self.inner.aggregate(round_idx, devices, k_inner, noise=z)
        out.noise_multiplier = self.noise_multiplier
        return out

    def close(self) -> None:
        self.inner.close()


class DistributedNoise:
    """Distributed DP: every device adds ``N(0, s^2)``, ``s = sigma C / sqrt(n_min)``, to its own
    update. The realized noise multiplier is ``sigma sqrt(min(n, n_min) / n_min)`` for ``n``
    accepted devices (dropouts and rejections lower it; the ledger is charged accordingly)."""

    def __init__(
        self, inner: SumStrategy, noise_multiplier: float, clip_norm: float, n_min: int
    ) -> None:
        self.inner = inner
        self.noise_multiplier, self.clip_norm, self.n_min = (
            float(noise_multiplier),
            float(clip_norm),
            int(n_min),
        )
        self.share_std = distributed_noise_share_std(noise_multiplier, clip_norm, n_min)
        self.n_items, self.dim = inner.n_items, inner.dim

    def aggregate(
        self, round_idx: int, devices: DeviceRound, key: jax.Array, **_: object
    ) -> RoundSum:
        out = self.inner.aggregate(round_idx, devices, key, noise_share_std=self.share_std)
        out.noise_multiplier = realized_noise_multiplier(
            self.noise_multiplier, self.n_min, out.n_accepted
        )
        return out

    def close(self) -> None:
        self.inner.close()

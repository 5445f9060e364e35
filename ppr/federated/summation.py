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

Compressed uploads with integer noise are one strategy with the noise inside,
:class:`DdgSum` (the distributed discrete Gaussian: see :mod:`ppr.federated.quantize`,
:mod:`ppr.privacy.ddg` and :mod:`ppr.crypto.integer`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import jax
import numpy as np

from ppr.crypto.integer import (
    IntegerAggregator,
    IntegerKeyHolder,
    batching_prime,
    encrypt_slots,
)
from ppr.federated.device import Float32Codec
from ppr.federated.fleet import DeviceRound
from ppr.federated.quantize import (
    decode_sum,
    encode_rows,
    pack,
    packed_width,
    padded_dim,
    plain_modulus_bits,
    rotation_signs,
    unpack_sum,
)
from ppr.privacy.ddg import DdgParams
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


def _rng_of(key: jax.Array, salt: int) -> np.random.Generator:
    """A NumPy generator seeded by ``fold_in(key, salt)`` (secret when ``key`` is)."""
    sub = jax.random.fold_in(key, int(salt))
    if jax.dtypes.issubdtype(sub.dtype, jax.dtypes.prng_key):
        sub = jax.random.key_data(sub)
    return np.random.default_rng(np.asarray(sub, np.uint32).reshape(-1).tolist())


class DdgSum:
    """Compressed uploads with integer noise: the distributed discrete Gaussian (KLS 2021).

    Each device rotates, scales, rounds and noises its clipped update into integers
    (:func:`ppr.federated.quantize.encode_rows`, with a discrete Gaussian share of std
    ``params.share_stddev``), packs ``k`` ``b``-bit values per slot and uploads them; the sum is
    taken modulo the plaintext modulus ``t`` -- under BFV encryption (``encrypted``, the
    aggregator holds the public context only) or as the same int64 arithmetic in the clear (the
    decrypted BFV sum is bitwise the plaintext one) -- then decoded, rescaled and unrotated.
    The noise is part of the upload, so this strategy is not wrapped by a noise class; its
    realized noise multiplier is ``σ sqrt(min(n, n_min) / n_min)`` as for
    :class:`DistributedNoise`.

    A round with more than ``params.n_cap`` devices (beyond the overflow bound) keeps
    ``n_cap`` of them chosen at random from the round key (a data-independent choice); the
    others are reported as dropped. Device randomness (rounding, shares) is drawn per chunk of
    ``chunk`` devices from ``fold_in(key, first device id)``. Upload bytes: the serialized
    ciphertexts (``encrypted``), else the packed slots at ``ceil(log2 t)`` bits each.
    """

    def __init__(
        self,
        params: DdgParams,
        n_items: int,
        dim: int,
        *,
        rotation_seed: int,
        encrypted: bool = False,
        chunk: int = 64,
    ) -> None:
        self.params = params
        self.n_items, self.dim = int(n_items), int(dim)
        self.d = self.n_items * self.dim
        if padded_dim(self.d) != params.dim:
            raise ValueError(f"DDG params are for dimension {params.dim}, not {self.d}.")
        self.rotation_seed, self.chunk = int(rotation_seed), int(chunk)
        self.modulus_bits = plain_modulus_bits(params.bits)
        self.keyholder = None
        if encrypted:
            self.keyholder = IntegerKeyHolder(self.modulus_bits)
            self.modulus = self.keyholder.modulus
        else:
            self.modulus = batching_prime(self.modulus_bits)

    def _uploads(self, devices: DeviceRound, keep: np.ndarray, signs, key) -> Iterator:
        """``(device id, packed int64 slots)`` for every kept device, chunk by chunk."""
        for ids, rows in devices.dense_chunks(self.chunk):
            mask = np.isin(ids, keep)
            if not mask.any():
                continue
            z = encode_rows(rows[mask], self.params, signs, _rng_of(key, int(ids[0])))
            yield from zip(ids[mask], pack(z, self.params.bits), strict=True)

    def _sum(self, uploads: Iterator) -> tuple[np.ndarray, int, int]:
        """``(slots sum mod t, devices, bytes)``, encrypted or in the clear."""
        if self.keyholder is None:
            total, n = np.zeros(self.params.dim // self._k(), np.int64), 0
            for _, slots in uploads:
                total += slots
                n += 1
            per = -(-total.size * self.modulus_bits // 8)
            return np.mod(total, self.modulus), n, n * per
        pub, sizes = self.keyholder.public_context, []

        def sealed():
            for _, slots in uploads:
                cts = encrypt_slots(pub, slots)
                sizes.append(sum(len(c) for c in cts))
                yield cts

        summed = IntegerAggregator(pub).sum(sealed())
        n_slots = self.params.dim // self._k()
        if not summed:
            return np.zeros(n_slots, np.int64), 0, 0
        return self.keyholder.decrypt_sum(summed, n_slots), len(sizes), int(sum(sizes))

    def _k(self) -> int:
        return packed_width(self.params.bits)

    def aggregate(
        self, round_idx: int, devices: DeviceRound, key: jax.Array, **_: object
    ) -> RoundSum:
        p = self.params
        ids = np.asarray(devices.device_ids, np.int64)
        keep = ids
        if ids.size > p.n_cap:  # beyond the overflow bound: a random, data-independent subset
            keep = np.sort(_rng_of(key, -1).choice(ids, p.n_cap, replace=False))
        signs = rotation_signs(self.rotation_seed, round_idx, p.dim)
        t0 = time.perf_counter()
        total, n, nbytes = self._sum(self._uploads(devices, keep, signs, key))
        z = unpack_sum(total, p.bits, self.modulus)
        flat = decode_sum(z, p, signs, self.d)
        sigma = None
        if p.noise_multiplier > 0:
            sigma = realized_noise_multiplier(p.noise_multiplier, p.n_min, n)
        return RoundSum(
            total=flat.reshape(self.n_items, self.dim),
            n_accepted=n,
            upload_bytes=nbytes,
            dropped=[int(i) for i in np.setdiff1d(ids, keep)],
            noise_multiplier=sigma,
            timings={"ddg_round_s": time.perf_counter() - t0},
        )

    def close(self) -> None:
        """Nothing to release (the BFV keys go with the object)."""

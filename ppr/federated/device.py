"""One device: the contract of what a device holds and what leaves it (the reference, in NumPy).

A :class:`Device` owns its state (its own training items, its settings) and builds its whole
outgoing message for a round: solve its user vector ``p_u`` from the global item matrix, compute
its update of the item matrix, clip it (through the one clipping function,
:func:`ppr.privacy.clipping.clip_factors`), add its distributed-DP noise share (through the one
noise function, :func:`ppr.privacy.noise.device_noise_share`), encode it (a :class:`Codec`:
float32 today) and, with a public CKKS context, encrypt it. What it does in a round is configured
by the server side with :class:`RoundInstructions` (as a Flower strategy configures each client).

This module is the *reference*: dense float64 NumPy, one device at a time, and it must not import
the batched kernels (:mod:`ppr.model.mf`, :mod:`ppr.federated.fleet`; an import-linter contract
forbids it). The fleet's vectorized path is its fast implementation; a test checks the two send
the same message, device by device.

Invariants:

* the device's raw items and ``p_u`` never appear in the message;
* the message's L2 norm before the noise share is ``<= clip_norm``;
* a device whose settings opt it out of training returns no message at all (``None``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import numpy as np

from ppr.privacy.clipping import clip_factors
from ppr.privacy.noise import device_noise_share


@dataclass(frozen=True)
class DeviceSettings:
    """What the person holding the device decided. ``train = False``: never sampled, sends
    nothing; ``refine = False``: no server refinement when serving; ``epsilon_cap``: the device
    stops taking part once its own spend would pass it (decided on planned quantities only)."""

    train: bool = True
    refine: bool = True
    epsilon_cap: float = math.inf


@dataclass(frozen=True)
class RoundInstructions:
    """What the server side asks of one device in one round (public, data-independent)."""

    round: int
    clip_norm: float
    alpha: float
    reg: float
    local_steps: int = 1
    local_lr: float = 1.0
    noise_share_std: float = 0.0
    codec: str = "float32"


class Float32Codec:
    """The wire format of a plaintext update: little-endian float32, ``4`` bytes per value."""

    name = "float32"
    bytes_per_value = 4

    def encode(self, values: np.ndarray) -> bytes:
        return np.asarray(values, "<f4").tobytes()

    def decode(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, "<f4").astype(np.float64)

    def nbytes(self, n_values: int) -> int:
        return int(n_values) * self.bytes_per_value


CODECS = {"float32": Float32Codec()}


def codec(name: str) -> Float32Codec:
    if name not in CODECS:
        raise ValueError(f"`codec` must be one of {sorted(CODECS)}. Found {name!r}.")
    return CODECS[name]


@dataclass
class DeviceMessage:
    """What leaves the device: ``values`` (the encoded vector, float32) and, when encrypted,
    ``payload`` (ciphertext bytes). ``norm`` is the pre-clip norm, kept on the device."""

    device_id: int
    values: np.ndarray
    payload: bytes | None = None
    norm: float = field(default=0.0, repr=False)


class Device:
    """Device ``device_id`` holding ``items`` (its own training item ids) of ``n_items``."""

    def __init__(
        self,
        device_id: int,
        items: np.ndarray,
        n_items: int,
        settings: DeviceSettings | None = None,
    ) -> None:
        self.device_id = int(device_id)
        self.items = np.unique(np.asarray(items, np.int64))
        self.n_items = int(n_items)
        self.settings = settings or DeviceSettings()

    def solve(self, q: np.ndarray, alpha: float, reg: float) -> np.ndarray:
        """``p_u = (Q^T Q + alpha Q_u^T Q_u + reg I)^{-1} (1 + alpha) Q_u^T 1`` (float64)."""
        q = np.asarray(q, np.float64)
        qu = q[self.items]
        a = q.T @ q + alpha * qu.T @ qu + reg * np.eye(q.shape[1])
        return np.linalg.solve(a, (1.0 + alpha) * qu.sum(axis=0))

    def update(self, q: np.ndarray, ins: RoundInstructions) -> tuple[np.ndarray, float]:
        """(clipped flat update ``f vec(v p^T)``, pre-clip norm): ``v`` after ``local_steps``
        steps of ``v <- v + lr c (r - Q p - ||p||^2 v)`` (one step: ``v = c (r - Q p)``)."""
        q = np.asarray(q, np.float64)
        p = self.solve(q, ins.alpha, ins.reg)
        r = np.zeros(self.n_items)
        r[self.items] = 1.0
        c = 1.0 + ins.alpha * r
        base = r - q @ p
        if ins.local_steps == 1:
            v = c * base
        else:
            v = np.zeros(self.n_items)
            for _ in range(ins.local_steps):
                v = v + ins.local_lr * c * (base - (p @ p) * v)
        norm = float(np.linalg.norm(v) * np.linalg.norm(p))
        f = float(clip_factors(np.float64(norm), ins.clip_norm))
        return (f * np.outer(v, p)).reshape(-1), norm

    def message(
        self,
        q: np.ndarray,
        ins: RoundInstructions,
        noise_key: jax.Array | None = None,
        encryptor=None,
    ) -> DeviceMessage | None:
        """The round's outgoing message, or ``None`` when the device does not train.

        ``noise_key`` is the round's noise key (secret, see :mod:`ppr.privacy.noise`); the share
        is drawn from it and this device's id. ``encryptor`` (a
        :class:`ppr.crypto.DeviceEncryptor` on the public context) encrypts the encoded vector.
        """
        if not self.settings.train:
            return None
        upd, norm = self.update(q, ins)
        if ins.noise_share_std > 0:
            if noise_key is None:
                raise ValueError("a noise share needs the round's `noise_key`.")
            share = device_noise_share(noise_key, self.device_id, upd.size, ins.noise_share_std)
            upd = upd + np.asarray(share, np.float64)
        enc = codec(ins.codec)
        values = enc.decode(enc.encode(upd))
        payload = None if encryptor is None else encryptor.encrypt(values, ins.round)
        return DeviceMessage(self.device_id, values, payload, norm)

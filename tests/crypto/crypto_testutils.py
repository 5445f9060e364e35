"""Helpers shared by the crypto tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import numpy as np

#: Two ciphertexts (2048 slots each), the second one partly padded.
SMALL_SIZE = 3000


def clipped_updates(
    rng: np.random.Generator, n_devices: int, size: int, clip: float = 1.0
) -> np.ndarray:
    """Random float32 updates with L2 norm ``clip`` (so every coordinate is <= clip)."""
    u = rng.normal(size=(n_devices, size))
    u *= clip / np.linalg.norm(u, axis=1, keepdims=True)
    return u.astype(np.float32)

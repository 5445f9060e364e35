"""Compressed embeddings for the device: float32, float16, or int8 with a per-row scale.

The device stores the item matrix ``Q`` (and, if it wishes, its own user vector) in one of three
formats, from the most precise to the smallest:

* ``float32``: exact (the released model's own precision); 4 bytes per entry.
* ``float16``: IEEE half, round to nearest; 2 bytes per entry. Per entry
  ``|q_hat - q| <= 2**-11 |q_hat| + 2**-25`` (relative half-ulp in the normal range, plus half of
  the smallest subnormal below it); values beyond 65504 do not fit and are refused.
* ``int8``: symmetric per-row quantization, ``scale_r = max_k |q_rk| / 127`` (stored as float32),
  ``code = round(q / scale)`` in ``[-127, 127]``, ``q_hat = code * scale``; 1 byte per entry + 4 per
  row. Per entry ``|q_hat - q| <= scale_r / 2`` in exact arithmetic; decoding into float32 adds at
  most ``2**-24 |q_hat|`` of rounding, which :func:`entry_error_bound` includes.

Score error (:func:`score_error_bound`): with per-entry bounds ``e_p`` and ``e_q`` on the user
vector and the item row, ``p . q - p_hat . q_hat = (p - p_hat) . q + p_hat . (q - q_hat)`` and
``|q_k| <= |q_hat_k| + e_q,k``, so
``|p_hat . q_hat - p . q| <= sum_k e_p,k (|q_hat_k| + e_q,k) + |p_hat_k| e_q,k``: a bound computed
from the stored (decoded) values only, as the device can. (The float32 accumulation of the dot
product itself is not included; it is ~1e-7 relative.)

Invariants: :func:`decode` of :func:`encode` of ``x`` is within :func:`entry_error_bound` of ``x``
entry by entry; ``float32`` round-trips exactly; an all-zero int8 row has scale 0 and decodes to 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ppr.io import atomic_write
from ppr.serving.errors import CodecError

Format = Literal["float32", "float16", "int8"]

#: Formats from the most precise (and largest) to the smallest.
FORMATS: tuple[Format, ...] = ("float32", "float16", "int8")

_STORAGE = {"float32": np.float32, "float16": np.float16, "int8": np.int8}
_F16_MAX = float(np.finfo(np.float16).max)
_F16_REL = 2.0**-11  # unit roundoff of float16
_F16_SUB = 2.0**-25  # half the smallest float16 subnormal
_F32_REL = 2.0**-24  # unit roundoff of float32


@dataclass(frozen=True)
class Encoded:
    """A matrix ``(n_rows, dim)`` in one storage format.

    ``codes`` holds the stored entries (dtype float32, float16 or int8); ``scale`` is the float32
    per-row scale for ``int8`` and ``None`` otherwise. Arrays may be memory-mapped (read-only).
    """

    format: Format
    codes: np.ndarray
    scale: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.codes.shape[0]), int(self.codes.shape[1]))

    @property
    def nbytes(self) -> int:
        """Bytes held by the device for this matrix (codes plus scales)."""
        return int(self.codes.nbytes) + (0 if self.scale is None else int(self.scale.nbytes))

    def decode(self, rows: np.ndarray | slice | None = None, dtype=np.float32) -> np.ndarray:
        """Decoded rows (all rows when ``rows`` is None) as ``dtype`` (float32 or float64)."""
        sel = slice(None) if rows is None else rows
        out = np.asarray(self.codes[sel], dtype=dtype)
        if self.scale is not None:
            out *= np.asarray(self.scale[sel], dtype=dtype)[..., None]
        return out


def check_format(fmt: str) -> Format:
    """``fmt`` if it is a known format, else :class:`CodecError` naming the known ones."""
    if fmt not in _STORAGE:
        raise CodecError(f"unknown embedding format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return fmt  # type: ignore[return-value]


def bytes_per_row(fmt: str, dim: int) -> int:
    """Stored bytes of one row of ``dim`` entries: ``4 dim``, ``2 dim``, or ``dim + 4`` (int8)."""
    fmt = check_format(fmt)
    return {"float32": 4 * dim, "float16": 2 * dim, "int8": dim + 4}[fmt]


def encode(x: np.ndarray, fmt: str) -> Encoded:
    """``x`` (``(n, dim)``, or ``(dim,)`` for one vector, stored as one row) in format ``fmt``.

    Raises :class:`CodecError` on non-finite entries, or on entries beyond float16's range."""
    fmt = check_format(fmt)
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    if x.ndim != 2:
        raise CodecError(f"expected a vector or a matrix, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise CodecError("embedding holds a non-finite value (NaN or inf)")
    if fmt == "float32":
        return Encoded(fmt, np.ascontiguousarray(x))
    if fmt == "float16":
        big = float(np.abs(x).max(initial=0.0))
        if big > _F16_MAX:
            raise CodecError(f"value {big:.4g} exceeds float16's range (max {_F16_MAX:.0f})")
        return Encoded(fmt, x.astype(np.float16))
    scale = (np.abs(x).max(axis=1, initial=0.0) / 127.0).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float64)
    codes = np.clip(np.rint(x.astype(np.float64) / safe[:, None]), -127, 127).astype(np.int8)
    return Encoded(fmt, codes, scale)


def decode(enc: Encoded, dtype=np.float32) -> np.ndarray:
    """All rows of ``enc`` decoded to ``dtype``."""
    return enc.decode(None, dtype)


def entry_error_bound(enc: Encoded) -> np.ndarray:
    """Per-entry bound ``e`` (float64, shape of ``enc``) with ``|decode(enc) - x| <= e``
    for the ``x`` that was encoded (see the module docstring for each format)."""
    q_hat = np.abs(enc.decode(dtype=np.float64))
    if enc.format == "float32":
        return np.zeros_like(q_hat)
    if enc.format == "float16":
        return _F16_REL * q_hat + _F16_SUB
    assert enc.scale is not None
    half = 0.5 * np.asarray(enc.scale, dtype=np.float64)[:, None]
    return half + _F32_REL * q_hat


def score_error_bound(
    p_hat: np.ndarray, p_err: np.ndarray | float, items: Encoded, rows: np.ndarray | None = None
) -> np.ndarray:
    """Bound on ``|p_hat . q_hat_i - p . q_i|`` for each item row ``i`` (all rows, or ``rows``).

    ``p_hat`` is the user vector the device scores with and ``p_err`` its per-entry error bound
    (0 for an exact float64/float32 vector; :func:`entry_error_bound` of its encoding otherwise).
    """
    sub = items if rows is None else _take(items, rows)
    q_hat = np.abs(sub.decode(dtype=np.float64))
    e_q = entry_error_bound(sub)
    e_p = np.broadcast_to(np.asarray(p_err, dtype=np.float64), q_hat.shape[1:])
    p_abs = np.abs(np.asarray(p_hat, dtype=np.float64).ravel())
    return (q_hat + e_q) @ e_p + e_q @ p_abs


def _take(enc: Encoded, rows: np.ndarray) -> Encoded:
    rows = np.asarray(rows)
    return Encoded(enc.format, enc.codes[rows], None if enc.scale is None else enc.scale[rows])


def save_encoded(enc: Encoded, folder: str | Path) -> None:
    """Write ``items.npy`` (codes) and, for int8, ``scale.npy`` into ``folder``."""
    folder = Path(folder)
    save_npy(folder / "items.npy", enc.codes)
    if enc.scale is not None:
        save_npy(folder / "scale.npy", enc.scale)


def save_npy(path: Path, arr: np.ndarray) -> None:
    """``np.save`` through :func:`ppr.io.atomic_write`: the file is absent or complete."""
    data = np.ascontiguousarray(arr)
    atomic_write(path, lambda f: np.save(f, data, allow_pickle=False))


def load_encoded(folder: str | Path, fmt: str, mmap: bool = True) -> Encoded:
    """Read what :func:`save_encoded` wrote; ``mmap`` maps the arrays read-only (no copy)."""
    fmt = check_format(fmt)
    folder = Path(folder)
    mode = "r" if mmap else None
    codes = np.load(folder / "items.npy", mmap_mode=mode, allow_pickle=False)
    if codes.dtype != _STORAGE[fmt] or codes.ndim != 2:
        raise CodecError(f"{folder / 'items.npy'}: expected a {fmt} matrix, got {codes.dtype}")
    scale = (
        np.load(folder / "scale.npy", mmap_mode=mode, allow_pickle=False) if fmt == "int8" else None
    )
    if scale is not None and scale.shape != (codes.shape[0],):
        raise CodecError(f"{folder / 'scale.npy'}: expected {codes.shape[0]} row scales")
    return Encoded(fmt, codes, scale)

"""Packing of flat updates into slot-sized chunks, and the wire frame for a list of ciphertexts.

Frame layout (little endian): ``b"PPRC"``, version ``u8`` (2), round index ``i64``, chunk count
``u32``, then ``u32`` length per chunk, then a 32-byte BLAKE2b digest of everything else (header,
lengths and chunks), then the chunk bytes back to back. Parsing never trusts the header: counts
and lengths are checked against the actual payload size, and the digest against the bytes.

The digest is keyless: it catches corruption in transport (a flipped byte inside a SEAL
ciphertext usually still parses, as a valid ciphertext of garbage, and would make the key holder
refuse the whole round), not a device that frames garbage on purpose, which can always compute
the digest of what it sends.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from ppr.crypto.errors import UpdateRejected

_MAGIC = b"PPRC"
_VERSION = 2
_HEADER = struct.Struct("<4sBqI")
_LEN = struct.Struct("<I")
_DIGEST_BYTES = 32
#: Upper bound on chunks in one frame (protects the parser from absurd headers).
MAX_CHUNKS = 1 << 16


def pack(update: np.ndarray, slots: int) -> np.ndarray:
    """Flat ``update`` (length n) -> ``(ceil(n / slots), slots)`` float64 array, zero-padded.

    Invariant: ``unpack(pack(x, s), len(x)) == x`` exactly (as float64).
    """
    flat = np.asarray(update, dtype=np.float64).reshape(-1)
    if slots <= 0:
        raise ValueError(f"`slots` must be positive. Found {slots}.")
    n_chunks = max(1, -(-flat.size // slots))
    out = np.zeros(n_chunks * slots, dtype=np.float64)
    out[: flat.size] = flat
    return out.reshape(n_chunks, slots)


def unpack(chunks: np.ndarray | list[np.ndarray], n_values: int) -> np.ndarray:
    """Concatenate decrypted chunks and drop the zero padding: float64 vector of ``n_values``."""
    flat = np.concatenate([np.asarray(c, dtype=np.float64).reshape(-1) for c in chunks])
    if flat.size < n_values:
        raise ValueError(f"chunks hold {flat.size} values, fewer than `n_values` {n_values}.")
    return flat[:n_values].copy()


def encode_frame(chunks: list[bytes], round_idx: int) -> bytes:
    """Serialize a list of ciphertext byte strings for one round into one message."""
    if len(chunks) > MAX_CHUNKS:
        raise ValueError(f"at most {MAX_CHUNKS} chunks per frame. Found {len(chunks)}.")
    header = _HEADER.pack(_MAGIC, _VERSION, int(round_idx), len(chunks))
    lengths = struct.pack(f"<{len(chunks)}I", *(len(c) for c in chunks))
    digest = _digest([header, lengths, *chunks])
    # One join: the frame (megabytes for a whole update) is copied exactly once.
    return b"".join([header, lengths, digest, *chunks])


def _digest(parts: list[bytes] | list[memoryview]) -> bytes:
    h = hashlib.blake2b(digest_size=_DIGEST_BYTES, person=b"ppr-frame-v2")
    for part in parts:
        h.update(part)
    return h.digest()


def decode_frame(payload: bytes) -> tuple[int, list[bytes]]:
    """Parse a frame into ``(round_idx, chunks)``; raise :class:`UpdateRejected` on any defect."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise UpdateRejected(f"payload is {type(payload).__name__}, not bytes")
    data = bytes(payload)
    if len(data) < _HEADER.size:
        raise UpdateRejected(f"payload of {len(data)} bytes is shorter than the frame header")
    magic, version, round_idx, n_chunks = _HEADER.unpack_from(data, 0)
    if magic != _MAGIC or version != _VERSION:
        raise UpdateRejected("payload is not a ppr ciphertext frame (bad magic or version)")
    if n_chunks > MAX_CHUNKS:
        raise UpdateRejected(f"frame claims {n_chunks} chunks (limit {MAX_CHUNKS})")
    table_end = _HEADER.size + _LEN.size * n_chunks
    offset = table_end + _DIGEST_BYTES
    if len(data) < offset:
        raise UpdateRejected("frame is truncated inside its chunk-length table or digest")
    lengths = struct.unpack_from(f"<{n_chunks}I", data, _HEADER.size)
    if offset + sum(lengths) != len(data):
        raise UpdateRejected(
            f"frame lengths sum to {offset + sum(lengths)} bytes but the payload has {len(data)}"
        )
    view = memoryview(data)
    if _digest([view[:table_end], view[offset:]]) != data[table_end:offset]:
        raise UpdateRejected("frame digest mismatch (corrupted in transport)")
    chunks = []
    for n in lengths:
        chunks.append(data[offset : offset + n])
        offset += n
    return int(round_idx), chunks

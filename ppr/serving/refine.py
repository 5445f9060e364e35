"""Server-side refinement on ciphertext: the device's own CKKS key and the server's scorer.

Layout ("broadcast columns", no rotations): the device holds its own CKKS context with its
secret key (:class:`DeviceKey`, symmetric encryption; the key never leaves it) and encrypts its
user vector ``p`` (length ``dim``) as ``dim`` ciphertexts, ciphertext ``k`` holding
``p_k / p_scale`` in every one of its ``N / 2`` slots. The server (:class:`RefinementScorer`)
holds the released float32 item matrix of the full catalog; for a block of ``N / 2`` items it
multiplies ciphertext ``k`` by the plaintext column ``Q[block, k] / q_scale`` and adds the
``dim`` products: one ciphertext of ``N / 2`` scores, one multiplicative level, no rotation and
hence no Galois or relinearization keys. What the server receives of the device's key material
is the *parameter-only* context (:meth:`DeviceKey.public_context`: no secret, public, Galois or
relinearization key; about 90 bytes): with symmetric encryption nothing else is needed.

Parameters (:class:`RefineParams`): ``N = 4096`` (2,048 slots), one 60-bit data prime and a
20-bit special prime (80 bits, below the 109-bit limit of 128-bit security at N = 4096), no
rescaling. Ciphertext and plaintext share the scale ``2^s``; the product has scale ``2^(2s)`` and
must stay below the 60-bit modulus: with ``|p / p_scale| <= 1`` and ``|Q / q_scale| <= 1`` a
normalized score is at most ``dim``, so ``s = floor((59 - ceil(log2(dim + 1))) / 2)`` (26 at
dim 32, 27 at dim 8).

Precision bound (:func:`score_error_bound`, checked by ``tests/serving/test_refine.py``): the
decrypted normalized score of item ``i`` differs from ``p_hat . q_hat_i`` by at most
``12 * 2^(FRESH_BITS - s) * (||q_hat_i||_2 + 1)`` (``FRESH_BITS = 7``: the per-slot std of a fresh
symmetric encryption's error is about ``2^(6.4 - s)``, measured, rounded up; 12 sigma covers the
worst slot; the ``+ 1`` covers the plaintext encoding's rounding). In real units it is multiplied
by ``p_scale * q_scale``. At dim 32 that is about ``1e-4 * p_scale * q_scale``, far below the
score gaps that decide a ranking and below the int8 format's own score error.

Why this is safe for the device: only the device decrypts, and nothing it decrypts is sent back
(the re-ranked list is shown to its user), so the key-recovery attack on exact CKKS decryptions
(Li and Micciancio 2021) has no decryption to work with.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import tenseal as ts

from ppr.crypto.errors import UpdateRejected
from ppr.crypto.packing import decode_frame, encode_frame
from ppr.serving.errors import ServingError

#: log2 of the measured per-slot std of a fresh symmetric encryption's error at scale 1.
FRESH_BITS = 7.0
#: Sigmas of the per-slot bound (worst slot among thousands).
SIGMAS = 12.0
#: Frame "round" tags: a vector upload and a score response.
TAG_VECTOR, TAG_SCORES = 1, 2


class RefineError(ServingError):
    """A refinement message that cannot be used: ``status`` is the HTTP status it maps to
    (400 malformed, 404 unknown context, 409 state, 413 too large, 422 wrong parameters)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = int(status)


@dataclass(frozen=True)
class RefineParams:
    """CKKS parameters of refinement for a model of dimension ``dim`` (module docstring)."""

    dim: int
    poly_modulus_degree: int = 4096
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 20)

    def __post_init__(self) -> None:
        if not 1 <= self.dim <= 256:
            raise ServingError(f"refinement needs 1 <= dim <= 256. Found {self.dim}.")

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def scale_bits(self) -> int:
        return (self.coeff_mod_bit_sizes[0] - 1 - math.ceil(math.log2(self.dim + 1))) // 2

    def as_dict(self) -> dict:
        return {
            "dim": self.dim,
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "scale_bits": self.scale_bits,
        }


def score_error_bound(params: RefineParams, q_rows: np.ndarray) -> np.ndarray:
    """Per-item bound on ``|decrypted - p_hat . q_hat_i|`` in normalized units (module doc) for
    the normalized rows ``q_rows`` (``|entries| <= 1``)."""
    norms = np.linalg.norm(np.asarray(q_rows, np.float64), axis=-1)
    return SIGMAS * 2.0 ** (FRESH_BITS - params.scale_bits) * (norms + 1.0)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"


class DeviceKey:
    """The device's own CKKS context (secret key inside; never serialized with it)."""

    def __init__(self, params: RefineParams) -> None:
        self.params = params
        self._ctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            params.poly_modulus_degree,
            coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
            encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
        )
        self._ctx.global_scale = float(2**params.scale_bits)
        self._ctx.auto_rescale = False

    def __getstate__(self) -> None:
        raise TypeError("a DeviceKey holds a secret key and is never pickled")

    def __repr__(self) -> str:
        return f"DeviceKey(dim={self.params.dim}, N={self.params.poly_modulus_degree})"

    def public_context(self) -> bytes:
        """The parameters only: no secret, public, Galois or relinearization key."""
        return self._ctx.serialize(
            save_public_key=False,
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=False,
        )

    def encrypt_vector(self, p: np.ndarray) -> tuple[bytes, float]:
        """``(frame of dim broadcast ciphertexts, p_scale)`` for the user vector ``p``."""
        p = np.asarray(p, np.float64).ravel()
        if p.size != self.params.dim or not np.all(np.isfinite(p)):
            raise ServingError(f"user vector must be {self.params.dim} finite values")
        p_scale = float(np.max(np.abs(p))) or 1.0
        slots = self.params.slots
        cts = [ts.ckks_vector(self._ctx, [float(v / p_scale)] * slots).serialize() for v in p]
        return encode_frame(cts, TAG_VECTOR), p_scale

    def decrypt_scores(self, frame: bytes, n_blocks: int) -> np.ndarray:
        """The ``(n_blocks, slots)`` normalized scores in a score response."""
        try:
            tag, cts = decode_frame(frame)
        except UpdateRejected as exc:
            raise RefineError(f"score response: {exc}") from None
        if tag != TAG_SCORES or len(cts) != n_blocks:
            raise RefineError(f"score response holds {len(cts)} blocks, expected {n_blocks}")
        out = np.empty((n_blocks, self.params.slots), np.float64)
        for b, raw in enumerate(cts):
            try:
                out[b] = ts.ckks_vector_from(self._ctx, raw).decrypt()[: self.params.slots]
            except Exception as exc:
                raise RefineError(f"score response block {b}: {_short(exc)}") from None
        return out


class BlockPartition:
    """Public assignment of the catalog's items to blocks of ``slots`` items: a permutation
    seeded by the model version (data-independent, computed alike by device and server), so
    every block is a uniform random sample of the catalog (same popularity profile)."""

    def __init__(self, n_items: int, slots: int, version: str) -> None:
        seed = int.from_bytes(hashlib.sha256(f"ppr-blocks/{version}".encode()).digest()[:8], "big")
        self.n_items, self.slots = int(n_items), int(slots)
        self.order = np.random.default_rng(seed).permutation(self.n_items)
        self.block_of = np.empty(self.n_items, np.int64)
        self.block_of[self.order] = np.arange(self.n_items) // self.slots

    @property
    def n_blocks(self) -> int:
        return max(1, math.ceil(self.n_items / self.slots))

    def items(self, block: int) -> np.ndarray:
        """Item ids of ``block`` in slot order (the last block may be short)."""
        return self.order[block * self.slots : (block + 1) * self.slots]


class RefinementScorer:
    """The server's side: the float32 item matrix of the full catalog and the block partition.
    It loads parameter-only contexts (refusing any that hold a secret key) and scores."""

    def __init__(self, q: np.ndarray, version: str, params: RefineParams | None = None) -> None:
        self.q = np.ascontiguousarray(q, np.float32)
        self.params = params or RefineParams(dim=int(self.q.shape[1]))
        if self.params.dim != self.q.shape[1]:
            raise ServingError(f"params dim {self.params.dim} != model dim {self.q.shape[1]}")
        self.version = version
        self.partition = BlockPartition(self.q.shape[0], self.params.slots, version)
        self.q_scale = float(np.max(np.abs(self.q))) or 1.0
        self._max_ct = 0

    def info(self) -> dict:
        return {
            "version": self.version,
            "n_items": int(self.q.shape[0]),
            "n_blocks": self.partition.n_blocks,
            "q_scale": self.q_scale,
            "params": self.params.as_dict(),
        }

    def load_context(self, raw: bytes) -> ts.Context:
        """A device's parameter-only context; :class:`RefineError` if it does not parse, holds a
        secret key or has other parameters."""
        try:
            ctx = ts.context_from(bytes(raw), n_threads=1)
        except Exception as exc:
            raise RefineError(f"context does not deserialize ({_short(exc)})") from None
        if ctx.is_private():
            raise RefineError("context holds a secret key: send the parameters only", 422)
        want = _param_fingerprint(self.params)
        if _context_fingerprint(ctx) != want:
            raise RefineError(f"context parameters differ from the server's {want}", 422)
        ctx.global_scale = float(2**self.params.scale_bits)
        ctx.auto_rescale = False
        return ctx

    def load_vector(self, ctx: ts.Context, frame: bytes) -> list[ts.CKKSVector]:
        """The ``dim`` broadcast ciphertexts of an encrypted user vector."""
        try:
            tag, cts = decode_frame(frame)
        except UpdateRejected as exc:
            raise RefineError(f"vector: {exc}") from None
        if tag != TAG_VECTOR or len(cts) != self.params.dim:
            raise RefineError(
                f"vector holds {len(cts)} ciphertexts, expected {self.params.dim}", 422
            )
        out = []
        for k, raw in enumerate(cts):
            try:
                vec = ts.ckks_vector_from(ctx, raw)
            except Exception as exc:
                raise RefineError(f"vector ciphertext {k}: {_short(exc)}") from None
            if vec.size() != self.params.slots:
                raise RefineError(f"vector ciphertext {k} has {vec.size()} slots", 422)
            out.append(vec)
        return out

    def score(self, vectors: list[ts.CKKSVector], blocks: list[int]) -> bytes:
        """One ciphertext of normalized scores per requested block (slot order of the block)."""
        if any(not 0 <= b < self.partition.n_blocks for b in blocks) or not blocks:
            raise RefineError(f"block ids must be in 0..{self.partition.n_blocks - 1}", 422)
        return self._score([self.partition.items(int(b)) for b in blocks], vectors)

    def score_items(self, vectors: list[ts.CKKSVector], items: np.ndarray) -> bytes:
        """Normalized scores of ``items`` (in the given order), ``slots`` per ciphertext."""
        items = np.asarray(items, np.int64)
        if items.size == 0 or items.min() < 0 or items.max() >= self.q.shape[0]:
            raise RefineError(f"item ids must be in 0..{self.q.shape[0] - 1}", 422)
        slots = self.params.slots
        return self._score([items[s : s + slots] for s in range(0, items.size, slots)], vectors)

    def _score(self, chunks: list[np.ndarray], vectors: list[ts.CKKSVector]) -> bytes:
        out = []
        for ids in chunks:
            rows = np.zeros((self.params.slots, self.params.dim), np.float64)
            rows[: ids.size] = self.q[ids] / self.q_scale
            acc = None
            for k, vec in enumerate(vectors):
                term = vec * rows[:, k].tolist()
                acc = term if acc is None else acc.add_(term)
            out.append(acc.serialize())
        return encode_frame(out, TAG_SCORES)

    def block_rows(self, block: int) -> bytes:
        """The float32 rows (little-endian, slot order) of ``block``: the public model, which
        any device may stream (e.g. to keep the full rows of its own items)."""
        if not 0 <= block < self.partition.n_blocks:
            raise RefineError(f"block ids must be in 0..{self.partition.n_blocks - 1}", 404)
        return self.q[self.partition.items(block)].astype("<f4").tobytes()


def _param_fingerprint(params: RefineParams) -> tuple[int, int, int]:
    """(poly modulus degree, all modulus bits, data bits) the server expects."""
    bits = params.coeff_mod_bit_sizes
    return params.poly_modulus_degree, sum(bits), sum(bits[:-1])


def _context_fingerprint(ctx: ts.Context) -> tuple[int, int, int]:
    """The same triple read from a loaded context's SEAL parameters."""
    seal = ctx.data.seal_context()
    key, first = seal.key_context_data(), seal.first_context_data()
    return (
        int(key.parms().poly_modulus_degree()),
        int(key.total_coeff_modulus_bit_count()),
        int(first.total_coeff_modulus_bit_count()),
    )

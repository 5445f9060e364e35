"""The three roles of CKKS secure aggregation, each with its own key material.

* :class:`KeyHolder` generates the keys and keeps the only secret key; it publishes a public
  context (public key only: no secret, relinearization or Galois keys) and decrypts the round's
  aggregate, once per round, and releases it only *flooded*: with fresh Gaussian noise of the
  std that :func:`~ppr.crypto.params.flooding_std` states (Li, Micciancio, Schultz, Sorrell,
  CRYPTO 2022), because an exact CKKS decryption of ciphertexts the aggregator holds gives away
  the secret key (Li and Micciancio, EUROCRYPT 2021; ``tests/crypto/test_key_recovery.py``).
  Nothing computed from the exact decryption leaves the key holder: the bound checks below run
  on the flooded values. The flooding randomness is secret: a fresh 128-bit seed from the OS
  (:mod:`secrets`) per decryption, never the run's seed; an explicit ``np.random.Generator``
  selects a reproducible experiment mode, labelled as such in every :class:`FloodingReport`. Like
  the DP noise it is floating-point Gaussian sampling (Mironov 2012 applies); :func:`_flood` is
  the one place a secure sampler would replace. The key holder also counts decryptions: one key
  releases at most ``params.max_decryptions`` ciphertexts (the ``tau`` of the flooding rule).
* :class:`Aggregator` holds a public context only: it validates and sums device ciphertexts, adds
  a plaintext vector (central DP noise) to the encrypted sum and cannot decrypt.
* :class:`DeviceEncryptor` holds a public context and encrypts its own update.

What the aggregator can and cannot detect: payloads that do not parse, frames corrupted in
transport (a flipped byte: the frame's digest), frames for another round, wrong chunk counts,
ciphertexts under other parameters (poly modulus degree, primes: via SEAL's ``parms_id``), at
another scale, of another length, with more than two polynomials, not in NTT form or transparent
(not encrypted). It cannot detect a ciphertext encrypted under another key with the same
parameters, a well-formed ciphertext of garbage (e.g. one byte flipped by the device itself,
under a valid digest: a ciphertext's coefficients look uniformly random, so there is no range to
check without the secret key), nor non-finite or out-of-bound values inside a valid ciphertext:
those are only visible after decryption, where the key holder rejects a non-finite aggregate or
one with a coordinate beyond what the accepted cohort plus the noise can reach
(:class:`AggregateRejectedError`; the whole round's result is then discarded: one such device
costs every round it takes part in).

Secret keys are never logged, pickled or serialized; the key holder's context is created in
memory and dies with it.
"""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass

import numpy as np
import tenseal as ts

from ppr.crypto.errors import AggregateRejectedError, ProtocolError, UpdateRejected
from ppr.crypto.packing import decode_frame, encode_frame, pack, unpack
from ppr.crypto.params import ckks_error_bound, flooding_std, precision_bound
from ppr.crypto.spec import AggregationSpec, check_update

logger = logging.getLogger("ppr.crypto")

#: A chunk larger than this multiple of an honest chunk (plus 4 KiB) is refused unparsed.
_MAX_CHUNK_FACTOR = 1.5


def _short(exc: BaseException) -> str:
    """One-line, bounded description of a library exception (never payload bytes)."""
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_public_context(public_context: bytes, who: str) -> ts.Context:
    """Deserialize a context that must be public; raise :class:`ProtocolError` otherwise."""
    try:
        ctx = ts.context_from(bytes(public_context), n_threads=1)
    except Exception as exc:
        raise ProtocolError(
            f"{who}: the public context does not deserialize ({_short(exc)})."
        ) from exc
    if ctx.has_secret_key() or ctx.is_private():
        raise ProtocolError(f"{who} must hold a public context only, but it contains a secret key.")
    return ctx


#: ``FloodingReport.source`` of the default mode and of the explicit-generator mode.
FLOODING_FROM_OS = "os"
FLOODING_REPRODUCIBLE = "generator (reproducible experiment mode: the flooding is NOT secret)"


@dataclass(frozen=True)
class FloodingReport:
    """What the key holder added to one released aggregate, in the units of the update.

    ``std`` is the std of the i.i.d. Gaussian noise added to every released coordinate;
    ``floor`` the least std the flooding rule allows for this aggregate (``std >= floor``);
    ``ckks_error_bound`` the bound ``t`` on the CKKS error that the rule floods;
    ``error_bound`` the stated per-coordinate bound on ``|released - exact|`` (CKKS error, ten
    flooding stds and float64 rounding: :func:`~ppr.crypto.params.precision_bound`);
    ``statistical_security`` and ``max_decryptions`` the ``s`` and ``tau`` of the rule;
    ``decryptions`` how many ciphertexts the key has released so far, this aggregate included;
    ``source`` where the noise came from (:data:`FLOODING_FROM_OS` unless an explicit generator
    was given: :data:`FLOODING_REPRODUCIBLE`).
    """

    std: float
    floor: float
    ckks_error_bound: float
    error_bound: float
    statistical_security: int
    max_decryptions: int
    decryptions: int
    source: str

    @property
    def reproducible(self) -> bool:
        """True when the noise came from a caller's generator (not secret)."""
        return self.source != FLOODING_FROM_OS


@dataclass(frozen=True)
class Decryption:
    """A released aggregate: the flooded float64 ``total`` and what flooded it."""

    total: np.ndarray
    flooding: FloodingReport


class KeyHolder:
    """Owner of the secret key. Decrypts exactly one aggregate per round index and releases it
    flooded (module docstring).

    Invariants: a round index, once passed to :meth:`decrypt_aggregate` (successfully or not), can
    never be decrypted again; at most ``spec.params.max_decryptions`` ciphertexts are decrypted
    under the key; no exact decryption, nor anything computed from one, is ever returned.

    ``rng``: ``None`` (the default, and the only mode for real use) draws the flooding noise from
    a fresh OS seed per decryption; a ``np.random.Generator`` makes it reproducible, for labelled
    experiments only (logged, and reported in every :class:`FloodingReport`).
    """

    def __init__(self, spec: AggregationSpec, rng: np.random.Generator | None = None) -> None:
        p = spec.params
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"`rng` must be a numpy Generator or None. Found {type(rng).__name__}.")
        self.spec = spec
        ctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            p.poly_modulus_degree,
            coeff_mod_bit_sizes=list(p.coeff_mod_bit_sizes),
            n_threads=1,
        )
        ctx.global_scale = p.scale
        self._ctx = ctx
        self._rng = rng
        self._decrypted_rounds: set[int] = set()
        self._decryptions = 0
        if rng is not None:
            logger.warning(
                "key holder: flooding noise from a caller's generator: reproducible experiment "
                "mode, the flooding is not secret"
            )

    def __repr__(self) -> str:
        n = len(self._decrypted_rounds)
        return f"KeyHolder(params={self.spec.params!r}, rounds_decrypted={n})"

    def __getstate__(self) -> None:
        raise TypeError("KeyHolder holds the secret key and must not be pickled.")

    @property
    def decryptions(self) -> int:
        """Ciphertexts decrypted (and released flooded) under this key so far."""
        return self._decryptions

    @property
    def flooding_source(self) -> str:
        """:data:`FLOODING_FROM_OS`, or :data:`FLOODING_REPRODUCIBLE` with an explicit ``rng``."""
        return FLOODING_FROM_OS if self._rng is None else FLOODING_REPRODUCIBLE

    def public_context(self) -> bytes:
        """Serialized public context: public key and parameters only."""
        return self._ctx.serialize(
            save_public_key=True,
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=False,
        )

    def has_decrypted(self, round_idx: int) -> bool:
        """Whether the aggregate of ``round_idx`` was already decrypted (or attempted)."""
        return int(round_idx) in self._decrypted_rounds

    def _flood(self, size: int, std: float) -> np.ndarray:
        """``size`` i.i.d. N(0, std^2) draws: from a fresh OS seed, or the caller's generator."""
        rng = self._rng if self._rng is not None else np.random.default_rng(secrets.randbits(128))
        return rng.normal(0.0, std, size)

    def decrypt_aggregate(
        self,
        payload: bytes,
        round_idx: int,
        n_summed: int,
        abs_bound: float | None = None,
        l2_bound: float | None = None,
    ) -> Decryption:
        """Decrypt the round's aggregate of ``n_summed`` device ciphertexts (plus the noise
        vector), flood it and return it as a float64 vector of ``spec.n_values``.

        The flooding std is :func:`~ppr.crypto.params.flooding_std` of ``n_summed`` (the
        aggregator's accepted count, which the key holder trusts: an honest-but-curious
        aggregator). Raises :class:`ProtocolError` on a second call for the same round, a
        malformed aggregate or a spent decryption budget; :class:`AggregateRejectedError` if the
        flooded result is non-finite, has a coordinate with ``|x| > abs_bound``, or has L2 norm
        ``> l2_bound`` (honest devices send norm <= C, so n of them sum to norm <= n C: one
        unclipped update far beyond that is caught, one inside it is not). The bounds must
        allow for the flooding (``precision_bound`` does).
        """
        round_idx = int(round_idx)
        n_summed = int(n_summed)
        if n_summed < 0:
            raise ProtocolError(f"`n_summed` must be non-negative. Found {n_summed}.")
        if round_idx in self._decrypted_rounds:
            raise ProtocolError(
                f"the key holder already decrypted the aggregate of round {round_idx}."
            )
        spec, p = self.spec, self.spec.params
        if self._decryptions + spec.n_chunks > p.max_decryptions:
            raise ProtocolError(
                f"round {round_idx}: the key has released {self._decryptions} of its "
                f"{p.max_decryptions} decryptions (the flooding's tau); rotate the keys."
            )
        self._decrypted_rounds.add(round_idx)
        try:
            frame_round, chunks = decode_frame(payload)
        except UpdateRejected as exc:
            raise ProtocolError(f"round {round_idx}: malformed aggregate ({exc}).") from exc
        if frame_round != round_idx or len(chunks) != spec.n_chunks:
            raise ProtocolError(
                f"round {round_idx}: aggregate is for round {frame_round} with {len(chunks)} "
                f"chunks, expected {spec.n_chunks}."
            )
        slots = p.slots
        values = []
        # Every chunk counts against the budget once it is decrypted, even if the round is then
        # refused: the refusal itself is computed from it.
        self._decryptions += len(chunks)
        for chunk in chunks:
            try:
                dec = np.asarray(ts.ckks_vector_from(self._ctx, chunk).decrypt(), dtype=np.float64)
            except Exception as exc:
                raise ProtocolError(
                    f"round {round_idx}: aggregate does not decrypt ({_short(exc)})."
                ) from exc
            if dec.shape != (slots,):
                raise ProtocolError(f"round {round_idx}: aggregate chunk has {dec.size} slots.")
            values.append(dec)
        std = flooding_std(p, n_summed)
        exact = unpack(values, spec.n_values)
        del values
        total = (exact + self._flood(spec.n_values, std)) * spec.value_bound
        del exact  # from here on only the flooded values exist
        vb = spec.value_bound
        report = FloodingReport(
            std=std * vb,
            floor=p.flooding_factor * ckks_error_bound(p, n_summed) * vb,
            ckks_error_bound=ckks_error_bound(p, n_summed) * vb,
            error_bound=precision_bound(p, n_summed) * vb,
            statistical_security=p.statistical_security,
            max_decryptions=p.max_decryptions,
            decryptions=self._decryptions,
            source=self.flooding_source,
        )
        if not np.all(np.isfinite(total)):
            logger.warning("round %d: key holder rejected a non-finite aggregate", round_idx)
            raise AggregateRejectedError(
                f"round {round_idx}: the decrypted aggregate is not finite."
            )
        if abs_bound is not None and float(np.max(np.abs(total))) > abs_bound:
            logger.warning("round %d: key holder rejected an out-of-bound aggregate", round_idx)
            raise AggregateRejectedError(
                f"round {round_idx}: the decrypted aggregate exceeds the bound {abs_bound:.6g} "
                "that the accepted cohort plus noise can reach (a ciphertext under another key, "
                "a well-formed ciphertext of garbage, or an unclipped update inside a valid "
                "ciphertext)."
            )
        if l2_bound is not None and float(np.linalg.norm(total)) > l2_bound:
            logger.warning(
                "round %d: key holder rejected an aggregate beyond the L2 bound", round_idx
            )
            raise AggregateRejectedError(
                f"round {round_idx}: the decrypted aggregate's L2 norm exceeds {l2_bound:.6g}, "
                "the most the accepted cohort of clipped updates plus noise can reach."
            )
        logger.info(
            "round %d: key holder released the aggregate flooded with std %.3g", round_idx, std * vb
        )
        return Decryption(total, report)


class DeviceEncryptor:
    """A device's encryption side: public context only; encrypts one update per round."""

    def __init__(self, public_context: bytes, spec: AggregationSpec) -> None:
        self.spec = spec
        self._ctx = load_public_context(public_context, "a device")

    def encrypt(self, update: np.ndarray, round_idx: int) -> bytes:
        """Check, scale by ``1 / value_bound``, pack, encrypt, serialize and frame ``update``.

        Raises :class:`UpdateRejected` if the update fails the honest-device checks.
        """
        x = check_update(update, self.spec)
        chunks = pack(x / self.spec.value_bound, self.spec.params.slots)
        cts = [ts.ckks_vector(self._ctx, row.tolist()).serialize() for row in chunks]
        return encode_frame(cts, round_idx)


class Aggregator:
    """Sums the ciphertexts of one round; never decrypts and never raises on client input.

    Per round: :meth:`start_round`, :meth:`receive` for each device payload (``None`` for a
    device that dropped out), :meth:`finish` (adds the noise, returns the framed aggregate).
    A device's chunks are all validated before any is added, so a rejected device leaves no
    trace in the sum.
    """

    def __init__(self, public_context: bytes, spec: AggregationSpec) -> None:
        self.spec = spec
        self.context = load_public_context(public_context, "the aggregator")
        p = spec.params
        ref = ts.ckks_vector(self.context, [0.0] * p.slots)
        ct = ref.ciphertext()[0]
        self._ref_parms_id = list(ct.parms_id())
        self._ref_moduli = ct.coeff_modulus_size()
        self._ref_scale = float(ct.scale)
        self._max_chunk_bytes = int(_MAX_CHUNK_FACTOR * len(ref.serialize())) + 4096
        self.round_idx: int | None = None
        self._acc: list[ts.CKKSVector] | None = None
        self.accepted: list[int] = []
        self.rejected: dict[int, str] = {}
        self.dropped: list[int] = []
        self._seen: set[int] = set()

    @property
    def n_accepted(self) -> int:
        return len(self.accepted)

    def start_round(self, round_idx: int) -> None:
        """Forget any previous round's state and accept payloads for ``round_idx``."""
        self.round_idx = int(round_idx)
        self._acc = None
        self.accepted, self.rejected, self.dropped = [], {}, []
        self._seen: set[int] = set()

    def receive(self, device_id: int, payload: bytes | list[bytes] | None) -> str | None:
        """Validate and add one device's payload. Returns ``None`` if accepted, else the reason."""
        if self.round_idx is None:
            raise ProtocolError("`start_round` must be called before `receive`.")
        device_id = int(device_id)
        if device_id in self._seen:
            reason = "duplicate payload from a device in the same round"
            logger.warning("round %d: rejected device %d: %s", self.round_idx, device_id, reason)
            return reason
        self._seen.add(device_id)
        if payload is None:
            self.dropped.append(device_id)
            logger.info("round %d: device %d dropped out", self.round_idx, device_id)
            return None
        try:
            vectors = self._validate(payload)
        except UpdateRejected as exc:
            reason = str(exc)
        except Exception as exc:  # never crash on client input
            reason = f"unexpected error while validating ({_short(exc)})"
        else:
            self._add(vectors)
            self.accepted.append(device_id)
            return None
        self.rejected[device_id] = reason
        logger.warning("round %d: rejected device %d: %s", self.round_idx, device_id, reason)
        return reason

    def _validate(self, payload: bytes | list[bytes]) -> list[ts.CKKSVector]:
        if isinstance(payload, list | tuple):
            chunks = list(payload)
        else:
            frame_round, chunks = decode_frame(payload)
            if frame_round != self.round_idx:
                raise UpdateRejected(f"frame is for round {frame_round}, not {self.round_idx}")
        if len(chunks) != self.spec.n_chunks:
            raise UpdateRejected(f"{len(chunks)} chunks, expected {self.spec.n_chunks}")
        return [self._load_chunk(i, c) for i, c in enumerate(chunks)]

    def _load_chunk(self, i: int, raw: object) -> ts.CKKSVector:
        p = self.spec.params
        if not isinstance(raw, bytes | bytearray):
            raise UpdateRejected(f"chunk {i} is {type(raw).__name__}, not bytes")
        if len(raw) > self._max_chunk_bytes:
            raise UpdateRejected(f"chunk {i} has {len(raw)} bytes (limit {self._max_chunk_bytes})")
        try:
            vec = ts.ckks_vector_from(self.context, bytes(raw))
            cts = vec.ciphertext()
        except Exception as exc:
            raise UpdateRejected(
                f"chunk {i} is not a ciphertext under the round's parameters ({_short(exc)})"
            ) from exc
        if len(cts) != 1 or vec.size() != p.slots:
            raise UpdateRejected(f"chunk {i} holds {vec.size()} values in {len(cts)} ciphertexts")
        ct = cts[0]
        if (
            ct.poly_modulus_degree() != p.poly_modulus_degree
            or ct.coeff_modulus_size() != self._ref_moduli
            or list(ct.parms_id()) != self._ref_parms_id
        ):
            raise UpdateRejected(f"chunk {i} was encrypted under other CKKS parameters")
        if ct.size() != 2 or not ct.is_ntt_form():
            raise UpdateRejected(f"chunk {i} is not a fresh ciphertext (size {ct.size()})")
        if ct.is_transparent():
            raise UpdateRejected(f"chunk {i} is transparent (not encrypted)")
        if not math.isclose(float(ct.scale), self._ref_scale, rel_tol=1e-9):
            raise UpdateRejected(f"chunk {i} has scale 2^{math.log2(max(ct.scale, 1e-300)):.2f}")
        return vec

    def _add(self, vectors: list[ts.CKKSVector]) -> None:
        if self._acc is None:
            self._acc = vectors
            return
        for acc, vec in zip(self._acc, vectors, strict=True):
            acc += vec  # in place; never .copy() (it re-serializes the context)

    def finish(self, noise: np.ndarray | None = None) -> bytes:
        """Add ``noise`` (plaintext, same length as an update) to the encrypted sum and return
        the framed aggregate for the key holder. With no accepted device the sum is an
        encryption of zeros. Raises :class:`ProtocolError` if the sum could overflow."""
        if self.round_idx is None:
            raise ProtocolError("`start_round` must be called before `finish`.")
        spec, p = self.spec, self.spec.params
        peak = 0.0
        scaled = None
        if noise is not None:
            scaled = np.asarray(noise, dtype=np.float64).reshape(-1) / spec.value_bound
            if scaled.shape != (spec.n_values,) or not np.all(np.isfinite(scaled)):
                raise ProtocolError(f"`noise` must be a finite vector of length {spec.n_values}.")
            peak = float(np.max(np.abs(scaled)))
        if self.n_accepted + peak >= p.capacity:
            raise ProtocolError(
                f"{self.n_accepted} updates plus noise of magnitude {peak:.3g} (in value bounds) "
                f"could overflow the CKKS capacity {p.capacity:g}."
            )
        acc = self._acc
        if acc is None:
            acc = [ts.ckks_vector(self.context, [0.0] * p.slots) for _ in range(spec.n_chunks)]
        if scaled is not None:
            for vec, row in zip(acc, pack(scaled, p.slots), strict=True):
                vec += row.tolist()
        out = encode_frame([vec.serialize() for vec in acc], self.round_idx)
        self._acc = None
        return out

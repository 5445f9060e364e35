"""CKKS secure aggregation (TenSEAL) with separate key holder, aggregator and device roles.

* :mod:`ppr.crypto.params`: parameter choice, 128-bit security, noise flooding, precision and
  overflow bounds (default N=4096, primes (60, 29, 20), scale 2^72, flooding at 30 bits of
  statistical security for 2^20 decryptions: ~12.9x the float32 upload, flooding std 6.8e-9 * C
  at 1,000 devices, released error <= 2.3e-7 * C at 10,000 devices, capacity 16,384 value
  bounds).
* :mod:`ppr.crypto.roles`: :class:`KeyHolder` (which releases only flooded decryptions),
  :class:`Aggregator`, :class:`DeviceEncryptor`, and what each can detect.
* :mod:`ppr.crypto.channel`: the byte-counting :class:`Channel`.
* :mod:`ppr.crypto.pool`: device encryption over worker processes.
* :mod:`ppr.crypto.aggregation`: whole rounds, :class:`CkksSecureAggregation` and its plaintext
  twin :class:`PlaintextAggregation`.

Rejections and dropouts are logged on the ``"ppr.crypto"`` logger; key material never is.
"""

from ppr.crypto.aggregation import AggregationResult, CkksSecureAggregation, PlaintextAggregation
from ppr.crypto.channel import Channel
from ppr.crypto.errors import AggregateRejectedError, ProtocolError, UpdateRejected
from ppr.crypto.packing import decode_frame, encode_frame, pack, unpack
from ppr.crypto.params import (
    CkksParams,
    ckks_error_bound,
    default_params,
    flooding_std,
    fresh_noise_sigma,
    precision_bound,
)
from ppr.crypto.pool import EncryptionPool
from ppr.crypto.roles import Aggregator, Decryption, DeviceEncryptor, FloodingReport, KeyHolder
from ppr.crypto.spec import AggregationSpec

__all__ = [
    "AggregateRejectedError",
    "AggregationResult",
    "AggregationSpec",
    "Aggregator",
    "Channel",
    "CkksParams",
    "CkksSecureAggregation",
    "Decryption",
    "DeviceEncryptor",
    "EncryptionPool",
    "FloodingReport",
    "KeyHolder",
    "PlaintextAggregation",
    "ProtocolError",
    "UpdateRejected",
    "ckks_error_bound",
    "decode_frame",
    "default_params",
    "encode_frame",
    "flooding_std",
    "fresh_noise_sigma",
    "pack",
    "precision_bound",
    "unpack",
]

"""CKKS secure aggregation (TenSEAL) with separate key holder, aggregator and device roles.

* :mod:`ppr.crypto.params`: parameter choice, 128-bit security, precision and overflow bounds
  (default N=4096, primes (56, 53), scale 2^40: ~7.6x the float32 upload, error <= 7.9e-7 * C
  at 10,000 devices, capacity 16,384 value bounds).
* :mod:`ppr.crypto.roles`: :class:`KeyHolder`, :class:`Aggregator`, :class:`DeviceEncryptor`
  and what each can detect.
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
from ppr.crypto.params import CkksParams, default_params, fresh_noise_sigma, precision_bound
from ppr.crypto.pool import EncryptionPool
from ppr.crypto.roles import Aggregator, DeviceEncryptor, KeyHolder
from ppr.crypto.spec import AggregationSpec

__all__ = [
    "AggregateRejectedError",
    "AggregationResult",
    "AggregationSpec",
    "Aggregator",
    "Channel",
    "CkksParams",
    "CkksSecureAggregation",
    "DeviceEncryptor",
    "EncryptionPool",
    "KeyHolder",
    "PlaintextAggregation",
    "ProtocolError",
    "UpdateRejected",
    "decode_frame",
    "default_params",
    "encode_frame",
    "fresh_noise_sigma",
    "pack",
    "precision_bound",
    "unpack",
]

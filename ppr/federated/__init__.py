"""Federated training: the device, the fleet, round sampling, summation strategies, the server and
the trainer.

Roles are separate objects (as in Flower): :class:`~ppr.federated.device.Device` is the contract
and reference of one device (it builds its whole message: solve, clip, noise share, encode,
encrypt), configured each round by :class:`~ppr.federated.device.RoundInstructions`;
:class:`~ppr.federated.fleet.DeviceFleet` is its vectorized implementation for a whole round; a
:class:`~ppr.federated.summation.SumStrategy` forms the round's sum (plaintext or CKKS) and DP
noise *wraps* it (:class:`~ppr.federated.summation.CentralNoise`,
:class:`~ppr.federated.summation.DistributedNoise`); :class:`~ppr.federated.server.Server`
applies the optax server optimizer; :class:`~ppr.federated.trainer.FederatedTrainer` runs the
rounds and charges a :class:`~ppr.federated.trainer.RoundAccounting` as they are released.
"""

from ppr.federated.device import (
    Device,
    DeviceMessage,
    DeviceSettings,
    Float32Codec,
    RoundInstructions,
)
from ppr.federated.fleet import DeviceFleet, DeviceRound, apply_dropout, sample_participants
from ppr.federated.server import Server, ServerState, make_server_optimizer
from ppr.federated.summation import (
    CentralNoise,
    DdgSum,
    DistributedNoise,
    EncodedSum,
    RoundSum,
    StructuredSum,
    SumStrategy,
)
from ppr.federated.trainer import FederatedTrainer, RoundAccounting, RoundLog

__all__ = [
    "CentralNoise",
    "DdgSum",
    "Device",
    "DeviceFleet",
    "DeviceMessage",
    "DeviceRound",
    "DeviceSettings",
    "DistributedNoise",
    "EncodedSum",
    "FederatedTrainer",
    "Float32Codec",
    "RoundAccounting",
    "RoundInstructions",
    "RoundLog",
    "RoundSum",
    "Server",
    "ServerState",
    "StructuredSum",
    "SumStrategy",
    "apply_dropout",
    "make_server_optimizer",
    "sample_participants",
]

"""Federated training: devices, cohort sampling, aggregation strategies, the server and the trainer.

Roles are separate objects (as in Flower): :class:`~ppr.federated.devices.DeviceFleet` holds each
device's own items and computes its update; an :class:`~ppr.federated.aggregators.CohortAggregator`
forms the cohort sum (plaintext or CKKS) and DP noise *wraps* it
(:class:`~ppr.federated.aggregators.CentralNoise`,
:class:`~ppr.federated.aggregators.DistributedNoise`);
:class:`~ppr.federated.server.Server` applies the optax server optimizer;
:class:`~ppr.federated.trainer.FederatedTrainer` runs the rounds.
"""

from ppr.federated.aggregators import (
    CentralNoise,
    CohortAggregator,
    DenseAggregator,
    DistributedNoise,
    RoundAggregate,
    StructuredAggregator,
)
from ppr.federated.devices import DeviceFleet, DeviceRound, apply_dropout, sample_cohort
from ppr.federated.server import Server, ServerState, make_server_optimizer
from ppr.federated.trainer import FederatedTrainer, RoundLog

__all__ = [
    "CentralNoise",
    "CohortAggregator",
    "DenseAggregator",
    "DeviceFleet",
    "DeviceRound",
    "DistributedNoise",
    "FederatedTrainer",
    "RoundAggregate",
    "RoundLog",
    "Server",
    "ServerState",
    "StructuredAggregator",
    "apply_dropout",
    "make_server_optimizer",
    "sample_cohort",
]

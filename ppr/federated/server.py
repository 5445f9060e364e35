"""The server: turns the round's aggregate into an item-matrix step with an optax optimizer.

The averaged update ``Delta = total / denominator`` is a descent *direction* of the devices' loss;
the server feeds ``-Delta + item_reg * Q`` to optax as a pseudo-gradient (FedOpt, Reddi et al.
2021): ``sgd`` = FedAvg (``server_lr = 1`` is plain averaging), ``momentum`` = FedAvgM, ``adam`` =
FedAdam. Under DP the denominator is the *fixed* expected cohort size ``q N`` (DP-FedAvg), so that
the noise scale of the average does not depend on who was sampled; without DP it is the number of
accepted devices.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ppr.config import FederatedConfig


def make_server_optimizer(cfg: FederatedConfig) -> optax.GradientTransformation:
    """optax transformation of ``federated.server_optimizer`` with ``server_lr`` and momentum."""
    if cfg.server_optimizer == "sgd":
        return optax.sgd(cfg.server_lr)
    if cfg.server_optimizer == "momentum":
        return optax.sgd(cfg.server_lr, momentum=cfg.server_momentum)
    return optax.adam(cfg.server_lr, b1=cfg.server_momentum, b2=0.99, eps=1e-6)


class ServerState(NamedTuple):
    q: jax.Array
    opt_state: optax.OptState


class Server:
    """Holds the global item matrix and the server optimizer state."""

    def __init__(self, tx: optax.GradientTransformation, item_reg: float = 0.0) -> None:
        self.tx = tx
        self.item_reg = float(item_reg)
        self._step = jax.jit(self._apply)

    def init(self, q: jax.Array) -> ServerState:
        return ServerState(q, self.tx.init(q))

    def _apply(self, state: ServerState, mean_update: jax.Array) -> ServerState:
        grad = -mean_update + self.item_reg * state.q
        updates, opt_state = self.tx.update(grad, state.opt_state, state.q)
        return ServerState(optax.apply_updates(state.q, updates), opt_state)

    def step(self, state: ServerState, total: jax.Array, denominator: float) -> ServerState:
        """Apply the averaged update ``total / denominator``."""
        mean = jnp.asarray(total, jnp.float32) / jnp.float32(max(denominator, 1e-12))
        return self._step(state, mean)

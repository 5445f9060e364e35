"""The server: turns the round's released sum into an item-matrix step with an optax optimizer.

The averaged update ``Delta = total / denominator`` is a descent *direction* of the devices' loss;
the server feeds ``-Delta`` to an optax chain as a pseudo-gradient (FedOpt, Reddi et al. 2021):
``add_decayed_weights(item_reg)`` (an L2 penalty on the item matrix), then ``sgd`` = FedAvg
(``server_lr = 1`` is plain averaging), ``momentum`` = FedAvgM or ``adam`` = FedAdam. Under DP the
denominator is the *fixed* expected number of participants ``q N`` (DP-FedAvg), so that the noise
scale of the average does not depend on who was sampled; without DP it is the number of accepted
devices. The server state is a flax struct dataclass (a pytree: checkpointed leaf by leaf).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ppr.config import FederatedConfig


def make_server_optimizer(
    cfg: FederatedConfig, item_reg: float = 0.0
) -> optax.GradientTransformation:
    """``chain(add_decayed_weights(item_reg), <federated.server_optimizer>)``."""
    if cfg.server_optimizer == "sgd":
        step = optax.sgd(cfg.server_lr)
    elif cfg.server_optimizer == "momentum":
        step = optax.sgd(cfg.server_lr, momentum=cfg.server_momentum)
    else:
        step = optax.adam(cfg.server_lr, b1=cfg.server_momentum, b2=0.99, eps=1e-6)
    return optax.chain(optax.add_decayed_weights(float(item_reg)), step)


@struct.dataclass
class ServerState:
    """The global item matrix ``q`` (n_items, dim) and the optimizer state."""

    q: jax.Array
    opt_state: optax.OptState


class Server:
    """Holds the optax transformation; :meth:`step` is pure (state in, state out)."""

    def __init__(self, tx: optax.GradientTransformation) -> None:
        self.tx = tx
        self._step = jax.jit(self._apply)

    def init(self, q: jax.Array) -> ServerState:
        return ServerState(q, self.tx.init(q))

    def _apply(self, state: ServerState, mean_update: jax.Array) -> ServerState:
        updates, opt_state = self.tx.update(-mean_update, state.opt_state, state.q)
        return ServerState(optax.apply_updates(state.q, updates), opt_state)

    def step(self, state: ServerState, total: jax.Array, denominator: float) -> ServerState:
        """Apply the averaged update ``total / denominator``."""
        mean = jnp.asarray(total, jnp.float32) / jnp.float32(max(denominator, 1e-12))
        return self._step(state, mean)

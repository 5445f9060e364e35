"""Factories of the composition root: each builds one role of a run from its config.

``check_run`` (cross-key checks that need other layers, before any data loads) -> ``prepare_data``
-> ``build_fleet`` -> ``plan_privacy`` -> ``run_keys`` -> ``build_summation`` -> ``build_trainer``.
The simulation (:mod:`ppr.experiments.simulate`) and the benchmarks build runs only through these.

Keys: ``RunKeys.public`` (``PRNGKey(seed)``, written in the config) drives what is not secret:
the initial item matrix (``fold_in(public, 1)``) and the centralized baseline
(``fold_in(public, 4)``). ``RunKeys.secret`` drives the DP noise and the private sampling
(``fold_in(secret, 2)``: the rounds; ``fold_in(secret, 3)``: the popularity counts): from the OS,
never written, unless ``privacy.noise_seed >= 0`` (reproducible noise, an experiment mode that
every output labels). A non-private run needs no secret: its rounds use ``PRNGKey(seed)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax

from ppr.config import Config
from ppr.crypto import CkksSecureAggregation
from ppr.crypto.params import default_params
from ppr.data.loaders import load_interactions
from ppr.data.split import Split, UserItems, make_split
from ppr.errors import ConfigError, PprError
from ppr.execution import (
    DEFAULT_STALL_TIMEOUT_S,
    Executor,
    batch_size,
    make_executor,
    n_workers,
)
from ppr.experiments.controls import UserControls
from ppr.federated import (
    CentralNoise,
    DdgSum,
    DeviceFleet,
    DistributedNoise,
    EncodedSum,
    FederatedTrainer,
    RoundAccounting,
    Server,
    ServerState,
    StructuredSum,
    SumStrategy,
    make_server_optimizer,
)
from ppr.federated.quantize import padded_dim
from ppr.federated.tiers import (
    CostModel,
    TierSchedule,
    availability,
    message_bytes,
    schedule_from_config,
)
from ppr.model.mf import MFHyper, init_item_factors
from ppr.privacy import PrivacyPlan, min_cohort_size
from ppr.privacy.ddg import DdgParams, ddg_params, plan_ddg
from ppr.privacy.noise import NOISE_SHARE_RANGE
from ppr.privacy.randomness import secret_key

__all__ = [
    "RunKeys",
    "build_fleet",
    "build_summation",
    "build_tiers",
    "build_trainer",
    "check_run",
    "ddg_params_of",
    "hyper_of",
    "plan_upload",
    "prepare_data",
    "run_keys",
    "secure_aggregation",
]


class RunKeys(NamedTuple):
    """``public``: from ``seed``; ``secret``: noise and private sampling; ``label``: what every
    output says about the secret (``secret (OS)``, ``seeded (...)`` or ``none (non-private)``)."""

    public: jax.Array
    secret: jax.Array
    label: str


def run_keys(cfg: Config, private: bool) -> RunKeys:
    public = jax.random.PRNGKey(cfg.seed)
    seed = cfg.privacy.noise_seed
    if seed >= 0:
        label = (
            f"seeded (privacy.noise_seed = {seed}): reproducible noise; the guarantee holds "
            "only against whoever does not know that seed"
        )
        return RunKeys(public, jax.random.PRNGKey(seed), label)
    if not private:
        return RunKeys(public, public, "none (non-private run: rounds drawn from the seed)")
    return RunKeys(public, secret_key(), "secret (OS entropy, never written)")


def hyper_of(cfg: Config) -> MFHyper:
    m = cfg.model
    return MFHyper(m.alpha, m.reg, m.local_steps, m.local_lr)


def check_run(cfg: Config) -> None:
    """Cross-key checks that need other layers, before any data loads (raises ConfigError)."""
    cfg.check()
    if cfg.aggregation.mode == "ckks":
        try:
            default_params(cfg.aggregation.poly_modulus_degree)
        except (ValueError, PprError) as exc:
            raise ConfigError(f"`aggregation.poly_modulus_degree`: {exc}") from None


def prepare_data(cfg: Config) -> Split:
    """Load the configured data set and split it (deterministic for ``cfg.seed``)."""
    split = make_split(load_interactions(cfg.data, cfg.seed), cfg.split, cfg.seed)
    if cfg.evaluation.k > split.n_items:
        raise ConfigError(
            f"`evaluation.k` must be at most the number of items ({split.n_items}). "
            f"Found {cfg.evaluation.k}."
        )
    return split


def build_fleet(cfg: Config, split: Split, train: UserItems) -> DeviceFleet:
    opted_out = UserControls.from_config(cfg, train.n_users).opted_out  # never eligible
    fleet = DeviceFleet(train, split.train_users, hyper_of(cfg), opted_out=opted_out)
    if fleet.n_devices == 0:
        raise ConfigError("no training device holds a training item: nothing to train on.")
    if cfg.aggregation.mode == "ckks":  # a round's sum must stay inside the CKKS capacity
        cap = default_params(cfg.aggregation.poly_modulus_degree).capacity
        fed = cfg.federated
        n = (
            fleet.n_devices * fed.sampling_rate
            if fed.sampling == "poisson"
            else min(fleet.n_devices, fed.participants)
        )
        if n + 8.0 * math.sqrt(max(n, 1.0)) >= cap:  # Poisson: 8 standard deviations above q N
            raise ConfigError(
                f"`federated.sampling_rate`: about {n:.0f} devices per round could overflow the "
                f"CKKS capacity of {cap:g} summed updates; sample fewer devices per round."
            )
    return fleet


def noise_floor(cfg: Config, plan: PrivacyPlan, n_devices: int) -> int:
    """``n_min`` of distributed noise (1 otherwise): see :func:`ppr.privacy.min_cohort_size`."""
    if plan.noise_multiplier > 0 and cfg.privacy.noise == "distributed":
        rate = cfg.federated.sampling_rate * (1.0 - cfg.federated.dropout_rate)
        rate *= availability(cfg.tiers)  # device tiers: P(a sampled device is not away)
        return min_cohort_size(n_devices, rate)
    return 1


def secure_aggregation(
    cfg: Config, plan: PrivacyPlan, n_items: int, n_devices: int
) -> CkksSecureAggregation:
    """The CKKS aggregation of ``cfg``, bounded by what an honest device may send: ``|x_i| <=
    bound`` per coordinate and ``||x|| <= l2`` (the clip norm, plus the noise share's range under
    distributed noise)."""
    dim, priv = cfg.model.dim, cfg.privacy
    bound = l2 = priv.clip_norm
    if plan.noise_multiplier > 0 and priv.noise == "distributed":
        # a N(0, s^2) share: |z_i| < 8 s and ||z|| < s (sqrt(d) + 8), each w.p. > 1 - 1e-14
        share = (
            plan.noise_multiplier * priv.clip_norm / math.sqrt(noise_floor(cfg, plan, n_devices))
        )
        bound = priv.clip_norm + NOISE_SHARE_RANGE * share
        l2 = priv.clip_norm + share * (math.sqrt(n_items * dim) + NOISE_SHARE_RANGE)
    return CkksSecureAggregation(
        n_items * dim,
        params=default_params(cfg.aggregation.poly_modulus_degree),
        workers=cfg.aggregation.workers,
        value_bound=bound,
        l2_clip=l2,
        executor=encryption_executor(cfg),
        batch=batch_size(cfg.execution),
    )


def encryption_executor(cfg: Config) -> Executor:
    """Where devices encrypt (``[execution]``; ``aggregation.workers`` unless
    ``execution.workers`` is set); a worker holding one batch for 300 s is replaced."""
    workers = n_workers(cfg.execution, cfg.aggregation.workers)
    return make_executor(cfg.execution, workers, stall_timeout_s=DEFAULT_STALL_TIMEOUT_S)


def ddg_params_of(
    cfg: Config, plan: PrivacyPlan, n_items: int, n_devices: int
) -> Callable[[float], DdgParams]:
    """``σ -> DdgParams`` of ``cfg``'s compressed uploads: the cohort cap ``n_cap`` (Poisson:
    ``qN + 8 sqrt(qN)``, at most N; fixed: the participants) and ``n_min`` are data-independent."""
    fed, agg = cfg.federated, cfg.aggregation
    if fed.sampling == "poisson":
        mean = n_devices * fed.sampling_rate
        n_cap = min(n_devices, math.ceil(mean + 8.0 * math.sqrt(mean)))
    else:
        n_cap = min(n_devices, fed.participants)
    n_min = noise_floor(cfg, plan, n_devices) if plan.noise_multiplier > 0 else 1
    dim = padded_dim(n_items * cfg.model.dim)
    clip = cfg.privacy.clip_norm

    def params_of(sigma: float) -> DdgParams:
        return ddg_params(clip, dim, agg.bits, n_cap, n_min, sigma, agg.ddg_granularity)

    return params_of


def plan_upload(cfg: Config, plan: PrivacyPlan, n_items: int, n_devices: int) -> PrivacyPlan:
    """``plan`` recalibrated for the configured upload: unchanged for float uploads; for ddg,
    the discrete Gaussian rounds composed in RDP (:func:`ppr.privacy.ddg.plan_ddg`)."""
    if cfg.aggregation.upload != "ddg":
        return plan
    return plan_ddg(plan, ddg_params_of(cfg, plan, n_items, n_devices))[0]


def build_summation(cfg: Config, plan: PrivacyPlan, n_items: int, n_devices: int) -> SumStrategy:
    """The round-sum strategy of ``cfg`` (plaintext structured or CKKS), wrapped by DP noise."""
    dim, priv = cfg.model.dim, cfg.privacy
    if cfg.aggregation.upload == "ddg":  # integer noise is part of the upload: no wrapper
        params = ddg_params_of(cfg, plan, n_items, n_devices)(plan.noise_multiplier)
        encrypted = cfg.aggregation.mode == "bfv"
        return DdgSum(params, n_items, dim, rotation_seed=cfg.seed, encrypted=encrypted)
    if cfg.aggregation.mode == "ckks":
        base = EncodedSum(secure_aggregation(cfg, plan, n_items, n_devices), n_items, dim)
    else:
        base = StructuredSum(n_items, dim)
    if plan.noise_multiplier == 0:
        return base
    if priv.noise == "central":
        return CentralNoise(base, plan.noise_multiplier, priv.clip_norm)
    n_min = noise_floor(cfg, plan, n_devices)
    return DistributedNoise(base, plan.noise_multiplier, priv.clip_norm, n_min)


def build_tiers(cfg: Config, fleet: DeviceFleet, summation: SumStrategy) -> TierSchedule | None:
    """The device-tier schedule of ``cfg.tiers`` (``None`` when off): tiers from the public seed,
    budgets from public sizes and the real upload size of the run's mode (see
    :mod:`ppr.federated.tiers`)."""
    if not cfg.tiers.enabled:
        return None
    try:
        cost = CostModel(fleet.n_items, cfg.model.dim, message_bytes(summation))
    except ValueError as exc:
        raise ConfigError(f"`tiers.enabled`: {exc}") from None
    return schedule_from_config(cfg.tiers, cfg.seed, fleet.n_users, cost, cfg.model.local_steps)


def build_trainer(
    cfg: Config,
    fleet: DeviceFleet,
    summation: SumStrategy,
    keys: RunKeys,
    accounting: RoundAccounting | None,
    private: bool,
) -> tuple[FederatedTrainer, ServerState]:
    """The trainer of ``cfg`` and its initial server state (item matrix from
    ``fold_in(keys.public, 1)``). Under DP the average uses the fixed denominator ``q N``."""
    fed = cfg.federated
    server = Server(make_server_optimizer(fed, cfg.model.item_reg))
    q0 = init_item_factors(
        jax.random.fold_in(keys.public, 1), fleet.n_items, cfg.model.dim, cfg.model.init_scale
    )
    trainer = FederatedTrainer(
        fleet,
        summation,
        server,
        sampling=fed.sampling,
        sampling_rate=fed.sampling_rate,
        participants=fed.participants,
        dropout_rate=fed.dropout_rate,
        clip_norm=cfg.privacy.clip_norm,
        fixed_denominator=fed.sampling_rate * fleet.n_devices if private else None,
        accounting=accounting,
        tiers=build_tiers(cfg, fleet, summation),
    )
    return trainer, server.init(q0)

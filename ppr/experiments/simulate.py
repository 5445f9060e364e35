"""``ppr simulate``: one run, as the list of its stages (the composition root's entry point).

``data -> fleet -> privacy plan -> training -> release -> evaluation -> report`` (:func:`simulate`).
Roles are built by :mod:`ppr.experiments.factories`; the run directory, its checkpoints and the
release boundary by :mod:`ppr.experiments.session`; the live ledger by
:mod:`ppr.experiments.accounting`. The run is a pure function of the config and its seed for
everything that is not secret; DP noise and private sampling draw from the OS unless
``privacy.noise_seed`` asks for reproducible noise (:class:`~ppr.experiments.factories.RunKeys`).

Files of a finished run directory: ``config.toml``, ``ledger.json`` (what really ran, with
the accountant's ε), ``model.msgpack`` (the released model), ``summary.json``, and, unless
``output.protected_only``, the diagnostics ``metrics.jsonl`` and ``devices.json`` (the trusted
side's per-device spend: eligible rounds per device, never which rounds sampled it) and
``device_log.json`` (device-local: what each device itself sent, :mod:`ppr.experiments.controls`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from ppr.config import Config, load_config
from ppr.data.split import Split, UserItems
from ppr.errors import ConfigError
from ppr.evaluation.metrics import RankingMetrics, evaluate_scores
from ppr.experiments.accounting import LiveLedger
from ppr.experiments.coldstart import release_cohort_stage
from ppr.experiments.controls import RunControls, popularity_event
from ppr.experiments.factories import (
    RunKeys,
    build_fleet,
    build_summation,
    build_trainer,
    check_run,
    hyper_of,
    plan_upload,
    prepare_data,
    run_keys,
)
from ppr.experiments.popularity import KIND_COHORT, secure_item_counts, secure_summation
from ppr.experiments.report import build_summary
from ppr.experiments.serving import full_server_recommender, rank_metrics
from ppr.experiments.session import RunSession
from ppr.experiments.summary import RunSummary
from ppr.federated import DeviceFleet, RoundLog, ServerState
from ppr.federated.tiers import assign_tiers, tier_report
from ppr.model.baselines import centralized_als, popularity_scores
from ppr.model.mf import MFHyper
from ppr.model.release import ReleasedModel
from ppr.privacy import PrivacyPlan, plan_privacy, private_item_counts
from ppr.privacy.cohorts import CohortRelease, Summation, plain_sum
from ppr.privacy.ledger import PrivacyLedger
from ppr.privacy.popularity import CsrItems

Progress = Callable[[int, int, dict], None]


class RunData(NamedTuple):
    """The split, and the (train, target) pair of the run's evaluation split."""

    split: Split
    train: UserItems
    target: UserItems


@dataclass
class SimulationResult:
    """Everything a run produced: the typed summary, the released model, the rounds as they ran,
    the ledger of what was released, and the run directory (``None`` without ``write``)."""

    summary: RunSummary
    model: ReleasedModel
    rounds: list[RoundLog] = field(default_factory=list)
    ledger: PrivacyLedger = field(default_factory=PrivacyLedger)
    run_dir: Path | None = None
    cohorts: CohortRelease | None = None  # the cold-start release (`cold_start.enabled`)

    @property
    def q(self) -> np.ndarray:
        return self.model.item_factors


def simulate(
    cfg: Config,
    run_dir: str | Path | None = None,
    progress: Progress | None = None,
    *,
    write: bool = True,
    split: Split | None = None,
    resume: str | Path | None = None,
    init_q: np.ndarray | None = None,
) -> SimulationResult:
    """Run the configured experiment end to end; with ``write``, save its run directory.

    ``split``: a prepared :func:`prepare_data` result of the same config; ``resume``: an
    interrupted run's partial directory (use :func:`resume`, which also reads its config);
    ``init_q``: start from this item matrix instead of the seeded one (a periodic retrain).
    """
    check_run(cfg)
    t0 = time.perf_counter()
    data = _data(cfg, split)  # 1. data
    data_s = time.perf_counter() - t0
    fleet = build_fleet(cfg, data.split, data.train)  # 2. fleet
    plan = _plan(cfg, fleet)  # 3. privacy plan
    keys = run_keys(cfg, plan.noise_multiplier > 0)
    with RunSession.open(cfg, run_dir, write, resume) as session:
        ledger = LiveLedger.restore(plan, fleet.members, session.extra.get("accounting"))
        controls = RunControls(cfg, data.train.n_users, fleet, ledger, session.extra)
        prior = _release_prior(cfg, plan, data, controls, keys, ledger, session)
        t1 = time.perf_counter()
        state, logs, channel = _train(
            cfg, plan, data, controls, keys, ledger, prior, session, progress, init_q
        )
        train_s = time.perf_counter() - t1  # 4. training
        cohorts = release_cohort_stage(  # cold start: DP cohort statistics (when enabled)
            cfg, plan, data, fleet, keys, ledger, session, state.q, controls.before_release,
            _count_summation(cfg, controls, KIND_COHORT),
        )  # fmt: skip
        model = _release_model(cfg, data.split, state, ledger, keys, prior)  # 5. release
        t2 = time.perf_counter()
        metrics, baselines = _evaluate(cfg, data, fleet, model, prior, keys)  # 6. evaluation
        timing = (data_s, train_s, time.perf_counter() - t2, time.perf_counter() - t0)
        summary = build_summary(  # 7. report
            cfg,
            data,
            fleet.n_devices,
            ledger,
            keys,
            logs,
            model.version,
            (metrics, baselines),
            timing,
            session.final_dir,
            channel,
            tiers=_tier_report(cfg, data, model, prior, logs),
        )
        final = session.finish(summary, model, ledger, logs, controls.device_files(logs))
    return SimulationResult(summary, model, logs, ledger.ledger, final, cohorts)


def resume(partial: str | Path, progress: Progress | None = None) -> SimulationResult:
    """Continue an interrupted run from its partial directory (its ``config.toml``, which must
    be the config its checkpoint was written under, and its last checkpoint)."""
    cfg_file = Path(partial) / "config.toml"
    if not cfg_file.is_file():
        raise ConfigError(f"{partial}: not an interrupted run (no config.toml).")
    return simulate(load_config(cfg_file), progress=progress, resume=partial)


def _data(cfg: Config, split: Split | None) -> RunData:
    split = split if split is not None else prepare_data(cfg)
    train, target = split.for_evaluation(cfg.evaluation.split)
    return RunData(split, train, target)


def _plan(cfg: Config, fleet: DeviceFleet) -> PrivacyPlan:
    fed, priv = cfg.federated, cfg.privacy
    use_prior = priv.popularity_blend > 0
    plan = plan_privacy(priv, fleet.n_devices, fed.sampling_rate, fed.rounds, use_prior)
    return plan_upload(cfg, plan, fleet.n_items, fleet.n_devices)


def prior_scores(counts: np.ndarray) -> np.ndarray:
    """Popularity prior from (noisy) counts: ``log1p(max(c, 0))`` scaled to max 1."""
    z = np.log1p(np.maximum(np.asarray(counts, np.float64), 0.0))
    top = float(z.max()) if z.size else 0.0
    return (z / top if top > 0 else z).astype(np.float32)


def _count_summation(cfg: Config, controls: RunControls, kind: str) -> Summation:
    """How a count release is summed: under CKKS in a CKKS run (no plaintext leaves a device),
    else by the server as trusted curator (as for the plaintext updates)."""
    if cfg.aggregation.mode == "ckks":
        return secure_summation(cfg, kind, controls.device_channel)
    return plain_sum


def _release_prior(
    cfg: Config,
    plan: PrivacyPlan,
    data: RunData,
    controls: RunControls,
    keys: RunKeys,
    ledger: LiveLedger,
    session: RunSession,
) -> np.ndarray | None:
    """The DP popularity prior (released once, charged to every eligible device: opted-out and
    capped-out devices contribute nothing; reused on resume)."""
    if cfg.privacy.popularity_blend <= 0:
        return None
    if "prior" in session.extra:  # released before the interruption: never release twice
        return np.asarray(session.extra["prior"], np.float32)
    eligible = controls.before_release(
        popularity_event(plan.popularity_noise_multiplier), "popularity"
    )
    u, i = data.train.to_pairs()
    keep = np.isin(u, eligible)
    sub = UserItems.from_pairs(
        u[keep].astype(np.int64), i[keep], data.train.n_users, data.train.n_items
    )
    key, sigma = jax.random.fold_in(keys.secret, 3), plan.popularity_noise_multiplier
    if cfg.aggregation.mode == "ckks":  # summed under encryption: no item id leaves a device
        counts, event, _ = secure_item_counts(cfg, key, sub, sigma, controls.device_channel)
    else:  # the server is the trusted curator, as for the plaintext updates
        m = cfg.privacy.popularity_max_items
        csr = CsrItems(sub.indptr, sub.indices)
        counts, event = private_item_counts(key, csr, data.train.n_items, m, sigma)
        controls.popularity_sent(sub.counts(), m)
    ledger.charge_once("popularity", event, eligible)
    prior = prior_scores(counts)
    session.extra["prior"] = prior.tolist()
    return prior


def _train(
    cfg: Config,
    plan: PrivacyPlan,
    data: RunData,
    controls: RunControls,
    keys: RunKeys,
    ledger: LiveLedger,
    prior: np.ndarray | None,
    session: RunSession,
    progress: Progress | None,
    init_q: np.ndarray | None = None,
) -> tuple[ServerState, list[RoundLog], tuple[dict | None, float]]:
    """Federated rounds; every round is logged, checkpointed and charged as it happens.
    Returns the final state, the rounds' logs and the channel's byte counts (CKKS)."""
    fleet = controls.fleet
    summation = build_summation(cfg, plan, data.train.n_items, fleet.n_devices)
    summation = controls.wrap(summation, cfg.aggregation.mode == "ckks")
    private = plan.noise_multiplier > 0
    trainer, state = build_trainer(cfg, fleet, summation, keys, ledger, private)
    if init_q is not None:  # warm start (periodic retraining): the previous version's items
        state = trainer.server.init(jax.numpy.asarray(init_q, jax.numpy.float32))
    state, start, done = session.restore(state)
    hyper, k, every = hyper_of(cfg), cfg.evaluation.k, cfg.evaluation.eval_every
    blend = cfg.privacy.popularity_blend

    def on_round(st: ServerState, log: RoundLog) -> None:
        rec = log.as_dict()
        if every and log.round % every == 0:  # a diagnostic curve on the evaluation split
            m = evaluate_mf(np.asarray(st.q), data.train, data.target, hyper, k, prior, blend)
            rec[cfg.evaluation.split] = _metrics(m)
        controls.after_round(log.round, cfg.federated.rounds)
        extra = {"accounting": ledger.state(), "controls": controls.state()}
        session.checkpoint(st, log.round, json.dumps(rec), extra)
        if progress is not None:
            progress(log.round, cfg.federated.rounds, rec)

    controls.before_round(start + 1)
    try:
        state, logs = trainer.fit(
            state, cfg.federated.rounds, jax.random.fold_in(keys.secret, 2), on_round, start=start
        )
    finally:
        summation.close()
    return state, done + logs, channel_totals(summation)


def _release_model(
    cfg: Config,
    split: Split,
    state: ServerState,
    ledger: LiveLedger,
    keys: RunKeys,
    prior: np.ndarray | None = None,
) -> ReleasedModel:
    """The model the run releases, with the ledger's guarantee attached (and the DP popularity
    prior with its blend weight, so that serving scores as the run's evaluation does)."""
    titles = split.item_titles
    ids = split.item_ids if split.item_ids is not None else np.arange(split.n_items)
    return ReleasedModel(
        item_factors=np.asarray(state.q, np.float32),
        item_ids=np.asarray(ids, np.int64),
        alpha=cfg.model.alpha,
        reg=cfg.model.reg,
        version=f"{cfg.name}@{ledger.rounds_released}",
        titles=tuple(str(t) for t in titles) if titles is not None else (),
        privacy={
            "epsilon": ledger.epsilon(),
            "delta": ledger.plan.delta,
            "accountant": ledger.plan.accountant,
            "noise": keys.label,
        },
        prior=None if prior is None else np.asarray(prior, np.float32),
        prior_blend=cfg.privacy.popularity_blend if prior is not None else 0.0,
    )


def _tier_report(
    cfg: Config, data: RunData, model: ReleasedModel, prior: np.ndarray | None, logs: list
) -> dict:
    """Device tiers' diagnostics (``{}`` when off): rounds, and recall by tier and by activity
    quartile, scored as the run's metrics (:func:`ppr.federated.tiers.tier_report`)."""
    if not cfg.tiers.enabled:
        return {}
    blend = cfg.privacy.popularity_blend
    bias = None if prior is None or blend == 0 else blend * prior
    tier_of = assign_tiers(data.train.n_users, list(cfg.tiers.shares), cfg.seed)
    q, hyper, k = model.item_factors, hyper_of(cfg), cfg.evaluation.k
    return tier_report(logs, cfg.tiers.names, tier_of, q, data.train, data.target, hyper, k, bias)


def _metrics(m: RankingMetrics) -> dict[str, float]:
    return {k: float(v) for k, v in m.as_dict().items()}


def evaluate_mf(
    q: np.ndarray,
    train: UserItems,
    target: UserItems,
    hyper: MFHyper,
    k: int,
    prior: np.ndarray | None = None,
    blend: float = 0.0,
) -> RankingMetrics:
    """Each device solves ``p_u`` from ``q`` and its own items and ranks ``p_u . q_i`` (plus
    ``blend * prior_i``); its training items are excluded. A diagnostic on raw held-out data.
    Scored through the serving recommender interface (full-server scoring, the same
    ``recommend`` as ``ppr evaluate --serving exact``)."""
    users = np.flatnonzero((target.counts() > 0) & (train.counts() > 0))
    bias = None if prior is None or blend == 0 else blend * np.asarray(prior, np.float32)
    rec = full_server_recommender(np.asarray(q, np.float32), hyper.alpha, hyper.reg, bias)
    return rank_metrics(rec, train, target, k, users)[0]


def _evaluate(
    cfg: Config,
    data: RunData,
    fleet: DeviceFleet,
    model: ReleasedModel,
    prior: np.ndarray | None,
    keys: RunKeys,
) -> tuple[dict, dict]:
    """Metrics of the released model and of the baselines (all diagnostics)."""
    hyper, k, train, target = hyper_of(cfg), cfg.evaluation.k, data.train, data.target
    blend = cfg.privacy.popularity_blend
    metrics = _metrics(evaluate_mf(model.item_factors, train, target, hyper, k, prior, blend))
    baselines: dict[str, dict] = {}

    def constant(scores: np.ndarray) -> dict:
        return _metrics(
            evaluate_scores(
                lambda b: np.broadcast_to(scores, (len(b), scores.size)), train, target, k
            )
        )

    if cfg.baselines.popularity:
        baselines["popularity"] = constant(popularity_scores(train, fleet.members))
    if prior is not None:
        baselines["private_popularity"] = constant(prior)
    if cfg.baselines.centralized:
        qc = centralized_als(
            jax.random.fold_in(keys.public, 4),
            train,
            fleet.members,
            cfg.model.dim,
            hyper,
            cfg.baselines.centralized_iterations,
            cfg.model.init_scale,
        )
        baselines["centralized"] = _metrics(evaluate_mf(qc, train, target, hyper, k))
    return metrics, baselines


def channel_totals(summation) -> tuple[dict | None, float]:
    """(bytes that crossed role boundaries by sender and kind, the key holder's flooding std)
    of a CKKS run's :class:`~ppr.crypto.Channel`; ``(None, 0)`` on the structured plaintext path,
    where the upload is computed (n_items x dim float32 per device) rather than sent."""
    while hasattr(summation, "inner"):
        summation = summation.inner
    secure = getattr(summation, "secure", None)
    if secure is None:
        return None, 0.0
    t = secure.channel.totals()
    flood = float(summation.flooding_std)
    return {k: t[k] for k in ("total_bytes", "messages", "by_sender", "by_kind")}, flood

"""One entry point per pipeline: :func:`run_simulation` (``ppr simulate``).

``data -> split -> devices -> federated MF (plaintext or CKKS, DP-wrapped when private) ->
evaluation -> reports``. The run is a pure function of the resolved config (same config and seed,
same numbers); every random choice derives from ``jax.random.PRNGKey(seed)`` with ``fold_in``:

* ``fold_in(key, 1)``: initial item matrix; ``fold_in(key, 2)``: the rounds (then per round);
* ``fold_in(key, 3)``: DP popularity counts; ``fold_in(key, 4)``: the centralized baseline.

Files of a run directory (written atomically, see :mod:`ppr.runs`): ``config.toml`` (the resolved
config), ``metrics.jsonl`` (one line per round), ``summary.json``, ``ledger.json`` (the privacy
ledger with the accountant's epsilon).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ppr.config import Config, to_toml
from ppr.crypto import CkksSecureAggregation
from ppr.crypto.params import default_params
from ppr.data.loaders import load_interactions
from ppr.data.split import Split, UserItems, make_split
from ppr.errors import ConfigError
from ppr.evaluation.metrics import RankingMetrics, evaluate_scores
from ppr.federated import (
    CentralNoise,
    DenseAggregator,
    DeviceFleet,
    DistributedNoise,
    FederatedTrainer,
    RoundLog,
    Server,
    StructuredAggregator,
    make_server_optimizer,
)
from ppr.model.baselines import centralized_als, popularity_scores
from ppr.model.mf import MFHyper, init_item_factors, solve_user_factors
from ppr.privacy import (
    PrivacyLedger,
    PrivacyPlan,
    min_cohort_size,
    plan_privacy,
    private_item_counts,
    realized_rounds_event,
)
from ppr.privacy.popularity import CsrItems
from ppr.runs import (
    CHECKPOINT,
    RunDir,
    atomic_write_json,
    atomic_write_text,
    json_safe,
    load_checkpoint,
    save_checkpoint,
)

Progress = Callable[[int, int, dict], None]

#: Per-coordinate range of a device's message under distributed noise: C + this many share stds.
NOISE_SHARE_RANGE = 8.0


@dataclass
class SimulationResult:
    """Everything a run produced. ``summary`` is JSON-safe and is what ``--json`` prints."""

    summary: dict[str, Any]
    q: np.ndarray
    rounds: list[RoundLog] = field(default_factory=list)
    ledger: PrivacyLedger = field(default_factory=PrivacyLedger)
    run_dir: Path | None = None


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (``getrusage``; KiB on Linux)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def hyper_of(cfg: Config) -> MFHyper:
    m = cfg.model
    return MFHyper(m.alpha, m.reg, m.local_steps, m.local_lr)


def check_config(cfg: Config) -> None:
    """Cross-key checks of a resolved config (raises :class:`ConfigError`)."""
    private = math.isfinite(cfg.privacy.epsilon)
    if private and cfg.federated.sampling != "poisson":
        raise ConfigError(
            "`federated.sampling` must be 'poisson' when `privacy.epsilon` is finite "
            "(the DP analysis assumes Poisson sampling). Found 'fixed'."
        )
    if cfg.aggregation.mode == "ckks" and not math.isfinite(cfg.privacy.clip_norm):
        raise ConfigError(
            "`privacy.clip_norm` must be finite with `aggregation.mode = 'ckks'` (CKKS needs a "
            "bound on every value a device sends). Found inf."
        )
    if private and not math.isfinite(cfg.privacy.clip_norm):
        raise ConfigError(
            "`privacy.clip_norm` must be finite when `privacy.epsilon` is finite. Found inf."
        )


def prior_scores(counts: np.ndarray) -> np.ndarray:
    """Popularity prior from (possibly noisy) counts: ``log1p(max(c, 0))`` scaled to max 1."""
    z = np.log1p(np.maximum(np.asarray(counts, np.float64), 0.0))
    top = float(z.max()) if z.size else 0.0
    return (z / top if top > 0 else z).astype(np.float32)


def _metrics(m: RankingMetrics) -> dict[str, float]:
    return {k: float(v) for k, v in m.as_dict().items()}


def _evaluate_mf(
    q: np.ndarray,
    train: UserItems,
    target: UserItems,
    hyper: MFHyper,
    k: int,
    prior: np.ndarray | None = None,
    blend: float = 0.0,
) -> RankingMetrics:
    """Each device solves ``p_u`` from the final ``q`` and its own items and ranks ``p_u . q_i``
    (plus ``blend * prior_i``); its training items are excluded."""
    users = np.flatnonzero((target.counts() > 0) & (train.counts() > 0))
    p = solve_user_factors(q, train, users, hyper)
    row = {int(u): i for i, u in enumerate(users)}
    qt = np.asarray(q).T
    bias = None if prior is None or blend == 0 else blend * prior[None, :]

    def score(batch: np.ndarray) -> np.ndarray:
        s = p[[row[int(u)] for u in batch]] @ qt
        return s if bias is None else s + bias

    return evaluate_scores(score, train, target, k, users=users)


def _noise_floor(cfg: Config, plan: PrivacyPlan, n_devices: int) -> int:
    """``n_min`` of distributed noise (1 otherwise): see :func:`ppr.privacy.min_cohort_size`."""
    if plan.noise_multiplier > 0 and cfg.privacy.noise == "distributed":
        rate = cfg.federated.sampling_rate * (1.0 - cfg.federated.dropout_rate)
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
            plan.noise_multiplier * priv.clip_norm / math.sqrt(_noise_floor(cfg, plan, n_devices))
        )
        bound = priv.clip_norm + NOISE_SHARE_RANGE * share
        l2 = priv.clip_norm + share * (math.sqrt(n_items * dim) + NOISE_SHARE_RANGE)
    return CkksSecureAggregation(
        n_items * dim,
        params=default_params(cfg.aggregation.poly_modulus_degree),
        workers=cfg.aggregation.workers,
        value_bound=bound,
        l2_clip=l2,
    )


def _build_aggregator(cfg: Config, plan: PrivacyPlan, n_items: int, n_devices: int):
    dim, priv = cfg.model.dim, cfg.privacy
    if cfg.aggregation.mode == "ckks":
        secure = secure_aggregation(cfg, plan, n_items, n_devices)
        base = DenseAggregator(secure, n_items, dim)
    else:
        base = StructuredAggregator(n_items, dim)
    if plan.noise_multiplier == 0:
        return base
    if priv.noise == "central":
        return CentralNoise(base, plan.noise_multiplier, priv.clip_norm)
    n_min = _noise_floor(cfg, plan, n_devices)
    return DistributedNoise(base, plan.noise_multiplier, priv.clip_norm, n_min)


def _channel_totals(aggregator) -> dict | None:
    """Bytes that crossed role boundaries (by sender role and message kind), as counted by the
    secure aggregation's :class:`~ppr.crypto.Channel`; ``None`` on the structured plaintext path,
    where the upload is computed (n_items x dim float32 per device) rather than sent."""
    while hasattr(aggregator, "inner"):
        aggregator = aggregator.inner
    secure = getattr(aggregator, "secure", None)
    if secure is None:
        return None
    t = secure.channel.totals()
    return {k: t[k] for k in ("total_bytes", "messages", "by_sender", "by_kind")}


def build_trainer(
    cfg: Config, fleet: DeviceFleet, aggregator, private: bool, key: jax.Array
) -> tuple[FederatedTrainer, Any]:
    """The trainer of ``cfg`` around ``aggregator`` and its initial server state (item matrix
    from ``fold_in(key, 1)``). Under DP the average uses the fixed denominator ``q N``."""
    fed = cfg.federated
    server = Server(make_server_optimizer(fed), cfg.model.item_reg)
    q0 = init_item_factors(
        jax.random.fold_in(key, 1), fleet.n_items, cfg.model.dim, cfg.model.init_scale
    )
    trainer = FederatedTrainer(
        fleet,
        aggregator,
        server,
        sampling=fed.sampling,
        sampling_rate=fed.sampling_rate,
        cohort_size=fed.cohort_size,
        dropout_rate=fed.dropout_rate,
        clip_norm=cfg.privacy.clip_norm,
        fixed_denominator=fed.sampling_rate * fleet.n_devices if private else None,
    )
    return trainer, server.init(q0)


def prepare_data(cfg: Config) -> Split:
    """Load the configured data set and split it (deterministic for ``cfg.seed``)."""
    inter = load_interactions(cfg.data, cfg.seed)
    return make_split(inter, cfg.split, cfg.seed)


def run_simulation(
    cfg: Config,
    run_dir: str | Path | None = None,
    progress: Progress | None = None,
    *,
    write: bool = True,
    split: Split | None = None,
    resume: str | Path | None = None,
) -> SimulationResult:
    """Run the configured federated experiment end to end and (with ``write``) save it.

    ``run_dir``: where to write (default: a fresh ``<output.runs_dir>/<name>-<timestamp>``).
    ``split``: a prepared :func:`prepare_data` result to reuse (must come from the same config).
    ``resume``: an interrupted run's partial directory to continue (use
    :func:`resume_simulation`, which also reads its config).

    Crash safety: after every round the server state is checkpointed in the partial run directory;
    a run interrupted after its first round keeps that directory so it can be resumed (the error
    carries a note saying how); a failure before it leaves nothing behind.
    """
    check_config(cfg)
    t_start = time.perf_counter()
    split = split if split is not None else prepare_data(cfg)
    data_s = time.perf_counter() - t_start
    on = cfg.evaluation.split
    train, target = split.for_evaluation(on)
    hyper = hyper_of(cfg)
    fleet = DeviceFleet(train, split.train_users, hyper)
    if fleet.n_devices == 0:
        raise ConfigError("no training device holds a training item: nothing to train on.")
    fed, priv, k = cfg.federated, cfg.privacy, cfg.evaluation.k
    use_prior = priv.popularity_blend > 0
    plan = plan_privacy(priv, fleet.n_devices, fed.sampling_rate, fed.rounds, use_prior)
    private = plan.noise_multiplier > 0

    key = jax.random.PRNGKey(cfg.seed)
    rd = None
    if resume is not None:
        rd = RunDir.reopen(resume)
    elif write:
        rd = RunDir(Path(run_dir)) if run_dir else RunDir.create(cfg.output.runs_dir, cfg.name)
    resumable = False
    try:
        if rd is not None and resume is None:
            atomic_write_text(rd.file("config.toml"), to_toml(cfg))

        # -- DP popularity prior (released once, before training; in the ledger) --------------
        prior = None
        pop_metrics_private = None
        if use_prior:
            u, i = train.to_pairs()
            keep = np.isin(u, fleet.population)
            sub = UserItems.from_pairs(
                u[keep].astype(np.int64), i[keep], train.n_users, train.n_items
            )
            counts, _event = private_item_counts(
                jax.random.fold_in(key, 3),
                CsrItems(sub.indptr, sub.indices),
                train.n_items,
                priv.popularity_max_items,
                plan.popularity_noise_multiplier,
            )
            prior = prior_scores(counts)
            pop_metrics_private = evaluate_scores(
                lambda b: np.broadcast_to(prior, (len(b), prior.size)), train, target, k
            )

        # -- federated training ----------------------------------------------------------------
        aggregator = _build_aggregator(cfg, plan, train.n_items, fleet.n_devices)
        trainer, state = build_trainer(cfg, fleet, aggregator, private, key)
        lines: list[str] = []
        done: list[RoundLog] = []
        start = 0
        if resume is not None:
            state, start, lines = load_checkpoint(rd.path, state)
            recs = [json.loads(x) for x in lines]
            done = [RoundLog(**{f: r[f] for f in RoundLog._fields if f in r}) for r in recs]
            resumable = True
        val_train, val_target = split.for_evaluation("validation")

        def on_round(st, log: RoundLog) -> None:
            nonlocal resumable
            rec = log.as_dict()
            if cfg.evaluation.eval_every and log.round % cfg.evaluation.eval_every == 0:
                m = _evaluate_mf(
                    np.asarray(st.q), val_train, val_target, hyper, k, prior, priv.popularity_blend
                )
                rec["validation"] = _metrics(m)
            lines.append(json.dumps(json_safe(rec)))
            if rd is not None:
                atomic_write_text(rd.file("metrics.jsonl"), "\n".join(lines) + "\n")
                save_checkpoint(rd.path, st, log.round, len(lines))
                resumable = True
            if progress is not None:
                progress(log.round, fed.rounds, rec)

        t_train = time.perf_counter()
        try:
            state, logs = trainer.fit(
                state, fed.rounds, jax.random.fold_in(key, 2), on_round, start=start
            )
            logs = done + logs
        finally:
            aggregator.close()
        train_s = time.perf_counter() - t_train
        q = np.asarray(state.q)

        # -- ledger: planned releases, with the rounds as they really ran --------------------
        ledger = plan.ledger
        if private and priv.noise == "distributed":
            realized = PrivacyLedger()
            for e in ledger.entries:
                if e.name == "dpfedavg":
                    sig = [lg.noise_multiplier or 0.0 for lg in logs]
                    realized = realized.add(
                        e.name,
                        realized_rounds_event(sig, fed.sampling_rate),
                        e.description + "; realized per-round noise",
                    )
                else:
                    realized = realized.add(e.name, e.event, e.description)
            ledger = realized
        eps_spent = ledger.epsilon(plan.delta, plan.accountant) if private else math.inf

        # -- evaluation and baselines -----------------------------------------------------------
        t_eval = time.perf_counter()
        metrics = _evaluate_mf(q, train, target, hyper, k, prior, priv.popularity_blend)
        baselines: dict[str, dict] = {}
        if cfg.baselines.popularity:
            pop = popularity_scores(train, fleet.population)  # what training devices hold
            baselines["popularity"] = _metrics(
                evaluate_scores(
                    lambda b: np.broadcast_to(pop, (len(b), pop.size)), train, target, k
                )
            )
        if pop_metrics_private is not None:
            baselines["private_popularity"] = _metrics(pop_metrics_private)
        if cfg.baselines.centralized:
            qc = centralized_als(
                jax.random.fold_in(key, 4),
                train,
                fleet.population,
                cfg.model.dim,
                hyper,
                cfg.baselines.centralized_iterations,
                cfg.model.init_scale,
            )
            baselines["centralized"] = _metrics(_evaluate_mf(qc, train, target, hyper, k))

        upload = int(sum(lg.upload_bytes for lg in logs))
        participations = int(sum(lg.accepted for lg in logs))
        summary: dict[str, Any] = {
            "name": cfg.name,
            "seed": cfg.seed,
            "run_dir": str(rd.final) if rd is not None else None,
            "rounds": fed.rounds,
            "evaluated_on": on,
            "data": {
                "source": cfg.data.source,
                "users": split.n_users,
                "items": split.n_items,
                "devices": fleet.n_devices,
                "train_positives": train.nnz,
                "evaluation_positives": target.nnz,
            },
            "metrics": _metrics(metrics),
            "baselines": baselines,
            "privacy": {
                "epsilon": plan.epsilon_target,
                "delta": plan.delta,
                "noise_multiplier": plan.noise_multiplier,
                "popularity_noise_multiplier": plan.popularity_noise_multiplier,
                "clip_norm": priv.clip_norm,
                "noise": priv.noise if private else None,
                "accountant": plan.accountant,
                "epsilon_spent": eps_spent,
                "ledger": list(ledger.names()),
            },
            "communication": {
                "mode": cfg.aggregation.mode,
                "channel": _channel_totals(aggregator),
                "upload_bytes_total": upload,
                "upload_bytes_per_device": upload / participations if participations else 0.0,
                "mean_cohort": participations / max(len(logs), 1),
            },
            "timing": {
                "data_s": data_s,
                "train_s": train_s,
                "evaluation_s": time.perf_counter() - t_eval,
                "total_s": time.perf_counter() - t_start,
                "peak_rss_mib": peak_rss_mib(),
            },
        }
        summary = json_safe(summary)
        final_dir = None
        if rd is not None:
            ledger.save(rd.file("ledger.json"), plan.delta, plan.accountant)
            atomic_write_json(rd.file("summary.json"), summary)
            rd.file(CHECKPOINT).unlink(missing_ok=True)
            final_dir = rd.commit()
        return SimulationResult(summary, q, logs, ledger, final_dir)
    except BaseException as exc:
        if rd is not None:
            if resumable:  # rounds are checkpointed: keep them, whatever stopped the run
                exc.add_note(f"the run can be resumed: ppr simulate --resume {rd.path}")
            else:
                rd.abort()
        raise


def resume_simulation(partial: str | Path, progress: Progress | None = None) -> SimulationResult:
    """Continue an interrupted run from its partial directory (its ``config.toml`` and last
    checkpoint). The result equals the uninterrupted run's: round ``t`` draws from
    ``fold_in(key, t)`` whatever round the process started at."""
    partial = Path(partial)
    cfg_file = partial / "config.toml"
    if not cfg_file.is_file():
        raise ConfigError(f"{partial}: not an interrupted run (no config.toml).")
    from ppr.config import load_config

    return run_simulation(load_config(cfg_file), progress=progress, resume=partial)

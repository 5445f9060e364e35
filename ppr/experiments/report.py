"""Stage 7 of a run: the typed :class:`~ppr.experiments.summary.RunSummary` of what ran."""

from __future__ import annotations

import resource
import sys
from typing import Any

from ppr.config import Config
from ppr.experiments.accounting import LiveLedger
from ppr.experiments.factories import RunKeys
from ppr.experiments.summary import (
    CommunicationSummary,
    DataSummary,
    PrivacySummary,
    RunSummary,
    TimingSummary,
)
from ppr.federated import RoundLog

#: What the printed ε never includes: choosing the configuration on the same users' data.
TUNING_NOTE = (
    "hyper-parameters chosen on validation data of the same users are not included in epsilon"
)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (``getrusage``; KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def privacy_summary(cfg: Config, ledger: LiveLedger, keys: RunKeys) -> PrivacySummary:
    plan = ledger.plan
    return PrivacySummary(
        epsilon=plan.epsilon_target,
        delta=plan.delta,
        noise_multiplier=plan.noise_multiplier,
        popularity_noise_multiplier=plan.popularity_noise_multiplier,
        clip_norm=cfg.privacy.clip_norm,
        noise=cfg.privacy.noise if ledger.private else None,
        accountant=plan.accountant,
        randomness=keys.label,
        epsilon_spent=ledger.epsilon(),
        rounds_released=ledger.rounds_released,
        ledger=list(ledger.ledger.names()),
        not_included=TUNING_NOTE if ledger.private else "",
    )


def communication_summary(
    cfg: Config, logs: list[RoundLog], channel: dict | None, flooding_std: float
) -> CommunicationSummary:
    upload = int(sum(lg.upload_bytes for lg in logs))
    accepted = int(sum(lg.accepted for lg in logs))
    return CommunicationSummary(
        mode=cfg.aggregation.mode,
        channel=channel,
        upload_bytes_total=upload,
        upload_bytes_per_device=upload / accepted if accepted else 0.0,
        mean_participants=accepted / max(len(logs), 1),
        flooding_std=flooding_std,
    )


def build_summary(
    cfg: Config,
    data: Any,
    n_devices: int,
    ledger: LiveLedger,
    keys: RunKeys,
    logs: list[RoundLog],
    model_version: str,
    evaluation: tuple[dict, dict],
    timing: tuple[float, float, float, float],
    run_dir: str | None,
    channel: tuple[dict | None, float] = (None, 0.0),
    tiers: dict | None = None,
) -> RunSummary:
    split, train, target = data
    return RunSummary(
        name=cfg.name,
        seed=cfg.seed,
        rounds=cfg.federated.rounds,
        evaluated_on=cfg.evaluation.split,
        data=DataSummary(
            source=cfg.data.source,
            items=split.n_items,
            users=split.n_users,
            devices=n_devices,
            train_positives=train.nnz,
            evaluation_positives=target.nnz,
        ),
        privacy=privacy_summary(cfg, ledger, keys),
        communication=communication_summary(cfg, logs, *channel),
        timing=TimingSummary(*timing, peak_rss_mib=peak_rss_mib()),
        metrics=evaluation[0],
        baselines=evaluation[1],
        tiers=tiers or {},
        model_version=model_version,
        run_dir=run_dir,
    )

"""Typed, validated, frozen run configuration.

A run is described by one TOML file (see ``configs/``) whose tables map onto the frozen dataclasses
below. Loading is strict: an unknown key, a value of the wrong type or out of range raises
:class:`~ppr.errors.ConfigError` with one line naming the key and what is allowed. ``--set
section.key=value`` overrides any key (the value is parsed as a TOML literal, else taken as a
string).
The resolved config is saved beside the results (``config.toml`` in the run directory), so a run can
be reproduced from its directory alone.

The defaults are the *embedded default*: a small synthetic data set that runs end to end in seconds.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ppr.errors import ConfigError


def _meta(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    doc: str = "",
    item: type | None = None,
) -> dict:
    return {"ge": ge, "gt": gt, "le": le, "lt": lt, "doc": doc, "item": item}


def _f(default: Any, **kw: Any) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=_meta(**kw))
    return field(default=default, metadata=_meta(**kw))


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and shape of the synthetic MovieLens-like generator (used when ``data.source`` is
    ``"synthetic"``)."""

    n_users: int = _f(600, ge=1, doc="number of users")
    n_items: int = _f(400, ge=1, doc="number of items")
    n_interactions: int = _f(30_000, ge=1, doc="target number of ratings")
    dim: int = _f(8, ge=1, doc="latent dimension of the generating preferences")
    popularity_exponent: float = _f(1.0, ge=0.0, doc="Zipf exponent of item popularity")
    activity_sigma: float = _f(1.0, ge=0.0, doc="log-normal sigma of user activity")
    min_per_user: int = _f(10, ge=1, doc="minimum ratings per user")


@dataclass(frozen=True)
class DataConfig:
    source: Literal["synthetic", "ml-100k", "ml-1m", "ml-csv", "csv", "parquet", "auto"] = _f(
        "synthetic", doc="loader to use; `auto` guesses from the files under `path`"
    )
    path: str = _f("", doc="file or directory; `$PPR_DATA_DIR` and `~` are expanded")
    columns: dict = _f({}, doc="csv/parquet column mapping: {user=, item=, rating=, timestamp=}")
    separator: str = _f(",", doc="csv field separator")
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def resolved_path(self) -> Path:
        data_dir = os.environ.get("PPR_DATA_DIR", "../shared/datasets")
        p = self.path.replace("${PPR_DATA_DIR}", data_dir).replace("$PPR_DATA_DIR", data_dir)
        return Path(os.path.expanduser(p))


@dataclass(frozen=True)
class SplitConfig:
    protocol: Literal["random", "leave_last", "held_out_users"] = _f(
        "random", doc="per-user random holdout, leave-last-k by time, or held-out users (fold-in)"
    )
    positive_threshold: float = _f(4.0, doc="ratings >= this are implicit positives")
    test_fraction: float = _f(0.2, gt=0.0, lt=1.0, doc="per-user holdout fraction (random)")
    leave_last_k: int = _f(1, ge=1, doc="test items per user (leave_last)")
    held_out_fraction: float = _f(0.1, gt=0.0, lt=1.0, doc="users held out (held_out_users)")
    fold_in_fraction: float = _f(0.8, gt=0.0, lt=1.0, doc="held-out users' fold-in share")
    validation_fraction: float = _f(0.1, ge=0.0, lt=1.0, doc="share of train carved for validation")
    min_train: int = _f(1, ge=1, doc="evaluated users keep at least this many train positives")
    users_without_positives: Literal["drop", "error"] = _f(
        "drop", doc="a user with no positive: leave them out (no device), or refuse the data"
    )


@dataclass(frozen=True)
class ModelConfig:
    dim: int = _f(32, ge=1, doc="embedding dimension")
    alpha: float = _f(3.0, ge=0.0, doc="confidence: observed positives weigh 1 + alpha")
    reg: float = _f(30.0, gt=0.0, doc="L2 regularization lambda of the user solve")
    item_reg: float = _f(0.0, ge=0.0, doc="L2 regularization of the item matrix (server side)")
    init_scale: float = _f(0.1, gt=0.0, doc="std of the initial item matrix")
    local_steps: int = _f(1, ge=1, doc="local gradient steps on the item matrix per round")
    local_lr: float = _f(1.0, gt=0.0, doc="local step size (only matters with local_steps > 1)")


@dataclass(frozen=True)
class FederatedConfig:
    rounds: int = _f(30, ge=1, doc="federated rounds")
    sampling: Literal["poisson", "fixed"] = _f("poisson", doc="how participants are drawn")
    sampling_rate: float = _f(1.0, gt=0.0, le=1.0, doc="Poisson sampling rate q")
    participants: int = _f(100, ge=1, doc="participants per round with fixed sampling")
    server_optimizer: Literal["sgd", "momentum", "adam"] = _f("adam", doc="FedAvg/FedAvgM/FedAdam")
    server_lr: float = _f(0.05, gt=0.0, doc="server learning rate")
    server_momentum: float = _f(0.9, ge=0.0, lt=1.0, doc="momentum (momentum) or b1 (adam)")
    dropout_rate: float = _f(0.0, ge=0.0, lt=1.0, doc="probability a sampled device drops out")


@dataclass(frozen=True)
class AggregationConfig:
    mode: Literal["plaintext", "ckks", "bfv"] = _f(
        "plaintext", doc="how the round's sum is formed (bfv: encrypted integers, upload = ddg)"
    )
    workers: int = _f(2, ge=1, doc="device-side encryption worker processes (ckks)")
    poly_modulus_degree: int = _f(4096, ge=1024, doc="CKKS ring degree N (slots = N/2)")
    upload: Literal["float", "ddg"] = _f(
        "float",
        doc="what a device uploads: float32 values, or integers with discrete Gaussian noise "
        "(ddg: distributed discrete Gaussian, rotated, rounded, packed; see the docs)",
    )
    bits: int = _f(20, ge=8, le=40, doc="bits per value of a ddg upload (modular sum width)")
    ddg_granularity: float = _f(
        0.0, ge=0.0, doc="ddg grid step gamma (0: the finest one whose overflow bound fits `bits`)"
    )


@dataclass(frozen=True)
class TiersConfig:
    """Device tiers (off by default): per tier a share of the devices, a compute speed, an uplink
    and an availability; a round deadline in simulated seconds. Lists are one entry per tier.
    Decisions (tier, budget, straggling) use public quantities only: see ``docs/tiers.md``."""

    enabled: bool = _f(False, doc="simulate device tiers, round deadlines and adaptive budgets")
    names: list = _f(["phone"], item=str, doc="tier names")
    shares: list = _f([1.0], item=float, gt=0.0, le=1.0, doc="share of devices per tier (sum 1)")
    flops: list = _f([1e9], item=float, gt=0.0, doc="compute speed per tier, FLOP/s")
    uplink: list = _f([1e6], item=float, gt=0.0, doc="uplink bandwidth per tier, bytes/s")
    dropout: list = _f(
        [0.0], item=float, ge=0.0, lt=1.0, doc="probability a sampled device of the tier is away"
    )
    deadline_s: float = _f(math.inf, gt=0.0, doc="round deadline, simulated seconds (inf: none)")
    adapt: bool = _f(True, doc="devices lower their local steps to meet the deadline")

    def check(self) -> None:
        """One entry per tier in every list; the shares sum to 1; the names are distinct."""
        n = len(self.names)
        for key in ("shares", "flops", "uplink", "dropout"):
            if len(getattr(self, key)) != n:
                raise ConfigError(
                    f"`tiers.{key}` must have one entry per tier ({n}, as `tiers.names`). "
                    f"Found {len(getattr(self, key))}."
                )
        if len(set(self.names)) != n:
            raise ConfigError(f"`tiers.names` must be distinct. Found {self.names!r}.")
        if abs(sum(self.shares) - 1.0) > 1e-6:
            raise ConfigError(f"`tiers.shares` must sum to 1. Found {sum(self.shares):g}.")


@dataclass(frozen=True)
class PrivacyConfig:
    epsilon: float = _f(math.inf, gt=0.0, doc='target user-level epsilon; "inf" means no DP')
    delta: float = _f(
        0.0, ge=0.0, lt=1.0, doc="target delta; 0: largest power of ten <= min(1e-4, 1/(10 N))"
    )
    clip_norm: float = _f(
        5.0, gt=0.0, doc="L2 bound C on each device's whole update (inf: no clipping)"
    )
    noise: Literal["central", "distributed"] = _f("central", doc="who adds the Gaussian noise")
    accountant: Literal["rdp", "pld"] = _f("pld", doc="privacy accountant (pld: exact)")
    noise_seed: int = _f(
        -1,
        ge=-1,
        doc="-1: DP noise and private sampling from the OS (secret); >= 0: reproducible noise "
        "from this seed (an experiment mode: the guarantee then holds only against whoever "
        "does not know it)",
    )
    popularity_share: float = _f(0.5, ge=0.0, lt=1.0, doc="share of epsilon for DP popularity")
    popularity_max_items: int = _f(20, ge=1, doc="items one device contributes to popularity")
    popularity_blend: float = _f(0.0, ge=0.0, doc="weight of the DP popularity prior in scores")


@dataclass(frozen=True)
class EvaluationConfig:
    k: int = _f(20, ge=1, doc="cut-off of recall@k and NDCG@k")
    split: Literal["test", "validation"] = _f("test", doc="split reported as the run's metrics")
    eval_every: int = _f(
        0,
        ge=0,
        doc="evaluate on the run's evaluation split every n rounds (0: only at the end); "
        "a diagnostic curve",
    )


@dataclass(frozen=True)
class BaselinesConfig:
    popularity: bool = _f(True, doc="report the popularity baseline")
    centralized: bool = _f(True, doc="report centralized (non-federated) MF with the same model")
    centralized_iterations: int = _f(15, ge=1, doc="ALS iterations of the centralized baseline")


@dataclass(frozen=True)
class OutputConfig:
    runs_dir: str = _f("runs", doc="where run directories are created")
    protected_only: bool = _f(
        False, doc="write only what the ledger covers (no metrics, counts or diagnostics)"
    )


@dataclass(frozen=True)
class ServingConfig:
    """On-device serving (``ppr recommend`` / ``evaluate`` / ``explain``): what a device keeps of
    the released model and how it ranks."""

    device_budget_mb: float = _f(
        64.0, gt=0.0, doc="memory budget of the device's model and index, in MiB (phone-sized)"
    )
    format: Literal["auto", "float32", "float16", "int8"] = _f(
        "auto", doc="stored item matrix; `auto`: the most precise format that fits the budget"
    )
    index: Literal["auto", "exact", "annoy"] = _f(
        "auto", doc="local top-k index; `auto`: the measured choice per catalog size"
    )
    candidates: int = _f(200, ge=1, doc="top-N local candidates a hybrid request refines")
    k: int = _f(10, ge=1, doc="recommendations shown by `ppr recommend`")
    explain_top: int = _f(5, ge=1, doc="own items listed per explanation")


@dataclass(frozen=True)
class ControlsConfig:
    """User controls in a simulation, each for a share of users chosen from the public ``seed``
    (``docs/transparency.md``): opt out of training, of server refinement, a personal epsilon cap,
    deletion. Every decision they drive is data-independent."""

    opt_out_share: float = _f(
        0.0, ge=0.0, le=1.0, doc="share of users opted out of training (never sampled or charged)"
    )
    refine_opt_out_share: float = _f(
        0.0, ge=0.0, le=1.0, doc="share of users opted out of server refinement when served"
    )
    epsilon_cap: float = _f(
        math.inf, gt=0.0, doc='personal epsilon cap of the capped users ("inf": no cap)'
    )
    epsilon_cap_share: float = _f(0.0, ge=0.0, le=1.0, doc="share of users with the personal cap")
    delete_share: float = _f(0.0, ge=0.0, le=1.0, doc="share of users who delete their data")
    delete_after_round: int = _f(1, ge=1, doc="round after which those users delete their data")
    device_log: bool = _f(
        True, doc="write each device's own record of what left it (`device_log.json`)"
    )


#: Coarse user attributes a cold-start cohort can be defined by.
COHORT_ATTRIBUTES = ("age_band", "gender", "occupation")


@dataclass(frozen=True)
class ColdStartConfig:
    """Private cold start (:mod:`ppr.privacy.cohorts`): per-cohort DP item counts released once
    after training, charged to the run's ledger (its ε adds to the run's total by composition)."""

    enabled: bool = _f(False, doc="release the DP cohort statistics for new users")
    mode: Literal["auto", "attributes", "anonymous"] = _f(
        "auto",
        doc="cohorts from coarse user attributes, or anonymous (nearest public centroid of the "
        "released item matrix); `auto`: attributes when the data has them",
    )
    attributes: list = _f(
        ["age_band", "gender"], item=str, doc="attributes that define a cohort (attributes mode)"
    )
    min_cohort_size: int = _f(20, ge=1, doc="K: a cohort is released only if its NOISY size >= K")
    epsilon: float = _f(
        1.0, gt=0.0, doc="epsilon of the cohort release alone (at the run's delta); composed into "
        "the run's ledger, so the run's total epsilon grows with it"
    )
    max_items_per_user: int = _f(20, ge=1, doc="m: distinct items one user adds to the counts")
    n_anonymous_cohorts: int = _f(8, ge=1, doc="public centroids of anonymous cohorts")
    prior_blend: float = _f(
        1.0,
        ge=0.0,
        doc="weight of the cohort prior in a device's fold-in scores (both scaled to max 1; "
        "chosen on the synthetic data)",
    )


@dataclass(frozen=True)
class ExecutionConfig:
    """Where device encryption (ckks) and sweep points run: in-process, in worker processes on
    this machine, or on Ray (a local instance or a cluster; the optional `ray` extra). Results
    do not depend on it."""

    executor: Literal["local", "processes", "ray"] = _f(
        "processes", doc="local: in-process; processes: worker processes; ray: Ray actors"
    )
    workers: int = _f(
        0, ge=0, doc="workers of every role; 0: each role's own key (aggregation/sweep.workers)"
    )
    ray_address: str = _f(
        "", doc='Ray to join: "" starts a local instance, "auto" or "ray://host:10001" a cluster'
    )
    batch: int = _f(0, ge=0, doc="devices per encryption task; 0: 1 (processes), 8 (ray)")


@dataclass(frozen=True)
class SweepConfig:
    """Grid of ``ppr sweep``: epsilons x seeds x (optional) other keys. Ignored by ``simulate``."""

    epsilons: list = _f(
        [math.inf, 8.0, 4.0, 1.0], item=float, gt=0.0, doc='target epsilons ("inf" = non-private)'
    )
    seeds: list = _f([0], item=int, ge=0, doc="seeds of every point")
    grid: dict = _f({}, doc='other keys to sweep, e.g. {"privacy.clip_norm" = [0.5, 1.0]}')
    workers: int = _f(0, ge=0, doc="points run in parallel (0: one per 2 cores, at least 1)")


@dataclass(frozen=True)
class TuneConfig:
    """Validation sweep of ``ppr tune``: arms (``grid``) x ``seeds`` at the target ``epsilon`` on
    the validation split; the best arm is written as the config of ``ppr sweep``. Ignored by
    ``simulate`` and ``sweep``."""

    epsilon: float = _f(4.0, gt=0.0, doc="target epsilon the arms are compared at")
    seeds: list = _f([0], item=int, ge=0, doc="seeds of every arm (mean over them is compared)")
    grid: dict = _f({}, doc='arms: keys to try, e.g. {"federated.sampling_rate" = [0.05, 0.1]}')
    metric: Literal["recall", "ndcg"] = _f("recall", doc="validation metric @ evaluation.k")
    selection_epsilon: float = _f(
        0.0,
        ge=0.0,
        doc="0: choose on exact validation scores (the choice is NOT in epsilon); > 0: choose on "
        "noisy scores at this epsilon, accounted with every arm's ledger",
    )


@dataclass(frozen=True)
class PeriodicConfig:
    """Periodic retraining (``ppr periodic``): the log split into time windows by timestamp;
    version v trains from version v-1's item matrix and is evaluated on window v+1."""

    windows: int = _f(4, ge=2, doc="time windows (equal numbers of positives); one version each")
    history: Literal["cumulative", "window"] = _f(
        "cumulative", doc="a device holds all its positives so far, or only the window's"
    )


@dataclass(frozen=True)
class Config:
    name: str = _f("default", doc="run name (prefix of the run directory)")
    seed: int = _f(
        0, ge=0, doc="seed of what is not secret: data, split, initial model, baselines"
    )
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    federated: FederatedConfig = field(default_factory=FederatedConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    tiers: TiersConfig = field(default_factory=TiersConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    controls: ControlsConfig = field(default_factory=ControlsConfig)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    periodic: PeriodicConfig = field(default_factory=PeriodicConfig)

    def check(self) -> None:
        """Cross-key checks of a resolved config (raises :class:`ConfigError`)."""
        private = math.isfinite(self.privacy.epsilon)
        if private and self.federated.sampling != "poisson":
            raise ConfigError(
                "`federated.sampling` must be 'poisson' when `privacy.epsilon` is finite "
                "(the DP analysis assumes Poisson sampling). Found 'fixed'."
            )
        if not math.isfinite(self.privacy.clip_norm):
            if self.aggregation.mode == "ckks":
                raise ConfigError(
                    "`privacy.clip_norm` must be finite with `aggregation.mode = 'ckks'` (CKKS "
                    "needs a bound on every value a device sends). Found inf."
                )
            if private:
                raise ConfigError(
                    "`privacy.clip_norm` must be finite when `privacy.epsilon` is finite. "
                    "Found inf."
                )

        self._check_upload(private)
        c = self.controls
        if c.epsilon_cap_share > 0 and not math.isfinite(c.epsilon_cap):
            raise ConfigError(
                "`controls.epsilon_cap` must be finite when `controls.epsilon_cap_share` is "
                "positive. Found inf."
            )

        self.tiers.check()

        unknown = sorted(set(self.cold_start.attributes) - set(COHORT_ATTRIBUTES))
        if unknown:
            raise ConfigError(
                f"`cold_start.attributes` must be among {', '.join(COHORT_ATTRIBUTES)}. "
                f"Found {unknown[0]!r}."
            )

    def _check_upload(self, private: bool) -> None:
        """Cross-key checks of compressed (ddg) uploads."""
        agg = self.aggregation
        if agg.mode == "bfv" and agg.upload != "ddg":
            raise ConfigError(
                "`aggregation.mode` = 'bfv' encrypts integer uploads: it needs "
                f"`aggregation.upload = 'ddg'`. Found {agg.upload!r}."
            )
        if agg.upload != "ddg":
            return
        if agg.mode == "ckks":
            raise ConfigError(
                "`aggregation.upload` = 'ddg' sends integers: use `aggregation.mode = 'bfv'` "
                "(encrypted) or 'plaintext', not 'ckks'."
            )
        if not math.isfinite(self.privacy.clip_norm):
            raise ConfigError(
                "`privacy.clip_norm` must be finite with `aggregation.upload = 'ddg'`. Found inf."
            )
        if private and self.privacy.noise != "distributed":
            raise ConfigError(
                "`privacy.noise` must be 'distributed' with `aggregation.upload = 'ddg'` (each "
                "device adds its discrete Gaussian share). Found 'central'."
            )

    def replace(self, **overrides: Any) -> Config:
        """Return a copy with dotted-key overrides applied and validated, e.g.
        ``cfg.replace(**{"privacy.epsilon": 4.0})``."""
        d = to_dict(self)
        for key, value in overrides.items():
            _set_dotted(d, key, value)
        return from_dict(d)


# --------------------------------------------------------------------------------------------
# dict <-> dataclass with strict validation


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"`{key}` must be one of {', '.join(repr(a) for a in allowed)}. Found {value!r}."
            )
        return value
    if origin in (types.UnionType, typing.Union):
        raise ConfigError(f"`{key}`: unsupported type")  # not used by the schema
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"`{key}` must be true or false. Found {value!r}.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"`{key}` must be an integer. Found {value!r}.")
    elif tp is float:
        if isinstance(value, str) and value.strip().lower() in ("inf", "infinity", "+inf"):
            value = math.inf
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"`{key}` must be a number. Found {value!r}.")
        value = float(value)
        if math.isnan(value):
            raise ConfigError(f"`{key}` must be a number. Found nan.")
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"`{key}` must be a string. Found {value!r}.")
        return value
    elif tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"`{key}` must be a table. Found {value!r}.")
        return dict(value)
    elif tp is list:
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"`{key}` must be a non-empty list. Found {value!r}.")
        item = meta.get("item")
        if item is None:
            return list(value)
        return [_coerce(f"{key}[{i}]", v, item, meta) for i, v in enumerate(value)]
    for bound, ok, word in (
        ("ge", lambda v, b: v >= b, ">="),
        ("gt", lambda v, b: v > b, ">"),
        ("le", lambda v, b: v <= b, "<="),
        ("lt", lambda v, b: v < b, "<"),
    ):
        b = meta.get(bound)
        if b is not None and not ok(value, b):
            raise ConfigError(f"`{key}` must be {word} {b}. Found {value!r}.")
    return value


def _build(cls: type, data: dict, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"`{prefix.rstrip('.')}` must be a table. Found {data!r}.")
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            allowed = ", ".join(sorted(names))
            raise ConfigError(f"unknown key `{prefix}{key}`; allowed keys: {allowed}.")
    kwargs = {}
    for name, f in names.items():
        if name not in data:
            continue
        tp = hints[name]
        key = f"{prefix}{name}"
        if _is_dataclass_type(tp):
            kwargs[name] = _build(tp, data[name], key + ".")
        else:
            kwargs[name] = _coerce(key, data[name], tp, dict(f.metadata))
    return cls(**kwargs)


def from_dict(data: dict) -> Config:
    return _build(Config, data, "")


def to_dict(obj: Any) -> dict:
    out: dict = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = to_dict(v)
        else:
            out[f.name] = (
                dict(v) if isinstance(v, dict) else (list(v) if isinstance(v, list) else v)
            )
    return out


def _parse_literal(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (every nested table, tables inside values too)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def get_dotted(d: dict, key: str) -> Any:
    """``d["a"]["b"]`` for ``key = "a.b"`` (``KeyError`` when a part is missing)."""
    node: Any = d
    for part in key.split("."):
        node = node[part]
    return node


def _set_dotted(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = d
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            raise ConfigError(f"unknown key `{'.'.join(parts[: i + 1])}` in override `{key}`.")
        node = nxt
    if parts[-1] not in node:
        # let from_dict report it with the allowed keys
        pass
    node[parts[-1]] = value


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """Parse ``["a.b=1", "c=x"]`` into ``{"a.b": 1, "c": "x"}`` (values as TOML literals)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override `{item}` must look like section.key=value.")
        key, _, value = item.partition("=")
        out[key.strip()] = _parse_literal(value.strip())
    return out


#: The embedded default run (``ppr simulate`` / ``ppr sweep`` without a config).
EMBEDDED_DEFAULT = Path(__file__).with_name("embedded.toml")


def load_config(
    path: str | Path | None = None, overrides: list[str] | dict | None = None
) -> Config:
    """Load a TOML config (or the embedded default when ``path`` is None) and apply overrides."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found.")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}.") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not a UTF-8 text file.") from None
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    merged = to_dict(_build(Config, data, ""))  # validate the file alone first
    for key, value in (overrides or {}).items():
        _set_dotted(merged, key, value)
    try:
        return from_dict(merged)
    except ConfigError as exc:
        if path is not None and not overrides:
            raise ConfigError(f"{path}: {exc}") from None
        raise


def to_toml(cfg: Config) -> str:
    """Serialize a config to TOML (round-trips through :func:`load_config`)."""
    lines: list[str] = []

    def lit(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            if math.isinf(v):
                return '"inf"'
            return repr(v)
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, dict):
            return "{" + ", ".join(f"{lit(str(k))} = {lit(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(lit(x) for x in v) + "]"
        raise TypeError(type(v))

    def emit(obj: Any, prefix: str) -> None:
        scalars = [
            (f.name, getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not dataclasses.is_dataclass(getattr(obj, f.name))
        ]
        tables = [
            (f.name, getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if dataclasses.is_dataclass(getattr(obj, f.name))
        ]
        if prefix:
            lines.append(f"\n[{prefix}]")
        for name, v in scalars:
            lines.append(f"{name} = {lit(v)}")
        for name, v in tables:
            emit(v, f"{prefix}.{name}" if prefix else name)

    emit(cfg, "")
    return "\n".join(lines).lstrip() + "\n"


def describe() -> list[tuple[str, str, str, str]]:
    """(key, type, default, doc) rows for every config key: the config reference."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        inst = cls()
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if _is_dataclass_type(tp):
                walk(tp, f"{prefix}{f.name}.")
            else:
                rows.append(
                    (
                        f"{prefix}{f.name}",
                        _type_name(tp),
                        repr(getattr(inst, f.name)),
                        f.metadata.get("doc", ""),
                    )
                )

    walk(Config, "")
    return rows

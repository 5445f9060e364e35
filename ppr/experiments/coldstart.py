"""Private cold start in a run: the cohort release stage, and its evaluation on new users.

**Stage** (:func:`release_cohort_stage`, called by :func:`ppr.experiments.simulate.simulate`
after training, before the model is released, when ``cold_start.enabled``): the training
devices' cohort statistics (:mod:`ppr.privacy.cohorts`) are released once with noise from the
run's secret key (OS entropy; ``privacy.noise_seed >= 0``: the labelled seeded mode), charged to
the run's ledger as ``cold_start_cohorts`` for every member (so the model's and the run's ε
include it), and written to ``cohorts.json`` (a DP release covered by the ledger, kept under
``output.protected_only``); a resumed run that already wrote it reuses and charges it (never
releases twice). Anonymous cohorts take their public centroids from the trained item
matrix, which is why the stage runs after training. Held-out users never contribute.

**Evaluation** (:func:`evaluate_cold_start`, ``ppr cold-start --run RUN``): on the run's
held-out users (``split.protocol = "held_out_users"``: never in training), each with more than
``max(ns)`` positives ordered by timestamp (ties broken with the public seed). Every method is
scored on the same users and the same target, their positives after the first ``max(ns)``:
(a) global private popularity, (b) the cohort prior (attributes; anonymous cohorts need items),
(c) after the first n interactions, the device's closed-form fold-in, alone and blended with the
cohort prior (``cold_start.prior_blend``). All on the device side, with
:class:`~ppr.serving.coldstart.ColdStartDevice`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ppr.config import Config, load_config
from ppr.data.loaders import load_interactions
from ppr.data.split import UserItems, make_split, positives
from ppr.errors import ConfigError, PprError
from ppr.evaluation.metrics import evaluate_scores
from ppr.io import atomic_write_bytes
from ppr.model.release import load_model
from ppr.privacy.cohorts import (
    COHORTS_FILE,
    CohortRelease,
    Summation,
    attribute_labels,
    cohort_domain,
    cohort_event,
    cohort_noise_multiplier,
    kmeans_centroids,
    nearest_centroid,
    plain_sum,
    release_cohorts,
)
from ppr.privacy.plan import check_population
from ppr.privacy.popularity import CsrItems
from ppr.privacy.randomness import secret_key
from ppr.serving.coldstart import ColdStartDevice

LEDGER_NAME = "cold_start_cohorts"
DEFAULT_NS = (1, 3, 5, 10)
BLENDED = "fold-in + prior"  # fold-in plus the cohort prior (global where no cohort)
_SECRET_PATH = 7  # fold_in index of the cohort noise under the run's secret key


def cohort_kind(cfg: Config, attributes: Any) -> str:
    """``attributes`` or ``anonymous`` (``auto``: attributes when the data has every one)."""
    mode = cfg.cold_start.mode
    has = attributes is not None and all(
        a in getattr(attributes, "columns", ()) for a in cfg.cold_start.attributes
    )
    if mode == "attributes" and not has:
        raise ConfigError(
            "`cold_start.mode` is 'attributes' but the data set has no "
            f"{', '.join(cfg.cold_start.attributes)} column(s); use 'anonymous' or 'auto'."
        )
    return mode if mode != "auto" else ("attributes" if has else "anonymous")


def _member_labels(
    cfg: Config, kind: str, split: Any, train: UserItems, members: np.ndarray, q: np.ndarray
) -> tuple[list[str], list[str], np.ndarray | None]:
    """(label per user, "" for non-members; the public domain; the centroids if anonymous)."""
    labels = [""] * train.n_users
    if kind == "attributes":
        attrs = tuple(cfg.cold_start.attributes)
        found = attribute_labels(split.user_attributes, members, attrs)
        for u, lab in zip(members, found, strict=True):
            labels[int(u)] = lab
        return labels, cohort_domain(attrs), None
    cent = kmeans_centroids(q, cfg.cold_start.n_anonymous_cohorts, cfg.seed)
    for u in members:
        c = nearest_centroid(q, cent, train.row(int(u)))
        labels[int(u)] = f"anon-{c}" if c >= 0 else ""
    return labels, [f"anon-{i}" for i in range(cent.shape[0])], cent


def _noise_key(cfg: Config, keys: Any, private_run: bool) -> tuple[jax.Array, str]:
    """The cohort noise key: the run's secret key; a fresh OS key when training was
    non-private (its 'secret' key is then the public seed); the labelled seed if asked."""
    if cfg.privacy.noise_seed >= 0 or private_run:
        return jax.random.fold_in(keys.secret, _SECRET_PATH), keys.label
    return jax.random.fold_in(secret_key(), _SECRET_PATH), "secret (OS entropy, never written)"


def _saved_release(session: Any) -> CohortRelease | None:
    """The release an interrupted run already wrote into its partial directory, if any."""
    rd = getattr(session, "rd", None)
    if rd is None or not rd.file(COHORTS_FILE).is_file():
        return None
    return CohortRelease.load(rd.file(COHORTS_FILE))


def release_cohort_stage(
    cfg: Config,
    plan: Any,
    data: Any,
    fleet: Any,
    keys: Any,
    ledger: Any,
    session: Any,
    q: Any,
    contributors: Callable[[Any, str], np.ndarray] | None = None,
    summation: Summation = plain_sum,
) -> CohortRelease | None:
    """Release, charge and save the cohort statistics (module docstring); None when disabled.

    ``contributors(event, name)``: the devices that may take part in a release of ``event``
    (user controls: opted-out or capped devices are left out); default: every member.
    ``summation``: how the devices' contributions are summed (a CKKS run: under encryption,
    :func:`ppr.experiments.popularity.secure_summation`; default: the trusted curator)."""
    cs = cfg.cold_start
    if not cs.enabled:
        return None
    sigma = cohort_noise_multiplier(cs.epsilon, plan.delta, plan.accountant)
    event = cohort_event(sigma)
    members = fleet.members if contributors is None else contributors(event, LEDGER_NAME)
    members = np.asarray(members, np.int64)
    if math.isfinite(cs.epsilon):
        check_population(int(members.size))
    saved = _saved_release(session)
    if saved is not None:  # released before an interruption: charge it, never release twice
        ledger.charge_once(LEDGER_NAME, cohort_event(saved.noise_multiplier), members)
        return saved
    q = np.asarray(q, np.float64)
    kind = cohort_kind(cfg, data.split.user_attributes)
    labels, domain, cent = _member_labels(cfg, kind, data.split, data.train, members, q)
    key, label = _noise_key(cfg, keys, plan.noise_multiplier > 0)
    u, i = data.train.to_pairs()
    keep = np.isin(u, members)
    sub = UserItems.from_pairs(u[keep].astype(np.int64), i[keep], data.train.n_users, q.shape[0])
    meta = {"kind": kind, "attributes": tuple(cs.attributes) if kind == "attributes" else ()}
    meta |= {"epsilon": cs.epsilon, "delta": plan.delta, "noise": label, "centroids": cent}
    release = release_cohorts(
        key,
        labels,
        domain,
        CsrItems(sub.indptr, sub.indices),
        q.shape[0],
        min_size=cs.min_cohort_size,
        max_items=cs.max_items_per_user,
        noise_multiplier=sigma,
        meta=meta,
        summation=summation,
    )
    ledger.charge_once(LEDGER_NAME, event, members)
    if getattr(session, "rd", None) is not None:
        release.save(session.rd.file(COHORTS_FILE))
    return release


# ------------------------------------------------------------------------------------------
# evaluation


@dataclass
class ColdStartResult:
    """Rows ``{method, n, recall, ndcg, users}`` and what describes the release evaluated."""

    k: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def recall(self, method: str, n: int = 0) -> float:
        for r in self.rows:
            if r["method"] == method and r["n"] == n:
                return float(r["recall"])
        raise KeyError((method, n))


class NewUsers:
    """Held-out users' positives in time order (``order[u]``), with their attributes."""

    def __init__(self, cfg: Config, max_n: int) -> None:
        if cfg.split.protocol != "held_out_users":
            raise ConfigError(
                "cold-start evaluation needs `split.protocol = 'held_out_users'` (new users "
                f"never in training). Found {cfg.split.protocol!r}."
            )
        inter = load_interactions(cfg.data, cfg.seed)
        split = make_split(inter, cfg.split, cfg.seed)
        pos = positives(inter, cfg.split.positive_threshold)
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0xC01D]))
        users = pos.users.astype(np.int64)
        order = np.lexsort((rng.random(users.size), pos.timestamps, users))
        counts = np.bincount(users, minlength=split.n_users)
        starts = np.concatenate([[0], np.cumsum(counts)])
        held = np.flatnonzero(~split.train_users & (counts > max_n))
        self.users = held
        self.items = {int(u): pos.items[order[starts[u] : starts[u + 1]]] for u in held}
        self.attributes = split.user_attributes
        self.n_users, self.n_items = split.n_users, split.n_items

    def attrs(self, u: int) -> dict[str, Any] | None:
        if self.attributes is None:
            return None
        return {str(c): self.attributes.iloc[int(u)][c] for c in self.attributes.columns}

    def csr(self, lo: int, hi: int | None) -> UserItems:
        """Each user's positives ``[lo:hi]`` in time order."""
        us, its = [], []
        for u in self.users:
            part = self.items[int(u)][lo:hi]
            us.append(np.full(part.size, u, np.int64))
            its.append(part)
        cat = (np.concatenate(us), np.concatenate(its)) if us else (np.zeros(0), np.zeros(0))
        return UserItems.from_pairs(cat[0].astype(np.int64), cat[1], self.n_users, self.n_items)


def _metric_row(method: str, n: int, fn, seen: UserItems, target: UserItems, users, k) -> dict:
    m = evaluate_scores(fn, seen, target, k, users=users)
    return {"method": method, "n": n, "recall": m.recall, "ndcg": m.ndcg, "users": m.n_users}


def evaluate_new_users(
    device: ColdStartDevice, new: NewUsers, k: int, ns: tuple[int, ...] = DEFAULT_NS
) -> ColdStartResult:
    """The table of the module docstring for ``new`` users on ``device``'s release and model."""
    max_n = max(ns)
    target, empty = new.csr(max_n, None), new.csr(0, 0)
    users, res = new.users, ColdStartResult(k)
    attrs = {int(u): new.attrs(u) for u in users}

    def rows(fn):
        return lambda batch: np.stack([fn(int(u)) for u in batch])

    glob = device.release.global_scores()
    res.rows.append(_metric_row("global", 0, rows(lambda u: glob), empty, target, users, k))
    cohort = rows(lambda u: device.prior(attrs[u]))
    res.rows.append(_metric_row("cohort", 0, cohort, empty, target, users, k))
    for n in ns:
        seen = new.csr(0, n)
        for name, w in (("fold-in", 0.0), (BLENDED, device.blend)):
            fn = rows(lambda u, w=w, n=n: device.scores(attrs[u], new.items[u][:n], blend=w))
            res.rows.append(_metric_row(name, n, fn, seen, target, users, k))
    covered = sum(device.cohort(attrs[int(u)]) >= 0 for u in users)
    res.info = _release_info(device.release) | {
        "new_users": int(users.size),
        "new_users_with_released_cohort": int(covered),
        "ns": list(ns),
        "prior_blend": device.blend,
    }
    return res


def _release_info(r: CohortRelease) -> dict[str, Any]:
    half = r.min_cohort_size / 2
    return {
        "kind": r.kind,
        "attributes": list(r.attributes),
        "epsilon_cohorts": r.epsilon,
        "delta": r.delta,
        "noise": r.noise,
        "noise_multiplier": r.noise_multiplier,
        "count_noise_std": r.count_std,
        "min_cohort_size": r.min_cohort_size,
        "cohorts_released": len(r.labels),
        "cohort_domain": r.n_domain,
        "pass_probability_half_k": r.pass_probability(half),
    }


def evaluate_cold_start(run: str | Path, ns: tuple[int, ...] = DEFAULT_NS) -> ColdStartResult:
    """``ppr cold-start --run RUN``: load the run's config, model and ``cohorts.json``."""
    run = Path(run)
    if not (run / "config.toml").is_file():
        raise PprError(f"{run}: not a run directory (no config.toml).")
    cfg = load_config(run / "config.toml")
    if not (run / COHORTS_FILE).is_file():
        raise PprError(
            f"{run}: no {COHORTS_FILE}; run `ppr simulate` with `cold_start.enabled = true`."
        )
    release = CohortRelease.load(run / COHORTS_FILE)
    model = load_model(run)
    device = ColdStartDevice(
        release, model.item_factors, model.alpha, model.reg, cfg.cold_start.prior_blend
    )
    result = evaluate_new_users(device, NewUsers(cfg, max(ns)), cfg.evaluation.k, ns)
    result.info |= {"run": str(run), "epsilon_run": model.privacy.get("epsilon")}
    return result


def plot_cold_start(result: ColdStartResult, path: str | Path) -> Path:
    """recall@k against the number of first interactions n (PNG, matplotlib's Agg; atomic)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    for i, name in enumerate(("fold-in", BLENDED)):
        pts = sorted((r["n"], r["recall"]) for r in result.rows if r["method"] == name)
        ax.plot([n for n, _ in pts], [y for _, y in pts], marker="o", color=f"C{i}", label=name)
    for i, name in enumerate(("global", "cohort")):
        y = result.recall(name, 0)
        ax.axhline(y, linestyle="--" if i == 0 else ":", color=f"C{i + 2}", label=f"{name} (n=0)")
    ax.set_xlabel("first interactions n on the device")
    ax.set_ylabel(f"recall@{result.k} (new users)")
    eps = result.info.get("epsilon_cohorts")
    ax.set_title(f"cold start on held-out users · cohort release ε = {eps:g}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(Path(path), buf.getvalue())

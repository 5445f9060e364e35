"""Device tiers: uneven compute and uplinks, availability, round deadlines and adaptive budgets.

A tier is a class of devices (a share of the fleet, a compute speed in FLOP/s, an uplink in
bytes/s, a probability of being away when sampled). Each round, after sampling:

1. *availability*: a sampled device of tier ``k`` is away with probability ``dropout[k]`` (drawn
   from the round's key: the run's secret key under DP);
2. *budget*: the device picks its local steps ``s`` in ``1 .. local_steps`` (the largest whose
   simulated time meets the deadline; with ``adapt = False`` always ``local_steps``);
3. *deadline*: a device whose time exceeds the deadline even at its budget is a straggler: its
   update is not summed, and the round completes with the others at the deadline.

Simulated time of one device (:class:`CostModel`)::

    time(s) = (solve + s * step) / flops + upload_bytes / uplink
    solve   = 2 n d^2 + d^3 / 3 + 2 n d      (weighted Gram over the whole catalog, Cholesky, rhs)
    step    = 4 n d                          (residual Q p and the rank-one step, whole catalog)

with ``n`` the catalog size, ``d`` the dimension and ``upload_bytes`` the real size of one device's
message in the run's upload mode (float32 plaintext, or the serialized CKKS ciphertexts measured
by encrypting once with the public context: :func:`message_bytes`).

Invariant (privacy): every decision here is a function of public, data-independent quantities
only: the tier (from the public seed and the device id, :func:`assign_tiers`), the catalog size,
the dimension, the upload mode and the configured speeds. A device's own item count never enters:
its work is that of the *padded* solve over the whole catalog (a data-oblivious device takes the
same time whatever it holds). Availability is random and independent of data. So who is dropped,
and with which budget, reveals nothing about anyone's items; see ``docs/tiers.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import numpy as np

from ppr.data.split import UserItems
from ppr.evaluation.metrics import evaluate_scores
from ppr.federated.device import Float32Codec
from ppr.federated.fleet import DeviceFleet, DeviceRound
from ppr.federated.summation import EncodedSum, StructuredSum
from ppr.model.mf import MFHyper, solve_user_factors

#: Salt of the tier assignment's generator (independent of every other use of ``seed``).
_TIER_SALT = 0x7_1E25


@dataclass(frozen=True)
class Tier:
    """One class of devices: ``flops`` FLOP/s, ``uplink`` bytes/s, ``dropout`` P(away)."""

    name: str
    share: float
    flops: float
    uplink: float
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not (self.flops > 0 and self.uplink > 0):
            raise ValueError(f"tier {self.name!r}: `flops` and `uplink` must be positive.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"tier {self.name!r}: `dropout` must be in [0, 1).")


def tiers_of(names, shares, flops, uplink, dropout) -> list[Tier]:
    """Tiers from the parallel lists of the ``[tiers]`` config section."""
    return [Tier(*row) for row in zip(names, shares, flops, uplink, dropout, strict=True)]


def assign_tiers(n_users: int, shares: list[float], seed: int) -> np.ndarray:
    """Tier index of every user id ``0 .. n_users - 1``: a permutation drawn from ``seed`` alone
    split by the shares (largest remainders), so tier ``k`` has ``round(share_k n)`` users up to
    one. A function of (seed, n_users, shares) only: public and data-independent."""
    shares = np.asarray(shares, np.float64)
    exact = shares / shares.sum() * int(n_users)
    counts = np.floor(exact).astype(np.int64)
    rest = int(n_users) - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:rest]] += 1
    perm = np.random.default_rng([int(seed), _TIER_SALT]).permutation(int(n_users))
    out = np.empty(int(n_users), np.int64)
    out[perm] = np.repeat(np.arange(shares.size), counts)
    return out


@dataclass(frozen=True)
class CostModel:
    """Simulated work and upload of one device per round (see the module docstring)."""

    n_items: int
    dim: int
    upload_bytes: int

    @property
    def solve_flops(self) -> float:
        n, d = self.n_items, self.dim
        return 2.0 * n * d * d + d**3 / 3.0 + 2.0 * n * d

    @property
    def step_flops(self) -> float:
        return 4.0 * self.n_items * self.dim

    def seconds(self, tier: Tier, steps: int) -> float:
        """Simulated time of a device of ``tier`` doing ``steps`` local steps and uploading."""
        work = self.solve_flops + int(steps) * self.step_flops
        return work / tier.flops + self.upload_bytes / tier.uplink

    def budget(self, tier: Tier, deadline: float, max_steps: int, adapt: bool) -> int:
        """Local steps a device of ``tier`` runs: the largest ``s <= max_steps`` (only
        ``max_steps`` without ``adapt``) with ``seconds(s) <= deadline``; 0 if none (a
        straggler)."""
        candidates = range(int(max_steps), 0, -1) if adapt else (int(max_steps),)
        return next((s for s in candidates if self.seconds(tier, s) <= deadline), 0)


def message_bytes(summation) -> int:
    """Bytes one device uploads per round in ``summation``'s upload mode (noise wrappers are
    looked through). Plaintext: the float32 codec of the update; CKKS: the framed ciphertexts of
    one update, measured by encrypting a zero update with the public context (their size does not
    depend on the values). A strategy of another kind must say (``message_bytes()``)."""
    while hasattr(summation, "inner"):
        summation = summation.inner
    own = getattr(summation, "message_bytes", None)
    if callable(own):
        return int(own())
    n_values = summation.n_items * summation.dim
    if isinstance(summation, StructuredSum):
        return Float32Codec().nbytes(n_values)
    if isinstance(summation, EncodedSum):
        secure = summation.secure
        context = getattr(secure, "public_context", None)
        if context is None:  # PlaintextAggregation: float32 bytes on the wire
            return Float32Codec().nbytes(n_values)
        from ppr.crypto.roles import DeviceEncryptor

        return len(DeviceEncryptor(context, secure.spec).encrypt(np.zeros(n_values), 0))
    raise ValueError(
        f"the tier model does not know the upload size of {type(summation).__name__}; "
        "give it a `message_bytes()` method."
    )


class TierRound(NamedTuple):
    """What the tier model decided for one round's participants.

    ``kept`` upload (with ``steps[i]`` local steps each); ``away`` were unavailable;
    ``stragglers`` could not meet the deadline; ``seconds`` is the simulated round time (the
    deadline when someone did not report, else the slowest kept device); ``per_tier`` the counts
    by tier name (diagnostics)."""

    kept: np.ndarray
    steps: np.ndarray
    away: np.ndarray
    stragglers: np.ndarray
    seconds: float
    per_tier: dict

    @property
    def lost(self) -> int:
        """Participants whose update is not summed (away or past the deadline)."""
        return int(self.away.size + self.stragglers.size)


class TierSchedule:
    """The fleet's tiers and the round deadline: availability, budgets and stragglers per round.

    ``tier_of[u]`` is user ``u``'s tier (:func:`assign_tiers`). Budgets are computed once per
    tier (they depend only on public quantities), so every device of a tier gets the same one.
    """

    def __init__(
        self,
        tiers: list[Tier],
        tier_of: np.ndarray,
        cost: CostModel,
        deadline: float,
        max_steps: int,
        adapt: bool,
    ) -> None:
        if not deadline > 0:
            raise ValueError(f"`deadline_s` must be positive. Found {deadline}.")
        if int(max_steps) < 1:
            raise ValueError(f"`local_steps` must be at least 1. Found {max_steps}.")
        self.tiers, self.cost = list(tiers), cost
        self.tier_of = np.asarray(tier_of, np.int64)
        self.deadline, self.max_steps, self.adapt = float(deadline), int(max_steps), bool(adapt)
        self.budgets = np.array([cost.budget(t, deadline, max_steps, adapt) for t in self.tiers])
        self.times = np.array(
            [
                cost.seconds(t, b) if b else math.inf
                for t, b in zip(self.tiers, self.budgets, strict=True)
            ]
        )
        self._away = np.array([t.dropout for t in self.tiers])

    def plan(self, key: jax.Array, participants: np.ndarray) -> TierRound:
        """Availability (from ``key``), budgets and stragglers of this round's participants."""
        ids = np.asarray(participants, np.int64)
        tier = self.tier_of[ids]
        away = np.asarray(jax.random.uniform(key, (ids.size,))) < self._away[tier]
        late = ~away & (self.budgets[tier] == 0)
        keep = ~away & ~late
        waited = bool(away.any() or late.any()) and math.isfinite(self.deadline)
        slowest = float(self.times[tier[keep]].max()) if keep.any() else 0.0
        per_tier = {
            t.name: {
                "participants": int(np.sum(tier == k)),
                "away": int(np.sum(away & (tier == k))),
                "stragglers": int(np.sum(late & (tier == k))),
                "uploaded": int(np.sum(keep & (tier == k))),
                "local_steps": int(self.budgets[k]),
            }
            for k, t in enumerate(self.tiers)
        }
        return TierRound(
            ids[keep],
            self.budgets[tier[keep]],
            ids[away],
            ids[late],
            self.deadline if waited else slowest,
            per_tier,
        )

    def compute(
        self, fleet: DeviceFleet, q: jax.Array, tr: TierRound, clip_norm: float
    ) -> DeviceRound:
        """The kept devices' updates, each with its own budget of local steps (one batched
        computation per distinct budget, merged into one :class:`DeviceRound`)."""
        batches, updates = [], []
        for steps in np.unique(tr.steps):
            hyper = fleet.hyper._replace(local_steps=int(steps))
            part = fleet.compute(q, tr.kept[tr.steps == steps], clip_norm, hyper=hyper)
            batches += part.batches
            updates += part.updates
        return DeviceRound(batches, updates, q)


def schedule_from_config(
    tiers_cfg, seed: int, n_users: int, cost: CostModel, max_steps: int
) -> TierSchedule | None:
    """The :class:`TierSchedule` of a ``[tiers]`` config section (``None`` when disabled)."""
    if not tiers_cfg.enabled:
        return None
    c = tiers_cfg
    tiers = tiers_of(c.names, c.shares, c.flops, c.uplink, c.dropout)
    tier_of = assign_tiers(n_users, list(c.shares), seed)
    return TierSchedule(tiers, tier_of, cost, c.deadline_s, max_steps, c.adapt)


def availability(tiers_cfg) -> float:
    """Probability that a sampled device is not away: ``sum_k share_k (1 - dropout_k)`` (1 when
    tiers are off). Public: enters the distributed-noise floor like ``federated.dropout_rate``."""
    if not tiers_cfg.enabled:
        return 1.0
    return float(
        sum(s * (1.0 - d) for s, d in zip(tiers_cfg.shares, tiers_cfg.dropout, strict=True))
    )


# ----------------------------------------------------------------------------------------------
# diagnostics: the rounds by tier, and recall by tier and by activity quartile


def rounds_by_tier(logs: list) -> dict:
    """Totals over the rounds' ``tiers`` records: participants, away, stragglers, uploaded per
    tier, and the simulated round time (total, mean, max). Diagnostics (exact counts)."""
    per: dict[str, dict] = {}
    for log in logs:
        for name, rec in (log.tiers or {}).items():
            acc = per.setdefault(name, {k: 0 for k in rec if k != "local_steps"})
            for k in acc:
                acc[k] += rec[k]
            acc["local_steps"] = rec["local_steps"]
    times = [float(lg.sim_seconds) for lg in logs]
    return {
        "per_tier": per,
        "sim_seconds_total": float(sum(times)),
        "sim_seconds_mean": float(np.mean(times)) if times else 0.0,
        "sim_seconds_max": float(max(times, default=0.0)),
        "stragglers": int(sum(lg.stragglers for lg in logs)),
    }


def activity_quartiles(train: UserItems, users: np.ndarray) -> dict[str, np.ndarray]:
    """``users`` split into four groups of (almost) equal size by their number of training items
    (activity), least active first; each group's name gives its item range."""
    users = np.asarray(users, np.int64)
    counts = train.counts()[users]
    order = np.argsort(counts, kind="stable")
    out: dict[str, np.ndarray] = {}
    for i, part in enumerate(np.array_split(order, 4)):
        if part.size:
            lo, hi = int(counts[part].min()), int(counts[part].max())
            out[f"q{i + 1} ({lo}-{hi} items)"] = np.sort(users[part])
    return out


def recall_by_group(
    score: Callable[[np.ndarray], np.ndarray],
    train: UserItems,
    target: UserItems,
    k: int,
    groups: dict[str, np.ndarray],
) -> dict[str, dict]:
    """``{group: {"users": n, "recall@k": r}}``: the run's metric restricted to each group of
    users (``score(users) -> (len(users), n_items)`` scores, as the run ranks them)."""
    out: dict[str, dict] = {}
    for name, users in groups.items():
        m = evaluate_scores(score, train, target, k, users=users)
        out[name] = {"users": int(m.n_users), f"recall@{k}": float(m.recall)}
    return out


def tier_report(
    logs: list,
    names: list[str],
    tier_of: np.ndarray,
    q: np.ndarray,
    train: UserItems,
    target: UserItems,
    hyper: MFHyper,
    k: int,
    bias: np.ndarray | None = None,
) -> dict:
    """The run's tier diagnostics: :func:`rounds_by_tier`, and recall@k by tier and by activity
    quartile over the evaluated users, each scored as the run scores them (``p_u . q_i`` from
    the device's own solve, plus ``bias``). The user-weighted mean of either breakdown is the
    run's recall. Diagnostics on raw held-out data: not private."""
    users = np.flatnonzero((target.counts() > 0) & (train.counts() > 0))
    p = solve_user_factors(q, train, users, hyper)
    pos = np.full(train.n_users, -1, np.int64)
    pos[users] = np.arange(users.size)
    qt = np.asarray(q).T

    def score(batch: np.ndarray) -> np.ndarray:
        s = p[pos[np.asarray(batch, np.int64)]] @ qt
        return s if bias is None else s + bias[None, :]

    by_tier = {name: users[tier_of[users] == i] for i, name in enumerate(names)}
    return {
        **rounds_by_tier(logs),
        "recall_by_tier": recall_by_group(score, train, target, k, by_tier),
        "recall_by_activity": recall_by_group(
            score, train, target, k, activity_quartiles(train, users)
        ),
    }

"""``ppr periodic``: model versions retrained over time windows, with a ledger across versions.

The positives of the log are cut by timestamp into ``periodic.windows`` windows holding equal
numbers of positives (:func:`window_of`). Version ``v`` (``v = 0 .. windows - 2``) is one DP run
(:func:`ppr.experiments.simulate.simulate`, its own run directory under ``versions/``):

* its devices hold their positives of windows ``<= v`` (``history = "cumulative"``) or of window
  ``v`` only (``history = "window"``); a user with no such positive has no device in it;
* it starts from version ``v - 1``'s released item matrix (version 0: the seeded one);
* it is evaluated on window ``v + 1``: each user's new positives there (items it had not had
  before), ranked from its on-device items of that version; the last window only evaluates.

Privacy. Each version meets the target ``privacy.epsilon`` on its own ledger. One user's data
can be used by several versions, and those releases compose (DESIGN.md, "Privacy semantics",
periodic retraining): the combined record (:func:`combine_versions`, ``ledger_versions.json``,
trusted side only) is a :class:`~ppr.privacy.spend.PrivacySpend` over all users in which every
version's per-device charges are re-charged to that device's user, so a user's ε
(:meth:`~ppr.privacy.spend.PrivacySpend.device_epsilon`) is the accountant's composition of every
release of every version the user was eligible in, and of nothing else. All versions share one
δ (``privacy.delta``, or when 0 the default for the whole log's users), at which user ε is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppr.config import Config, to_toml
from ppr.data.interactions import Interactions
from ppr.data.loaders import load_interactions
from ppr.data.split import Split, UserItems, positives
from ppr.errors import ConfigError, PprError
from ppr.experiments.factories import check_run
from ppr.experiments.rundir import CHECKPOINT
from ppr.experiments.simulate import Progress, simulate
from ppr.io import atomic_write_json, atomic_write_text, json_safe, read_json
from ppr.model.release import load_model
from ppr.privacy.plan import default_delta
from ppr.privacy.spend import PrivacySpend, spend_from_json

__all__ = [
    "PeriodicResult",
    "combine_versions",
    "run_periodic",
    "version_split",
    "window_of",
]

VERSIONS_DIR = "versions"
CONFIG_FILE = "periodic_config.toml"
LEDGER_FILE = "ledger_versions.json"
SUMMARY_FILE = "versions.json"


@dataclass(frozen=True)
class PeriodicResult:
    """The versions' rows (window, devices, ε, recall on the next window), the combined spend
    over users (trusted side), per-user ε read from it, and the output directory."""

    out_dir: Path
    versions: list[dict[str, Any]]
    spend: PrivacySpend
    user_epsilon: np.ndarray
    eligible: np.ndarray  # (versions, users) bool: which versions held each user's data


def window_of(timestamps: np.ndarray, windows: int) -> np.ndarray:
    """Window index ``0 .. windows - 1`` of each timestamp: cut at the ``k / windows`` quantiles,
    so windows hold equal numbers of events up to ties (a tie stays in one window). Raises when
    a window comes out empty (too few distinct timestamps)."""
    ts = np.asarray(timestamps, np.int64)
    edges = np.quantile(ts, np.arange(1, windows) / windows, method="higher")
    idx = np.searchsorted(edges, ts, side="right")
    counts = np.bincount(idx, minlength=windows)
    if (counts == 0).any():
        raise ConfigError(
            f"`periodic.windows`: {windows} windows leave window {int(np.argmin(counts))} "
            "empty (too few distinct timestamps); use fewer windows."
        )
    return idx


def version_split(pos: Interactions, window: np.ndarray, v: int, history: str) -> Split:
    """The split of version ``v``: train = the devices' positives (windows ``<= v`` or ``== v``),
    test = window ``v + 1``'s positives of (user, item) pairs not seen in windows ``<= v``,
    no validation. Every user is a training user (those without positives get no device)."""
    users, items, n_u, n_i = pos.users.astype(np.int64), pos.items, pos.n_users, pos.n_items
    held = window <= v if history == "cumulative" else window == v
    seen = set((users[window <= v] * n_i + items[window <= v]).tolist())
    nxt = np.flatnonzero(window == v + 1)
    fresh = np.array([int(users[j] * n_i + items[j]) not in seen for j in nxt], bool)
    test = nxt[fresh] if nxt.size else nxt

    def csr(rows: np.ndarray) -> UserItems:
        return UserItems.from_pairs(users[rows], items[rows], n_u, n_i)

    empty = np.zeros(0, np.int64)
    return Split(
        csr(np.flatnonzero(held)),
        csr(empty),
        csr(test),
        np.ones(n_u, bool),
        n_u,
        n_i,
        pos.item_ids,
        pos.item_titles,
        pos.user_attributes,
    )


def _version_spend(run_dir: Path) -> tuple[np.ndarray, PrivacySpend]:
    """(members as user indices, per-member spend) of a finished version's ``devices.json``."""
    path = run_dir / "devices.json"
    if not path.is_file():
        raise PprError(f"{path}: missing (periodic needs `output.protected_only = false`).")
    rep = read_json(path)
    return np.asarray(rep["members"], np.int64), spend_from_json(rep["spend"])


def combine_versions(
    parts: list[tuple[np.ndarray, PrivacySpend]], n_users: int, delta: float, accountant: str
) -> PrivacySpend:
    """One spend over ``n_users`` users from every version's ``(members, spend)``: for each
    signature ``k`` with per-member counts ``c``, the ``j``-th charge goes to the users whose
    ``c >= j``; a user's record is therefore the sum of its per-version counts (composition)."""
    combined = PrivacySpend(n_users, delta, accountant, rounds_name="versions")
    for v, (members, spend) in enumerate(parts):
        counts = spend.device_counts()
        for k, sig in enumerate(spend.signatures):
            col = counts[:, k] if counts.size else np.zeros(0, np.int64)
            for j in range(1, int(col.max(initial=0)) + 1):
                combined.charge(f"version {v} signature {k} #{j}", sig, members[col >= j])
    return combined


def _version_row(
    v: int, summary: dict[str, Any], run_dir: Path, window_range: tuple[int, int], k: int
) -> dict[str, Any]:
    """The version's row of ``versions.json`` from its run's ``summary.json`` content."""
    base = (summary.get("baselines") or {}).get("popularity") or {}
    return json_safe(
        {
            "version": v,
            "trained_on_window": v,
            "evaluated_on_window": v + 1,
            "window_start": window_range[0],
            "window_end": window_range[1],
            "devices": (summary.get("data") or {}).get("devices"),
            "epsilon": (summary.get("privacy") or {}).get("epsilon_spent"),
            f"recall@{k}": (summary.get("metrics") or {}).get(f"recall@{k}"),
            f"popularity_recall@{k}": base.get(f"recall@{k}"),
            "run_dir": str(run_dir),
        }
    )


def _delta(cfg: Config, pos: Interactions) -> float:
    if cfg.privacy.delta > 0 or not math.isfinite(cfg.privacy.epsilon):
        return cfg.privacy.delta
    return default_delta(max(int(np.unique(pos.users).size), 1))


def run_periodic(
    cfg: Config,
    out_dir: str | Path,
    *,
    windows: int | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    on_round: Progress | None = None,
) -> PeriodicResult:
    """Train the versions of ``cfg`` over time windows into ``out_dir`` (must be new or empty)
    and write ``versions.json`` and the combined ledger ``ledger_versions.json``.

    ``resume``: continue ``out_dir`` under its own frozen ``periodic_config.toml`` (``cfg`` must
    equal it): a finished version is read back, not retrained; an interrupted one continues from
    its last checkpoint (its rounds were released to the aggregator: they are never rerun with
    fresh noise, and its live ledger goes on); the others run. ``on_round``: each version's
    per-round progress (:func:`~ppr.experiments.simulate.simulate`'s)."""
    if windows is not None:
        cfg = cfg.replace(**{"periodic.windows": windows})
    check_run(cfg)
    out = Path(out_dir)
    if resume:
        _check_resumable(cfg, out)
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PprError(f"{out} already exists and is not empty; choose another directory.")
    pos = positives(load_interactions(cfg.data, cfg.seed), cfg.split.positive_threshold)
    window = window_of(pos.timestamps, cfg.periodic.windows)
    delta = _delta(cfg, pos)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        atomic_write_text(out / CONFIG_FILE, to_toml(cfg))
    rows, parts, q = [], [], None
    for v in range(cfg.periodic.windows - 1):
        if progress is not None:
            progress(v, cfg.periodic.windows - 1)
        vcfg = cfg.replace(
            **{
                "name": f"{cfg.name}-v{v}",
                "privacy.delta": delta,
                "evaluation.split": "test",
                "baselines.centralized": False,
            }
        )
        final = out / VERSIONS_DIR / f"v{v}"
        summary, run_dir, q = _version(vcfg, final, pos, window, v, q, on_round)
        ts = pos.timestamps[window == v]
        rows.append(_version_row(v, summary, run_dir, (int(ts.min()), int(ts.max())),
                                 cfg.evaluation.k))  # fmt: skip
        parts.append(_version_spend(run_dir))
    return _finish(cfg, out, rows, parts, pos.n_users, delta)


def _check_resumable(cfg: Config, out: Path) -> None:
    """``out`` holds a periodic run whose frozen config is ``cfg``."""
    frozen = out / CONFIG_FILE
    if not frozen.is_file():
        raise PprError(f"{frozen}: missing; `--resume` continues a periodic output directory.")
    if frozen.read_text(encoding="utf-8") != to_toml(cfg):
        raise ConfigError(
            f"{frozen}: differs from the given config; a resume continues the same versions "
            "(give the same CONFIG, --windows and --set, or start a new directory)."
        )


def _version(
    vcfg: Config, final: Path, pos: Interactions, window: np.ndarray, v: int,
    q: np.ndarray | None, on_round: Progress | None,
) -> tuple[dict[str, Any], Path, np.ndarray]:  # fmt: skip
    """(summary, run directory, released item matrix) of version ``v``: read back when it
    finished, continued from its checkpoint when it was interrupted, run otherwise."""
    if (final / "summary.json").is_file():
        return read_json(final / "summary.json"), final, load_model(final).item_factors
    split = version_split(pos, window, v, vcfg.periodic.history)
    partial = final.parent / f".{final.name}.partial"
    if (partial / CHECKPOINT).is_file():
        res = simulate(vcfg, progress=on_round, split=split, init_q=q, resume=partial)
    else:
        res = simulate(vcfg, final, on_round, split=split, init_q=q)
    return res.summary.to_dict(), Path(res.run_dir), res.model.item_factors


def _finish(
    cfg: Config, out: Path, rows: list, parts: list, n_users: int, delta: float
) -> PeriodicResult:
    """The combined ledger, per-user ε, and the summary files."""
    acc = cfg.privacy.accountant
    spend = combine_versions(parts, n_users, delta if delta > 0 else 1e-6, acc)
    eligible = np.zeros((len(parts), n_users), bool)
    for v, (members, _) in enumerate(parts):
        eligible[v, members] = True
    used = eligible.any(axis=0)
    eps = np.where(used, spend.device_epsilons(), 0.0)  # one accountant call per history
    spend.save(out / LEDGER_FILE)
    n_versions = eligible.sum(axis=0)
    summary = {
        "windows": cfg.periodic.windows,
        "history": cfg.periodic.history,
        "delta": delta,
        "target_epsilon_per_version": cfg.privacy.epsilon,
        "versions": rows,
        "users": {
            "with_data": int(used.sum()),
            "by_versions_used": {
                str(n): int((n_versions == n).sum()) for n in range(1, len(parts) + 1)
            },
            "epsilon_max": float(eps[used].max()) if used.any() else 0.0,
            "epsilon_median": float(np.median(eps[used])) if used.any() else 0.0,
        },
        "note": "a user's epsilon composes every version that used their data "
        f"({LEDGER_FILE}, trusted side: per-user counts)",
    }
    atomic_write_json(out / SUMMARY_FILE, json_safe(summary))
    return PeriodicResult(out, rows, spend, eps, eligible)

"""``ppr tune``: a validation sweep that picks the arm and writes the config of ``ppr sweep``.

A population's hyper-parameters (sampling rate, rounds, dimension, clip, learning rate) are chosen
on its own validation split at the target ε, not carried over from a smaller population. The
input is an ordinary config with a ``[tune]`` section (``epsilon``, ``seeds``, ``grid``,
``metric``); its ``[sweep]`` section describes the sweep the chosen config is for.

Steps (:func:`run_tune`):

1. the tuning sweep: the input config with ``evaluation.split = "validation"``, ``sweep.epsilons
   = [tune.epsilon]``, ``sweep.seeds = tune.seeds`` and ``sweep.grid = tune.grid``, run by
   :func:`ppr.experiments.sweep.run_sweep` into the tuning directory (resumable: ``resume``
   reruns only the arms without a finished result, and refuses a different base config);
2. the choice (:func:`pick_best`): the arm with the best mean validation metric over the seeds
   (ties: the first arm in grid order). Only validation numbers are read, never test ones. With
   ``tune.selection_epsilon > 0`` (:func:`private_choice`) the metric is the *noisy* one: every
   run's validation sum and user count released once with Gaussian noise
   (:mod:`ppr.privacy.selection`), saved in ``selection.json`` and read back by any later call
   (a resume never draws it again);
3. the chosen config (:func:`chosen_config`): the input with the arm's values, ``evaluation.split
   = "test"`` and the ``[tune]`` section reset, written atomically with a comment header that
   records the arms and the privacy statement;
4. the privacy cost of the choice (:func:`tuning_cost`), printed next to ε (DESIGN.md, "Privacy
   semantics": tuning on private data costs privacy):

   * accounted part: every model trained while tuning is a release about the same users; their
     ledgers (``ledger.json`` of each run) composed with the accountant give ``arms_epsilon``,
     what publishing every tried arm's model would cost;
   * the choice: with exact scores it reads the validation positives directly (no DP mechanism
     covers it), so the ε of the runs of the chosen config does NOT include the tuning, and the
     statement says so in words. With noisy scores the selection release is one more DpEvent,
     composed with every run's ledger: ``tuning_epsilon`` then covers the whole tuning, and the
     chosen config's runs compose with it.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dp_accounting
import numpy as np

from ppr.config import Config, from_dict, to_toml
from ppr.errors import ConfigError
from ppr.experiments.report import TUNING_NOTE
from ppr.experiments.sweep import SweepProgress, SweepResult, expand_grid, run_sweep
from ppr.io import atomic_write_json, atomic_write_text, json_safe, read_json
from ppr.privacy.accounting import epsilon_of
from ppr.privacy.events import event_from_json, event_to_json
from ppr.privacy.ledger import load_ledger
from ppr.privacy.randomness import noise_source
from ppr.privacy.selection import (
    calibrate_selection,
    noisy_run_means,
    selection_event,
    selection_std,
)

__all__ = [
    "TuneResult",
    "chosen_config",
    "pick_best",
    "private_choice",
    "run_tune",
    "tuning_config",
    "tuning_cost",
]

SELECTION_FILE = "selection.json"

_RESERVED = ("privacy.epsilon", "seed", "evaluation.split")


@dataclass(frozen=True)
class TuneResult:
    """Outcome of :func:`run_tune`: the arms (aggregated validation rows), the chosen arm's
    values, the chosen config, where it was written, and the privacy statement of the choice."""

    sweep: SweepResult
    metric: str
    arms: list[dict[str, Any]]
    chosen: dict[str, Any]
    config: Config
    written: Path | None
    cost: dict[str, Any]


def tuning_config(cfg: Config) -> Config:
    """The sweep config of the tuning: validation split, one ε, the arms as the grid.

    Raises :class:`ConfigError` for an empty grid or a reserved key in ``tune.grid``."""
    grid = dict(cfg.tune.grid)
    if not grid:
        raise ConfigError("`tune.grid` is empty: nothing to choose between.")
    for key in grid:
        if key in _RESERVED or key.startswith(("sweep", "tune")):
            raise ConfigError(f"`tune.grid` must not contain `{key}` (fixed by the tuning).")
    sweep = {
        "epsilons": [cfg.tune.epsilon],
        "seeds": list(cfg.tune.seeds),
        "grid": grid,
        "workers": cfg.sweep.workers,
    }
    try:
        base = cfg.replace(**{"evaluation.split": "validation", "tune": {}, "sweep": sweep})
        expand_grid(base)  # every arm's config validated before anything runs
    except ConfigError as exc:
        raise ConfigError(f"tune.grid: {str(exc).replace('sweep.grid', 'tune.grid')}") from None
    return base


def pick_best(arms: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The arm with the largest mean ``metric`` (first in grid order on ties). An arm whose
    metric is missing or not finite never wins; raises when no arm has one."""
    best, best_v = None, -math.inf
    for row in arms:
        v = row.get(metric)
        if isinstance(v, (int, float)) and math.isfinite(v) and v > best_v:
            best, best_v = row, float(v)
    if best is None:
        raise ConfigError(f"no tuning arm reported `{metric}`: nothing to choose.")
    return best


def chosen_config(cfg: Config, values: dict[str, Any]) -> Config:
    """The config ``ppr sweep`` runs: ``cfg`` with the arm's ``values``, the test split and the
    ``[tune]`` section reset (its ``[sweep]`` section is kept)."""
    return cfg.replace(**{**values, "evaluation.split": "test", "tune": {}})


def tuning_cost(
    runs: list[dict[str, Any]], accountant: str, selection: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The privacy statement of a choice among ``runs`` (one row per run of the tuning sweep,
    with ``run_dir`` and ``delta``). ``arms_epsilon`` composes every run's ledger at the runs'
    δ summed (a basic-composition δ). ``selection`` (from :func:`private_choice`): the noisy
    scores' release, composed too; ``tuning_epsilon`` then covers the whole tuning. Without it
    the choice is not included in any ε."""
    events = [load_ledger(Path(r["run_dir"]) / "ledger.json").composed() for r in runs]
    deltas = [float(r["delta"] or 0.0) for r in runs]
    private = all(d > 0 for d in deltas) and bool(events)
    total_delta = float(sum(deltas)) if private else 0.0
    eps = math.inf
    if private:
        eps = epsilon_of(dp_accounting.ComposedDpEvent(events), total_delta, accountant)
    out: dict[str, Any] = {
        "runs": len(runs),
        "arms_epsilon": json_safe(eps),
        "arms_delta": total_delta,
        "included_in_epsilon": False,
    }
    if selection is None or not private:
        out["statement"] = (
            f"the choice among {len(runs)} tuning run(s) is NOT included in the epsilon of the "
            f"chosen config's runs ({TUNING_NOTE}); publishing every tried arm's model would "
            f"compose to epsilon {_fmt(eps)} at delta {total_delta:.3g}, and picking the arm "
            "reads validation positives directly, which no DP mechanism covers"
        )
        return out
    all_events = [*events, event_from_json(selection["event"])]
    tune_delta = total_delta  # the accountant composes the events: read at the arms' δ
    tune_eps = epsilon_of(dp_accounting.ComposedDpEvent(all_events), tune_delta, accountant)
    out.update(
        included_in_epsilon=True,
        selection_epsilon=selection["epsilon"],
        tuning_epsilon=json_safe(tune_eps),
        tuning_delta=tune_delta,
        statement=(
            f"the choice is accounted: {len(runs)} tuning run(s) and the noisy validation "
            f"scores the arm was chosen by (epsilon {selection['epsilon']:g}, noise std "
            f"{selection['std']:.3g} per sum and count) compose to epsilon {_fmt(tune_eps)} at "
            f"delta {tune_delta:.3g}; the chosen config's runs compose with it"
        ),
    )
    return out


def private_choice(
    cfg: Config, runs: list[dict[str, Any]], metric: str, tune_dir: Path
) -> dict[str, Any]:
    """The noisy validation release of ``runs`` at ``tune.selection_epsilon``, drawn once and
    saved in ``tune_dir/selection.json`` (read back afterwards, never drawn again: the ledger is
    what really ran). Raises when a saved release belongs to other runs or another ε."""
    ids = [r["point_id"] for r in runs]
    path = tune_dir / SELECTION_FILE
    eps = float(cfg.tune.selection_epsilon)
    if path.is_file():
        saved = read_json(path)
        if saved.get("runs") != ids or saved.get("epsilon") != eps or saved.get("metric") != metric:
            raise ConfigError(
                f"{path}: a selection released for other runs or another "
                "`tune.selection_epsilon`; drawing it again would spend more: use a new --dir."
            )
        return saved
    delta = max(float(r["delta"] or 0.0) for r in runs)
    if delta <= 0:
        raise ConfigError("`tune.selection_epsilon` needs private tuning runs (delta > 0).")
    z = calibrate_selection(eps, delta, cfg.privacy.accountant)
    seed = cfg.privacy.noise_seed
    source = noise_source(seed if seed >= 0 else None)
    sums, counts, means = noisy_run_means(
        [float(r[metric]) for r in runs], [int(r["evaluated_users"]) for r in runs], z, source
    )
    saved = {
        "metric": metric, "epsilon": eps, "delta": delta, "noise_multiplier": z,
        "std": selection_std(z, len(runs)), "event": event_to_json(selection_event(z)),
        "randomness": source.label, "runs": ids, "noisy_sums": sums.tolist(),
        "noisy_counts": counts.tolist(), "noisy_means": means.tolist(),
    }  # fmt: skip
    atomic_write_json(path, json_safe(saved))
    return saved


def _noisy_arms(
    arms: list[dict[str, Any]], runs: list[dict[str, Any]], keys: list[str], metric: str,
    selection: dict[str, Any],
) -> list[dict[str, Any]]:  # fmt: skip
    """``arms`` with ``noisy_<metric>``: the mean over each arm's runs of their noisy means."""
    noisy = dict(zip(selection["runs"], selection["noisy_means"], strict=True))
    out = []
    for arm in arms:
        mine = [noisy[r["point_id"]] for r in runs if all(r.get(k) == arm.get(k) for k in keys)]
        out.append({**arm, f"noisy_{metric}": float(np.mean(mine)) if mine else math.nan})
    return out


def minimal_toml(cfg: Config) -> str:
    """``cfg`` as TOML holding only what differs from the defaults, plus ``name``, ``seed``,
    ``evaluation.split`` and the ``[sweep]`` section (like the hand-written configs), so that
    keys of unrelated sections never pin their current defaults. Falls back to the full text
    when the short one would not load back to the same config."""
    full, default = to_toml(cfg), to_toml(Config())
    seen, section = set(), ""
    for line in default.splitlines():
        section = line if line.startswith("[") else section
        seen.add((section, line))
    kept: list[tuple[str, str]] = []
    section = ""
    for line in full.splitlines():
        if line.startswith("[") or not line.strip():
            section = line if line.startswith("[") else section
            continue
        always = section in ("", "[sweep]") or (section, line.split(" =")[0]) == (
            "[evaluation]",
            "split",
        )
        if always or (section, line) not in seen:
            kept.append((section, line))
    out, current = [], None
    for section, line in kept:
        if section != current:
            out.append(f"\n{section}" if section else "")
            current = section
        out.append(line)
    text = "\n".join(x for x in out if x is not None).strip() + "\n"
    try:
        same = to_toml(from_dict(tomllib.loads(text))) == full
    except (ConfigError, tomllib.TOMLDecodeError):
        same = False
    return text if same else full


def _fmt(eps: float) -> str:
    return "inf (non-private)" if not math.isfinite(eps) else f"{eps:.3g}"


def _header(cfg: Config, arms: list[dict], chosen: dict, metric: str, cost: dict) -> str:
    keys = list(cfg.tune.grid)
    lines = [
        f"Chosen by `ppr tune` on the validation split at epsilon {cfg.tune.epsilon:g} "
        f"(seeds {list(cfg.tune.seeds)}; {metric}, mean over seeds):",
    ]
    for row in arms:
        mark = "  <- chosen" if all(row.get(k) == chosen.get(k) for k in keys) else ""
        vals = ", ".join(f"{k} = {row.get(k)}" for k in keys)
        lines.append(f"  {vals}: {row.get(metric, float('nan')):.4f}{mark}")
    lines.append("Privacy of the choice: " + cost["statement"] + ".")
    out = []
    for line in lines:  # wrap to the repository's line length
        while len(line) > 96:
            cut = line.rfind(" ", 0, 96)
            out.append(line[:cut])
            line = "  " + line[cut + 1 :]
        out.append(line)
    return "".join(f"# {line}\n" for line in out)


def run_tune(
    cfg: Config,
    tune_dir: str | Path,
    out_config: str | Path | None,
    *,
    workers: int | None = None,
    resume: bool = False,
    progress: Callable[[SweepProgress], None] | None = None,
) -> TuneResult:
    """Run (or resume) the tuning sweep of ``cfg`` in ``tune_dir``, pick the arm, and write the
    chosen config to ``out_config`` (``None``: do not write). Nothing is written to
    ``out_config`` unless every arm finished."""
    base = tuning_config(cfg)
    result = run_sweep(
        base, tune_dir, workers=workers, resume=resume, progress=progress, plot=False
    )
    metric = f"{cfg.tune.metric}@{cfg.evaluation.k}"
    keys = list(cfg.tune.grid)
    arms, selection, by = result.points, None, metric
    if cfg.tune.selection_epsilon > 0:
        selection = private_choice(cfg, result.runs, metric, Path(tune_dir))
        arms, by = _noisy_arms(arms, result.runs, keys, metric, selection), f"noisy_{metric}"
    best = pick_best(arms, by)
    values = {k: best[k] for k in keys}
    chosen = chosen_config(cfg, values)
    cost = tuning_cost(result.runs, cfg.privacy.accountant, selection)
    written = None
    if out_config is not None:
        text = _header(cfg, arms, best, by, cost) + minimal_toml(chosen)
        written = atomic_write_text(Path(out_config), text)
    return TuneResult(result, by, arms, values, chosen, written, cost)

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
   (ties: the first arm in grid order). Only validation numbers are read, never test ones;
3. the chosen config (:func:`chosen_config`): the input with the arm's values, ``evaluation.split
   = "test"`` and the ``[tune]`` section reset, written atomically with a comment header that
   records the arms and the privacy statement;
4. the privacy cost of the choice (:func:`tuning_cost`), printed next to ε (DESIGN.md, "Privacy
   semantics": tuning on private data costs privacy):

   * accounted part: every model trained while tuning is a release about the same users; their
     ledgers (``ledger.json`` of each run) composed with the accountant give ``arms_epsilon``,
     what publishing every tried arm's model would cost;
   * not included: the choice itself reads the validation positives directly (no DP mechanism
     covers it), so the ε of the runs of the chosen config does NOT include the tuning. The
     statement says so in words; nothing here pretends otherwise.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dp_accounting

from ppr.config import Config, from_dict, to_toml
from ppr.errors import ConfigError
from ppr.experiments.report import TUNING_NOTE
from ppr.experiments.sweep import SweepProgress, SweepResult, expand_grid, run_sweep
from ppr.io import atomic_write_text, json_safe
from ppr.privacy.accounting import epsilon_of
from ppr.privacy.ledger import load_ledger

__all__ = ["TuneResult", "chosen_config", "pick_best", "run_tune", "tuning_config", "tuning_cost"]

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


def tuning_cost(runs: list[dict[str, Any]], accountant: str) -> dict[str, Any]:
    """The privacy statement of a choice among ``runs`` (one row per run of the tuning sweep,
    with ``run_dir`` and ``delta``). ``arms_epsilon`` composes every run's ledger at the runs'
    δ summed (a basic-composition δ); the choice itself is not included in any ε."""
    events = [load_ledger(Path(r["run_dir"]) / "ledger.json").composed() for r in runs]
    deltas = [float(r["delta"] or 0.0) for r in runs]
    private = all(d > 0 for d in deltas) and bool(events)
    total_delta = float(sum(deltas)) if private else 0.0
    eps = (
        epsilon_of(dp_accounting.ComposedDpEvent(events), total_delta, accountant)
        if private
        else math.inf
    )
    return {
        "runs": len(runs),
        "arms_epsilon": json_safe(eps),
        "arms_delta": total_delta,
        "included_in_epsilon": False,
        "statement": (
            f"the choice among {len(runs)} tuning run(s) is NOT included in the epsilon of the "
            f"chosen config's runs ({TUNING_NOTE}); publishing every tried arm's model would "
            f"compose to epsilon {_fmt(eps)} at delta {total_delta:.3g}, and picking the arm "
            "reads validation positives directly, which no DP mechanism covers"
        ),
    }


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
    best = pick_best(result.points, metric)
    keys = list(cfg.tune.grid)
    values = {k: best[k] for k in keys}
    chosen = chosen_config(cfg, values)
    cost = tuning_cost(result.runs, cfg.privacy.accountant)
    written = None
    if out_config is not None:
        text = _header(cfg, result.points, best, metric, cost) + minimal_toml(chosen)
        written = atomic_write_text(Path(out_config), text)
    return TuneResult(result, metric, result.points, values, chosen, written, cost)

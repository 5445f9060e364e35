"""Grid sweeps: ε (including ∞) × seeds × optional other config keys, run in parallel, resumable.

Layout of a sweep directory ``out_dir``::

    sweep_config.toml          resolved base config (written first)
    points/<point_id>/         one run directory per (ε, grid values, seed): the files of
                               ``run_simulation`` (config.toml, metrics.jsonl, summary.json, ...)
                               and ``point.json``, the point's result, written atomically LAST,
                               after the run succeeded
    points.json, points.csv    aggregated rows (mean/std over seeds), one per (ε, grid values)
    runs.csv                   one row per run (per seed)
    recall_vs_epsilon.png      recall@k against ε (log axis), non-private and popularity lines

Invariants:

* A point's config is ``base.replace(privacy.epsilon=ε, seed=s, **grid values,
  baselines.centralized=False)`` with the ``sweep`` section reset to its defaults: the sweep
  section only describes the grid, so editing it (adding an ε or a seed) never invalidates the
  points already computed. ``baselines.centralized`` is off because it does not depend on ε; the
  non-private reference is the ε = ∞ point (a grid may still set ``baselines.centralized``).
* Every point's config is validated (schema, then the pipeline's cross-key checks) before
  anything is written or run.
* ``point.json`` exists only for a run that finished, and it holds the point's resolved config
  (TOML). On resume, a point counts as done only when its ``point.json`` parses and its config
  equals the point's config; any other point (missing, partial, corrupted, stale) is rerun from an
  empty directory.
* Resume refuses (``ConfigError`` naming the differing keys) when the directory was swept with a
  different base config outside the ``sweep`` section: mixing results from two configs in one
  table would be silently wrong, and rerunning everything would silently destroy them.
* Aggregated outputs are written only when every point of the current grid is done, and cover
  exactly the current grid (points left over from a larger earlier grid are kept on disk, unused).
* Parallel points run in ``spawn``-ed processes (JAX is not fork-safe); each worker gets
  ``cores // workers`` BLAS threads and, when that is 1, single-threaded XLA CPU (Eigen) kernels,
  so workers never oversubscribe the cores. One worker runs in-process.
* A failed point stops the sweep (pending points are cancelled, running ones finish and are saved)
  and its error is re-raised: a user error stays a :class:`~ppr.errors.PprError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import re
import shutil
import tomllib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from ppr.config import Config, from_dict, load_config, to_dict, to_toml
from ppr.errors import ConfigError, PprError
from ppr.reporting.io import (
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    json_safe,
    read_json,
)

__all__ = [
    "POINT_FILE",
    "SweepPoint",
    "SweepProgress",
    "SweepResult",
    "aggregate_runs",
    "auto_workers",
    "expand_grid",
    "point_config",
    "run_sweep",
]

POINT_FILE = "point.json"
SWEEP_CONFIG_FILE = "sweep_config.toml"
POINTS_DIR = "points"
_FORMAT = 1
_RESERVED_GRID_KEYS = {
    "privacy.epsilon": "sweep.epsilons",
    "seed": "sweep.seeds",
}


class SweepPoint(NamedTuple):
    """One run of the grid. ``grid`` holds ``(dotted key, resolved value)`` pairs in the order of
    ``sweep.grid``; ``point_id`` names its directory and is unique within the sweep."""

    index: int
    epsilon: float
    seed: int
    grid: tuple[tuple[str, Any], ...]
    point_id: str

    @property
    def overrides(self) -> dict[str, Any]:
        """The dotted-key overrides that turn the base config into this point's config."""
        return {"privacy.epsilon": self.epsilon, "seed": self.seed, **dict(self.grid)}

    def info(self) -> dict[str, Any]:
        """JSON-safe description (stored in ``point.json``)."""
        info = {"point_id": self.point_id, "epsilon": self.epsilon, "seed": self.seed}
        return json_safe({**info, "grid": dict(self.grid)})


class SweepProgress(NamedTuple):
    """What a sweep reports to its ``progress`` callback.

    ``kind`` is ``"start"`` once (``done`` = points already complete on resume), ``"point"`` after
    each finished point, and ``"round"`` during a point run in-process (``round``/``rounds``)."""

    kind: Literal["start", "round", "point"]
    done: int
    total: int
    point: SweepPoint | None = None
    round: int = 0
    rounds: int = 0


@dataclass(frozen=True)
class SweepResult:
    """Outcome of :func:`run_sweep`.

    ``points``: aggregated rows, one per (ε, grid values), JSON-safe (ε = ∞ is ``"inf"``), with
    ``epsilon``, ``noise_multiplier``, ``recall@K``/``ndcg@K`` (mean over seeds) and their
    ``_std`` (sample std, ``None`` for one seed), ``seeds``, the grid keys, the baselines'
    metrics (``popularity_recall@K``, ``private_popularity_recall@K`` ...) and
    ``upload_bytes_per_device``. ``runs``: one row per run (per seed), same fields without std.
    """

    out_dir: Path
    points: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    ran: int
    skipped: int
    files: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# grid


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _point_id(epsilon: float, seed: int, grid: Sequence[tuple[str, Any]]) -> str:
    raw = f"eps-{_fmt_value(epsilon)}_seed-{seed}" + "".join(
        f"_{k}-{_fmt_value(v)}" for k, v in grid
    )
    safe = re.sub(r"[^\w.+-]", "_", raw, flags=re.ASCII)
    if safe != raw or len(safe) > 120:
        digest = hashlib.sha1(raw.encode("utf-8")).hexdigest()[:8]
        safe = f"{safe[:110]}-{digest}"
    return safe


def _get_dotted(d: dict, key: str) -> Any:
    node: Any = d
    for part in key.split("."):
        node = node[part]
    return node


def _sweep_neutral(cfg: Config) -> Config:
    """``cfg`` with the ``sweep`` section reset: what identifies the runs of a sweep."""
    return cfg.replace(sweep={})


def _canonical(cfg: Config) -> str:
    """Comparison key of a config: its TOML text. (Dataclass equality is not enough: an
    unvalidated default such as ``"inf"`` compares unequal to the parsed ``math.inf``.)"""
    return to_toml(cfg)


def point_config(base: Config, point: SweepPoint) -> Config:
    """The validated config of one point (see the module invariants)."""
    return base.replace(**{"sweep": {}, "baselines.centralized": False, **point.overrides})


def expand_grid(cfg: Config) -> list[SweepPoint]:
    """All points of ``cfg.sweep``: ε (outer) × grid values (in key order) × seeds (inner).

    Every point's config is validated here, so a bad grid key or value raises
    :class:`~ppr.errors.ConfigError` naming it before anything runs."""
    sw = cfg.sweep
    epsilons = [float(e) for e in sw.epsilons]  # the default list holds the string "inf"
    for name, values in (("sweep.epsilons", epsilons), ("sweep.seeds", sw.seeds)):
        if len(set(values)) != len(values):
            raise ConfigError(f"`{name}` has duplicate values. Found {json_safe(list(values))}.")
    keys = list(sw.grid)
    for key in keys:
        if key in _RESERVED_GRID_KEYS:
            raise ConfigError(
                f"`sweep.grid` must not contain `{key}`; use `{_RESERVED_GRID_KEYS[key]}`."
            )
        if key == "sweep" or key.startswith("sweep."):
            raise ConfigError(f"`sweep.grid` must not contain `{key}`.")
        values = sw.grid[key]
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"`sweep.grid.{key}` must be a non-empty list of values. Found {values!r}."
            )
    # Validate and resolve every grid value once (e.g. 1 -> 1.0 for a float key).
    resolved: list[list[Any]] = []
    for key in keys:
        vals = []
        for v in sw.grid[key]:
            try:
                d = to_dict(cfg.replace(**{key: v}))
            except ConfigError as exc:
                raise ConfigError(f"sweep.grid: {exc}") from None
            vals.append(_get_dotted(d, key))
        if len({json.dumps(json_safe(x), sort_keys=True) for x in vals}) != len(vals):
            raise ConfigError(
                f"`sweep.grid.{key}` has duplicate values. Found {json_safe(sw.grid[key])}."
            )
        resolved.append(vals)
    points: list[SweepPoint] = []
    for eps in epsilons:
        for combo in itertools.product(*resolved):
            grid = tuple(zip(keys, combo, strict=True))
            for seed in sw.seeds:
                pid = _point_id(eps, seed, grid)
                points.append(SweepPoint(len(points), float(eps), int(seed), grid, pid))
    if len({p.point_id for p in points}) != len(points):  # only via hash-truncated ids
        raise ConfigError("sweep.grid: two points map to the same directory name.")
    for p in points:  # combinations may still be invalid together
        try:
            point_config(cfg, p)
        except ConfigError as exc:
            raise ConfigError(f"sweep point {p.point_id}: {exc}") from None
    return points


def auto_workers(requested: int = 0) -> int:
    """``requested`` if positive, else one worker per two usable cores (at least one)."""
    if requested < 0:
        raise ConfigError(f"`workers` must be >= 0. Found {requested}.")
    if requested > 0:
        return requested
    return max(1, _cores() // 2)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# one point


def _load_done(point_dir: Path, cfg: Config) -> dict | None:
    """The saved record of a finished point whose config equals ``cfg``, else None."""
    path = point_dir / POINT_FILE
    if not path.is_file():
        return None
    try:
        record = read_json(path)
        saved = from_dict(tomllib.loads(record["config"]))
        summary = record["summary"]
    except (OSError, ValueError, KeyError, TypeError, tomllib.TOMLDecodeError, ConfigError):
        return None
    if _canonical(saved) != _canonical(cfg) or not isinstance(summary, dict):
        return None
    if record.get("format") != _FORMAT:
        return None
    return record


def _run_point(
    cfg: Config,
    point_dir: str,
    info: dict[str, Any],
    progress: Callable[[int, int, Any], None] | None = None,
) -> dict[str, Any]:
    """Run one point into a fresh ``point_dir``; write ``point.json`` last. Runs in a worker."""
    from ppr.pipeline import run_simulation

    pdir = Path(point_dir)
    if pdir.exists():  # a stale or partial earlier attempt
        shutil.rmtree(pdir)
    # run_simulation writes into a hidden partial directory and renames it to pdir when done.
    res = run_simulation(cfg, run_dir=pdir, progress=progress)
    record = {"format": _FORMAT, "point": info, "config": to_toml(cfg),
              "summary": json_safe(res.summary)}  # fmt: skip
    atomic_write_json(pdir / POINT_FILE, record)
    return record


@contextlib.contextmanager
def _worker_env(workers: int) -> Iterator[None]:
    """Environment inherited by the spawned workers: a fair share of the cores each.

    Set in the parent while the workers are spawned (so it is in place before anything in the
    child imports numpy or jax), restored afterwards."""
    threads = max(1, _cores() // workers)
    env = {v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS") if v not in os.environ}  # fmt: skip
    xla = os.environ.get("XLA_FLAGS", "")
    if threads == 1 and "xla_cpu_multi_thread_eigen" not in xla:
        env["XLA_FLAGS"] = f"{xla} --xla_cpu_multi_thread_eigen=false".strip()
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _RoundRelay(NamedTuple):
    """``run_simulation``'s progress callback -> the sweep's round events for one point."""

    on_round: Callable[[SweepPoint, int, int], None]
    point: SweepPoint

    def __call__(self, r: int, n: int, _info: Any = None) -> None:
        self.on_round(self.point, r, n)


def _reraise(point: SweepPoint, exc: BaseException) -> None:
    if isinstance(exc, PprError):
        raise type(exc)(f"sweep point {point.point_id}: {exc}") from None
    raise RuntimeError(f"sweep point {point.point_id} failed: {exc!r}") from exc


def _execute(
    tasks: list[tuple[SweepPoint, Config, Path]],
    workers: int,
    on_done: Callable[[SweepPoint, dict], None],
    on_round: Callable[[SweepPoint, int, int], None] | None,
) -> None:
    if workers <= 1:
        for point, cfg, pdir in tasks:
            cb = None if on_round is None else _RoundRelay(on_round, point)
            try:
                record = _run_point(cfg, str(pdir), point.info(), cb)
            except Exception as exc:
                _reraise(point, exc)
            on_done(point, record)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        pending: dict[Future, SweepPoint] = {}
        try:
            with _worker_env(workers):  # workers are spawned on submit
                for point, cfg, pdir in tasks:
                    pending[ex.submit(_run_point, cfg, str(pdir), point.info())] = point
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: pending[f].index):
                    point = pending.pop(fut)
                    exc = fut.exception()
                    if exc is not None:
                        _reraise(point, exc)
                    on_done(point, fut.result())
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)
            raise


# --------------------------------------------------------------------------------------------
# rows


def _run_row(point: SweepPoint, cfg: Config, record: dict) -> dict[str, Any]:
    s = record["summary"]
    priv = s.get("privacy", {})
    comm = s.get("communication", {})
    row: dict[str, Any] = {
        "point_id": point.point_id,
        "epsilon": json_safe(point.epsilon),
        "seed": point.seed,
        **{k: json_safe(v) for k, v in point.grid},
        "k": cfg.evaluation.k,
        "noise_multiplier": priv.get("noise_multiplier"),
        "delta": priv.get("delta"),
        "epsilon_spent": priv.get("epsilon_spent"),
    }
    row.update(s.get("metrics", {}))
    for name, metrics in (s.get("baselines") or {}).items():
        for m, v in (metrics or {}).items():
            row[f"{name}_{m}"] = v
    row["upload_bytes_per_device"] = comm.get("upload_bytes_per_device")
    row["upload_bytes_total"] = comm.get("upload_bytes_total")
    row["total_s"] = (s.get("timing") or {}).get("total_s")
    row["run_dir"] = s.get("run_dir")
    return row


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, str):
        return math.inf if v == "inf" else None
    return float(v)


def _mean(vals: list[float]) -> float | None:
    return sum(vals) / len(vals) if vals else None


def _std(vals: list[float]) -> float | None:
    if len(vals) < 2:
        return None
    m = sum(vals) / len(vals)
    return math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


_NOT_AVERAGED = {"point_id", "epsilon", "seed", "k", "run_dir", "epsilon_spent"}


def aggregate_runs(
    runs: list[dict[str, Any]], grid_keys: Sequence[str], metric_keys: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per (ε, grid values), in first-seen order: numeric fields averaged over seeds,
    ``metric_keys`` (the run's own metrics) also get ``<key>_std``; ``epsilon_spent`` is the max
    over seeds. Missing values are skipped (a mean over none is ``None``)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        key = json.dumps([r["epsilon"], *[r.get(g) for g in grid_keys]], sort_keys=True)
        groups.setdefault(key, []).append(r)
    points: list[dict[str, Any]] = []
    for rows in groups.values():
        first = rows[0]
        p: dict[str, Any] = {"epsilon": first["epsilon"]}
        p.update({g: first.get(g) for g in grid_keys})
        p["k"] = first["k"]
        p["seeds"] = [r["seed"] for r in rows]
        p["n_seeds"] = len(rows)
        fields = [f for f in dict.fromkeys(k for r in rows for k in r)
                  if f not in _NOT_AVERAGED and f not in grid_keys]  # fmt: skip
        for f in fields:
            vals = [x for x in (_num(r.get(f)) for r in rows) if x is not None]
            p[f] = json_safe(_mean(vals))
            if f in metric_keys:
                p[f"{f}_std"] = json_safe(_std(vals))
        spent = [x for x in (_num(r.get("epsilon_spent")) for r in rows) if x is not None]
        p["epsilon_spent"] = json_safe(max(spent)) if spent else None
        points.append(p)
    return points


def _order_columns(rows: list[dict[str, Any]], first: Sequence[str]) -> list[str]:
    cols = list(dict.fromkeys([*first, *(k for r in rows for k in r)]))
    return [c for c in cols if any(c in r for r in rows)]


# --------------------------------------------------------------------------------------------
# the sweep


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _preflight(points: list[SweepPoint], configs: dict[str, Config]) -> None:
    """The pipeline's own cross-key checks on every point, before anything runs (a sweep
    should not fail after an hour on a combination it could have refused up front)."""
    from ppr.pipeline import check_config as check_run_config

    for p in points:
        try:
            check_run_config(configs[p.point_id])
        except ConfigError as exc:
            raise ConfigError(f"sweep point {p.point_id}: {exc}") from None


def _check_resumable(out_dir: Path, base: Config, resume: bool) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise PprError(f"{out_dir}: exists and is not a directory.")
    if not any(out_dir.iterdir()):
        return
    if not resume:
        raise PprError(
            f"{out_dir} already exists and is not empty; resume it (--resume) or choose another "
            "output directory."
        )
    saved_path = out_dir / SWEEP_CONFIG_FILE
    if not saved_path.is_file():
        raise PprError(f"{out_dir} is not a sweep directory (no {SWEEP_CONFIG_FILE}).")
    saved = _sweep_neutral(load_config(saved_path))
    current = _sweep_neutral(base)
    if _canonical(saved) != _canonical(current):
        a, b = _flat(to_dict(saved)), _flat(to_dict(current))
        diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        raise ConfigError(
            f"{out_dir} was swept with a different base config (differs in: {', '.join(diff)}); "
            "resume with the same config (only the [sweep] section may change) or choose another "
            "output directory."
        )


def run_sweep(
    cfg: Config,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    resume: bool = False,
    progress: Callable[[SweepProgress], None] | None = None,
    plot: bool = True,
) -> SweepResult:
    """Run (or, with ``resume``, complete) the sweep ``cfg.sweep`` of the base config ``cfg``
    into ``out_dir`` and write its reports. ``workers``: parallel points (None:
    ``cfg.sweep.workers``; 0: auto). Raises :class:`~ppr.errors.PprError` for a bad grid, a
    non-empty ``out_dir`` without ``resume``, or a resume with a different base config."""
    points = expand_grid(cfg)
    configs = {p.point_id: point_config(cfg, p) for p in points}
    _preflight(points, configs)
    out_dir = Path(out_dir)
    _check_resumable(out_dir, cfg, resume)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"sweep_config": atomic_write_text(out_dir / SWEEP_CONFIG_FILE, to_toml(cfg))}

    records: dict[str, dict] = {}
    tasks: list[tuple[SweepPoint, Config, Path]] = []
    for p in points:
        pdir = out_dir / POINTS_DIR / p.point_id
        rec = _load_done(pdir, configs[p.point_id]) if resume else None
        if rec is not None:
            records[p.point_id] = rec
        else:
            tasks.append((p, configs[p.point_id], pdir))
    skipped, total = len(records), len(points)
    if progress is not None:
        progress(SweepProgress("start", skipped, total))

    def on_done(point: SweepPoint, record: dict) -> None:
        records[point.point_id] = record
        if progress is not None:
            progress(SweepProgress("point", len(records), total, point))

    def on_round(point: SweepPoint, r: int, n: int) -> None:
        if progress is not None:
            progress(SweepProgress("round", len(records), total, point, r, n))

    n_workers = min(auto_workers(cfg.sweep.workers if workers is None else workers),
                    max(1, len(tasks)))  # fmt: skip
    _execute(tasks, n_workers, on_done, on_round if progress is not None else None)

    runs = [_run_row(p, configs[p.point_id], records[p.point_id]) for p in points]
    grid_keys = list(cfg.sweep.grid)
    metric_keys = sorted({m for p in points for m in records[p.point_id]["summary"]
                          .get("metrics", {})})  # fmt: skip
    agg = aggregate_runs(runs, grid_keys, metric_keys)
    first = ["epsilon", "noise_multiplier", *grid_keys]
    files["points_json"] = atomic_write_json(out_dir / "points.json", agg)
    files["points_csv"] = atomic_write_csv(out_dir / "points.csv", agg, _order_columns(agg, first))
    run_cols = _order_columns(runs, ["point_id", "epsilon", "seed", *grid_keys])
    files["runs_csv"] = atomic_write_csv(out_dir / "runs.csv", runs, run_cols)
    if plot:
        from ppr.reporting.plots import plot_recall_vs_epsilon

        files["plot"] = plot_recall_vs_epsilon(agg, out_dir / "recall_vs_epsilon.png", grid_keys)
    return SweepResult(out_dir, agg, runs, ran=len(tasks), skipped=skipped, files=files)

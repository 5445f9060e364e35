"""`ppr sweep [CONFIG]`: a grid over ε (including ∞) × seeds × optional other config keys.

The grid is the config's ``[sweep]`` section (``epsilons``, ``seeds``, ``grid`` of dotted keys ->
values, ``workers``); ``--set`` overrides any key, e.g. ``--set 'sweep.epsilons=["inf", 2.0]'``.
Points run in parallel processes (``--workers``, default: one per two cores). Everything lands in
``--out DIR`` (default ``<output.runs_dir>/sweep-<name>-<timestamp>``): one run directory per point
under ``points/``, then ``points.json``, ``points.csv``, ``runs.csv`` and
``recall_vs_epsilon.png``. A sweep killed mid-way is completed by ``--out DIR --resume``: only the
points without a finished result (for the same config) run again; resuming with a different base
config (outside ``[sweep]``) is refused. Progress goes to stderr; ``--json`` prints one JSON object
(``points``: ε, noise multiplier, recall@k mean/std, seeds, ...) on stdout and nothing else there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ppr.config import EMBEDDED_DEFAULT, Config, load_config
from ppr.errors import PprError
from ppr.experiments.report import TUNING_NOTE
from ppr.experiments.sweep import SweepProgress, run_sweep
from ppr.reporting import sweep_table

from ._common import (
    ConfigArg,
    SetOpt,
    ctrl_c_checkpoint,
    guarded,
    print_json,
    stop_progress,
)


def default_out_dir(cfg: Config) -> Path:
    """A fresh ``<output.runs_dir>/sweep-<name>-<YYYYmmdd-HHMMSS>[-n]``."""
    base = Path(cfg.output.runs_dir) / f"sweep-{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


@guarded
def sweep(
    config: ConfigArg = None,
    set_: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Sweep directory (default: a new one under runs/)."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the sweep in --out DIR: run only missing points."),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", help="Points run in parallel (0: one per two cores)."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the points as one JSON object on stdout.")
    ] = False,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Skip recall_vs_epsilon.png.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Sweep ε × seeds (× other keys): recall@k / NDCG@k table, CSV, JSON and a plot."""
    if config is None:  # the embedded default, in the fast plaintext mode (same numbers as CKKS)
        cfg = load_config(EMBEDDED_DEFAULT, ["aggregation.mode='plaintext'", *(set_ or [])])
    else:
        cfg = load_config(config, set_ or [])
    if resume and out is None:
        raise PprError("--resume needs --out DIR (the sweep directory to continue).")
    if workers is not None and workers < 0:
        raise PprError(f"`--workers` must be >= 0. Found {workers}.")
    out_dir = out if out is not None else default_out_dir(cfg)

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )
    points_task = bar.add_task("points", total=None, info="")
    rounds_task = bar.add_task("rounds", total=None, info="", visible=False)

    def progress(ev: SweepProgress) -> None:
        check_interrupt()
        if ev.kind == "start":  # everything validated: only now draw (errors stay one line)
            info = f"{ev.done} already done" if ev.done else ""
            bar.update(points_task, total=ev.total, completed=ev.done, info=info)
            bar.start()
        elif ev.kind == "round" and ev.point is not None:
            bar.update(rounds_task, total=ev.rounds, completed=ev.round, info=ev.point.point_id,
                       visible=True)  # fmt: skip
        elif ev.kind == "point" and ev.point is not None:
            bar.update(points_task, completed=ev.done, info=f"done {ev.point.point_id}")

    try:
        with ctrl_c_checkpoint() as check_interrupt:
            result = run_sweep(cfg, out_dir, workers=workers, resume=resume, progress=progress,
                               plot=not no_plot)  # fmt: skip
        bar.update(rounds_task, visible=False)
    except KeyboardInterrupt:
        stop_progress(bar)
        # One line, unwrapped: finished points are on disk (each written atomically).
        sys.stderr.write(
            f"interrupted: finished points are kept in {out_dir}; the same command with "
            f"--out {out_dir} --resume runs only the missing ones\n"
        )
        raise typer.Exit(code=130) from None
    finally:
        stop_progress(bar)

    if json_out:
        print_json({"out_dir": str(result.out_dir), "ran": result.ran, "skipped": result.skipped,
                    "points": result.points, "not_included_in_epsilon": TUNING_NOTE})  # fmt: skip
        return
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: do not squeeze the table into 80 columns
        console = Console(width=160)
    console.print(sweep_table(result.points, list(cfg.sweep.grid), title=f"sweep {cfg.name}"))
    console.print(f"{result.ran} point(s) run, {result.skipped} reused; upload: bytes per device "
                  "per round")  # fmt: skip
    console.print(
        "epsilon is per point; picking a point or arm from this table on validation data of the "
        f"same users is not included in it ({TUNING_NOTE}); metrics are diagnostics",
        soft_wrap=True,
    )
    for name, path in result.files.items():
        console.print(f"{name}: {path}")

"""`ppr periodic CONFIG [--windows N] [--out DIR]`: model versions retrained over time windows.

The log's positives are cut by timestamp into N windows (``periodic.windows``; equal numbers of
positives); version v trains on the devices' data up to window v (``periodic.history``) starting
from version v-1's item matrix, and is evaluated on window v+1. Every version is a run directory
under ``DIR/versions/``; ``DIR/versions.json`` holds per version its window, devices, ε and
recall on the next window; ``DIR/ledger_versions.json`` (trusted side) composes, per user, every
version that used the user's data. ``--out DIR --resume`` continues an interrupted run (finished
versions are read back; an interrupted version continues from its last round). Bad input: one
line on stderr, exit 2; Ctrl-C: one line, exit 130.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ppr.config import load_config
from ppr.errors import PprError
from ppr.experiments.periodic import run_periodic

from ._common import SetOpt, ctrl_c_checkpoint, guarded, print_json


@guarded
def periodic(
    config: Annotated[Path, typer.Argument(help="TOML config (data with timestamps).")],
    windows: Annotated[
        int | None, typer.Option("--windows", "-n", help="Time windows (overrides the config).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (default: a new one under runs/)."),
    ] = None,
    set_: SetOpt = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the run in --out DIR (same CONFIG and --set)."),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the versions as one JSON object on stdout.")
    ] = False,
) -> None:
    """Retrain a model version per time window; compose each user's ε across versions."""
    if windows is not None and windows < 2:
        raise PprError(f"`--windows` must be >= 2. Found {windows}.")
    if resume and out is None:
        raise PprError("--resume needs --out DIR (the periodic directory to continue).")
    cfg = load_config(config, set_ or [])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = out if out is not None else Path(cfg.output.runs_dir) / f"periodic-{cfg.name}-{stamp}"

    def progress(v: int, n: int) -> None:
        if not json_out:
            sys.stderr.write(f"version {v + 1}/{n}\n")

    try:
        with ctrl_c_checkpoint() as check_interrupt:
            result = run_periodic(
                cfg, out_dir, windows=windows, resume=resume, progress=progress,
                on_round=lambda *_: check_interrupt(),
            )  # fmt: skip
    except KeyboardInterrupt:
        sys.stderr.write(  # one line, unwrapped
            f"interrupted: finished versions are kept in {out_dir}; the same command with "
            f"--out {out_dir} --resume continues (an interrupted version from its last round)\n"
        )
        raise typer.Exit(code=130) from None
    used = result.eligible.any(axis=0)
    users = {
        "with_data": int(used.sum()),
        "epsilon_max": float(result.user_epsilon[used].max()) if used.any() else 0.0,
    }
    if json_out:
        print_json({"out_dir": str(out_dir), "versions": result.versions, "users": users})
        return
    console = Console(width=160)
    k = cfg.evaluation.k
    for row in result.versions:
        console.print(
            f"version {row['version']}: {row['devices']} devices, epsilon {row['epsilon']:.3g}, "
            f"recall@{k} on the next window {row[f'recall@{k}']:.4f} "
            f"(popularity {row[f'popularity_recall@{k}']:.4f})"
        )
    console.print(
        f"users with data: {users['with_data']}; the largest user epsilon across versions: "
        f"{users['epsilon_max']:.3g} (each version's own target: {cfg.privacy.epsilon:g})"
    )
    console.print(f"written: {out_dir}")

"""`ppr tune CONFIG --out FILE`: a validation sweep that picks the arm and writes the sweep config.

The arms are the config's ``[tune]`` section (``epsilon``, ``seeds``, ``grid`` of dotted keys ->
values, ``metric``); each arm runs on the validation split at ``tune.epsilon``. The best arm (mean
validation metric over the seeds) is written to ``--out`` as a config for ``ppr sweep`` (the
arm's values, the test split, the input's ``[sweep]`` section), with the arms and the privacy
statement of the choice in its comment header. The runs land in ``--dir`` (default
``<output.runs_dir>/tune-<name>``); a tuning killed mid-way is completed by the same command with
``--resume``. The command prints what the choice costs in privacy: the composed ε of every model
trained while tuning, and that the choice is NOT included in the ε of the chosen config's runs,
or, with ``tune.selection_epsilon > 0``, the ε of the whole tuning with the noisy choice included.
Bad input: one line on stderr, exit 2, nothing written to ``--out``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ppr.config import load_config
from ppr.errors import PprError
from ppr.experiments.sweep import SweepProgress
from ppr.experiments.tune import run_tune

from ._common import SetOpt, ctrl_c_checkpoint, guarded, print_json


@guarded
def tune(
    config: Annotated[Path, typer.Argument(help="TOML config with a [tune] section.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to write the chosen config (for `ppr sweep`)."),
    ] = None,
    set_: SetOpt = None,
    tune_dir: Annotated[
        Path | None,
        typer.Option("--dir", help="Tuning runs directory (default <runs_dir>/tune-<name>)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the tuning in --dir: run missing arms.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", help="Arms run in parallel (0: auto).")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")
    ] = False,
) -> None:
    """Choose hyper-parameters on the validation split; write the chosen sweep config."""
    cfg = load_config(config, set_ or [])
    if workers is not None and workers < 0:
        raise PprError(f"`--workers` must be >= 0. Found {workers}.")
    if out is not None and out.exists() and not out.is_file():
        raise PprError(f"{out}: exists and is not a file.")
    directory = tune_dir if tune_dir is not None else Path(cfg.output.runs_dir) / f"tune-{cfg.name}"

    def progress(ev: SweepProgress) -> None:
        check_interrupt()
        if ev.kind == "point" and ev.point is not None and not json_out:
            sys.stderr.write(f"arm {ev.done}/{ev.total} done: {ev.point.point_id}\n")

    with ctrl_c_checkpoint() as check_interrupt:
        result = run_tune(cfg, directory, out, workers=workers, resume=resume, progress=progress)
    if json_out:
        print_json(
            {
                "tune_dir": str(directory),
                "metric": result.metric,
                "arms": result.arms,
                "chosen": result.chosen,
                "written": str(result.written) if result.written else None,
                "privacy": result.cost,
                "diagnostics": "the arms' exact validation metrics are non-private diagnostics"
                + ("; the choice used only the noisy ones" if result.cost["included_in_epsilon"]
                   else ""),
            }
        )
        return
    console = Console(width=160) if not Console().is_terminal else Console()
    for row in result.arms:
        vals = ", ".join(f"{k}={row.get(k)}" for k in cfg.tune.grid)
        console.print(f"{vals}: {result.metric} {row.get(result.metric):.4f}")
    console.print(f"chosen: {result.chosen}")
    console.print(f"privacy of the choice: {result.cost['statement']}", soft_wrap=True)
    if result.written is not None:
        console.print(f"written: {result.written} (run it with `ppr sweep {result.written}`)")

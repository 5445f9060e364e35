"""`ppr simulate [CONFIG]`: one federated run, end to end.

With no CONFIG it runs the embedded default (``configs/default.toml``, shipped in the package:
synthetic data, CKKS aggregation, an accounted ε). ``--set key=value``
overrides any config key. A progress bar per round goes to stderr; a results table at the end; the
run directory ``<output.runs_dir>/<name>-<timestamp>/`` holds ``config.toml``, ``metrics.jsonl``,
``summary.json`` and ``ledger.json``; an interrupted run stays in a hidden ``.<name>.partial``
directory with a per-round checkpoint and ``--resume DIR`` finishes it. ``--json`` prints the
summary as one JSON object on stdout and nothing else there.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ppr.config import EMBEDDED_DEFAULT, load_config
from ppr.errors import ConfigError
from ppr.experiments import RunSummary
from ppr.experiments import resume as resume_run
from ppr.experiments import simulate as run_simulation

from ._common import (
    ConfigArg,
    SetOpt,
    ctrl_c_checkpoint,
    guarded,
    print_json,
    stop_progress,
)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if math.isfinite(v) else str(v)
    return str(v)


def results_table(summary: RunSummary) -> Table:
    """Metrics of the run and its baselines, one row each (diagnostics: raw held-out data)."""
    metric_keys = [k for k in summary.metrics if k != "evaluated_users"]
    table = Table(
        title=f"{summary.name} · evaluated on {summary.evaluated_on}",
        caption="metrics are diagnostics on raw held-out data: not covered by epsilon",
    )
    table.add_column("model")
    for key in metric_keys:
        table.add_column(key, justify="right")
    fed = "federated MF" + (" (CKKS)" if summary.communication.mode == "ckks" else "")
    table.add_row(fed, *(_fmt(summary.metrics[k]) for k in metric_keys))
    for name, m in summary.baselines.items():
        table.add_row(name.replace("_", " "), *(_fmt(m.get(k, "")) for k in metric_keys))
    return table


def privacy_lines(summary: RunSummary) -> list[str]:
    """The guarantee as the ledger states it, with what it does not cover."""
    p = summary.privacy
    if not p.private:
        return ["privacy: none (epsilon = inf; the ledger says inf)"]
    lines = [
        f"privacy: ({_fmt(p.epsilon_spent)}, {p.delta:g})-DP at user level [{p.accountant}], "
        f"{p.rounds_released} rounds released, noise multiplier {p.noise_multiplier:.4g}, "
        f"clip {p.clip_norm:g}",
        f"noise: {p.randomness}",
    ]
    if p.not_included:
        lines.append(f"not included in epsilon: {p.not_included}")
    return lines


@guarded
def simulate(
    config: ConfigArg = None,
    set_: SetOpt = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object on stdout.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume", help="Continue an interrupted run from its .<name>.partial directory."
        ),
    ] = None,
) -> None:
    """Run one federated simulation and report recall@k / NDCG@k against the baselines."""
    if resume is not None and (config is not None or set_):
        raise ConfigError("--resume takes the run's own config.toml: give no CONFIG or --set.")
    source = resume / "config.toml" if resume else (config or EMBEDDED_DEFAULT)
    cfg = load_config(source, set_ or [])
    err = Console(stderr=True)
    show = not quiet and not json_out
    bar = Progress(
        TextColumn("[bold]round"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=err,
        disable=not show,
        transient=False,
    )
    task = bar.add_task("rounds", total=cfg.federated.rounds, info="", start=False)

    def progress(done: int, total: int, rec: dict) -> None:
        check_interrupt()
        if not bar.live.is_started:  # drawn from the first round on: input errors stay one line
            bar.start()
            bar.start_task(task)
        curve = rec.get(cfg.evaluation.split, {})
        extra = f" recall {curve[f'recall@{cfg.evaluation.k}']:.4f}" if curve else ""
        bar.update(
            task,
            completed=done,
            info=f"participants {rec['accepted']}, |Δ| {rec['mean_norm']:.3g}{extra}",
        )

    try:
        with ctrl_c_checkpoint() as check_interrupt:
            if resume is not None:
                result = resume_run(resume, progress=progress)
            else:
                result = run_simulation(cfg, progress=progress)
    except KeyboardInterrupt as exc:
        stop_progress(bar)
        notes = "; ".join(getattr(exc, "__notes__", []))
        sys.stderr.write(f"interrupted{': ' + notes if notes else ''}\n")  # one line, unwrapped
        raise typer.Exit(code=130) from None
    finally:
        stop_progress(bar)
    summary = result.summary
    if json_out:
        print_json(summary.to_dict())
        return
    out = Console()
    out.print(results_table(summary))
    for line in privacy_lines(summary):
        out.print(escape(line), soft_wrap=True)
    comm, timing = summary.communication, summary.timing
    out.print(
        f"upload: {comm.upload_bytes_per_device / 1e3:,.1f} kB per device per round "
        f"({comm.mode}); {timing.total_s:.1f} s, peak memory {timing.peak_rss_mib:,.0f} MiB "
        "(diagnostics)"
    )
    out.print(f"run directory: {summary.run_dir}", soft_wrap=True)

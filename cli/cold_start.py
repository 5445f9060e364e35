"""`ppr cold-start --run RUN [--json] [--plot FILE]`: recall@k of new users (never in training).

Methods, all computed on the device from the run's DP releases (:mod:`ppr.experiments.coldstart`):
(a) global private popularity, (b) the cohort prior, (c) after the first n = 1, 3, 5, 10
interactions, the on-device fold-in alone and blended with the prior. The run must have been
simulated with ``split.protocol = "held_out_users"`` and ``cold_start.enabled = true``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ppr.experiments.coldstart import evaluate_cold_start, plot_cold_start

from ._common import guarded, print_json


@guarded
def cold_start(
    run: Annotated[Path, typer.Option("--run", help="A finished run with cohorts.json.")],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also draw recall@k against n to this PNG.")
    ] = None,
) -> None:
    """Cold-start recall@k of held-out users: global vs cohort popularity vs fold-in."""
    res = evaluate_cold_start(run)
    if plot is not None:
        plot_cold_start(res, plot)
    if json_out:
        print_json(res.to_dict())
        return
    info, k = res.info, res.k
    title = (
        f"cold start · {info['new_users']} new users · {info['kind']} cohorts · "
        f"cohort ε = {info['epsilon_cohorts']:g}"
    )
    table = Table(title=escape(title))
    for col in ("method", "n", f"recall@{k}", f"ndcg@{k}"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in res.rows:
        table.add_row(r["method"], str(r["n"]), f"{r['recall']:.4f}", f"{r['ndcg']:.4f}")
    out = Console()
    out.print(table)
    out.print(
        escape(
            f"cohorts released: {info['cohorts_released']} of {info['cohort_domain']} "
            f"(noisy size >= K = {info['min_cohort_size']}; a cohort of K/2 passes with "
            f"probability {info['pass_probability_half_k']:.3g}); new users with a released "
            f"cohort: {info['new_users_with_released_cohort']}; size noise std "
            f"{info['noise_multiplier']:.3g}, count noise std {info['count_noise_std']:.3g}; "
            f"run ε (all releases) {info['epsilon_run']}; noise: {info['noise']}"
        ),
        soft_wrap=True,
    )
    if plot is not None:
        out.print(escape(f"plot: {plot}"))

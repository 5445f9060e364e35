"""`ppr evaluate --run RUN --serving exact|local|hybrid`: one serving mode on the run's test data.

``exact``: full-server scoring (the released float32 matrix, exact scan); ``local``: the device's
compressed matrix and local index within ``serving.device_budget_mb``; ``hybrid``: local
candidates refined by the server on the encrypted user vector. Each device ranks through the same
recommender interface; recall@k and NDCG@k use the run's protocol (own items excluded), with the
device's bytes (model and index) and the latency per request (p50 / p95). ``--json``: one JSON
object on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ppr.errors import PprError
from ppr.experiments.serving import MODES, evaluate_serving, open_run

from ._common import guarded, print_json


@guarded
def evaluate(
    run: Annotated[Path, typer.Option("--run", help="A finished run directory (with its model).")],
    serving: Annotated[
        str, typer.Option("--serving", help=f"Serving mode: {' | '.join(MODES)}.")
    ] = "local",
    server: Annotated[
        str | None, typer.Option("--server", help="URL of a running `ppr serve` (hybrid).")
    ] = None,
    max_users: Annotated[
        int | None, typer.Option("--max-users", min=1, help="Evaluate only the first N users.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Recall@k, NDCG@k, device bytes and latency of one serving mode."""
    if serving not in MODES:
        raise PprError(f"--serving must be one of {', '.join(MODES)}, not {serving!r}")
    res = evaluate_serving(open_run(run), serving, server, max_users)
    if json_out:
        print_json(res)
        return
    k = res["k"]
    table = Table(title=f"{serving} serving · {res['evaluated_on']} split · {res['run']}")
    for col in (f"recall@{k}", f"ndcg@{k}", "users", "device MiB", "p50 ms", "p95 ms"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{res[f'recall@{k}']:.4f}",
        f"{res[f'ndcg@{k}']:.4f}",
        str(res["evaluated_users"]),
        f"{res['device_bytes'] / 2**20:.3f}",
        f"{res['latency']['p50_ms']:.3f}",
        f"{res['latency']['p95_ms']:.3f}",
    )
    out = Console()
    out.print(table)
    if "format" in res:
        out.print(
            escape(
                f"device: {res['format']} matrix, {res['index']} index, "
                f"budget {res['budget_mb']:g} MiB"
            )
        )
    if "requests" in res:
        out.print(escape(f"requests: {res['requests']}"), soft_wrap=True)

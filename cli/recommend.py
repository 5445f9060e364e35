"""`ppr recommend --run RUN --user U`: the user's recommendations, served on their device.

The device holds the run's released item matrix (compressed to fit ``serving.device_budget_mb``)
and its own items, solves its user vector locally and ranks with its local index; items the user
already has are never shown. ``--refine`` re-ranks the local candidates with the server's scores
computed on the device's encrypted user vector (hybrid serving; in-process unless ``--server``
names a running ``ppr serve``). ``--explain`` lists, per item, the user's own items that
contribute most to its score. ``--json`` prints one JSON object on stdout and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ppr.errors import PprError
from ppr.experiments.serving import open_run, recommend_for_user

from ._common import guarded, print_json

RunOpt = Annotated[Path, typer.Option("--run", help="A finished run directory (with its model).")]
UserOpt = Annotated[str, typer.Option("--user", help="The user's id as in the data set.")]


def _label(row: dict) -> str:
    title = row.get("title")
    return f"{row['item']} {title}" if title else str(row["item"])


def _table(res: dict, explain: bool) -> Table:
    table = Table(
        title=f"user {res['user']} · {res['mode']} serving · {res['format']} {res['index']}",
        caption=f"model {res['model_version']}; {res['own_items']} own items never shown",
    )
    for col, just in (("#", "right"), ("item", "left"), ("score", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    if explain:
        table.add_column("because you have (share of score)")
    for r, row in enumerate(res["items"], 1):
        cells = [str(r), escape(_label(row)), f"{row['score']:.4f}"]
        if explain:
            ex = row["explanation"]
            parts = [f"{_label(c)} ({c['share']:+.3f})" for c in ex["contributions"]]
            parts.append(f"others ({ex['others']:+.3f})")
            cells.append(escape("; ".join(parts)))
        table.add_row(*cells)
    return table


@guarded
def recommend(
    run: RunOpt,
    user: UserOpt,
    k: Annotated[int | None, typer.Option("--k", min=1, help="How many items.")] = None,
    refine: Annotated[
        bool,
        typer.Option("--refine/--no-refine", help="Let the server refine the local ranking."),
    ] = False,
    server: Annotated[
        str | None, typer.Option("--server", help="URL of a running `ppr serve` (with --refine).")
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Add each item's top contributing own items.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Recommend items to one user from their device (titles where the data has them)."""
    if server is not None and not refine:
        raise PprError("--server names the refinement server: use it with --refine")
    res = recommend_for_user(open_run(run), user, k, refine, server, explain)
    if json_out:
        print_json(res)
        return
    Console().print(_table(res, explain))

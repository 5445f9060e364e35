"""`ppr explain --run RUN --user U --item I`: why the user's device scores an item as it does.

With the closed-form user vector ``p_u = W_u (1 + alpha) sum_{j in u} q_j`` the score of item
``i`` splits exactly into one share per own item ``j``, ``(1 + alpha) q_i^T W_u q_j``; the shares
add up to the score. The top ``--top`` own items are listed, the rest summed as "others".
``W_u`` depends on all the user's items, so a share is not the exact effect of removing that
item (see ``docs/serving.md``). Computed on the device from the released model and the
user's own items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ppr.experiments.serving import explain_for_user, open_run

from ._common import guarded, print_json

RunOpt = Annotated[Path, typer.Option("--run", help="A finished run directory (with its model).")]


def _label(row: dict) -> str:
    title = row.get("title")
    return f"{row['item']} {title}" if title else str(row["item"])


@guarded
def explain(
    run: RunOpt,
    user: Annotated[str, typer.Option("--user", help="The user's id as in the data set.")],
    item: Annotated[str, typer.Option("--item", help="The item's id as in the data set.")],
    top: Annotated[
        int | None, typer.Option("--top", min=0, help="Own items listed (0: all).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Split an item's score for a user into the shares of the user's own items."""
    res = explain_for_user(open_run(run), user, item, top)
    if json_out:
        print_json(res)
        return
    out = Console()
    own = " (one of the user's own items)" if res["own_item"] else ""
    out.print(escape(f"user {res['user']}, item {_label(res)}{own}: score {res['score']:.6f}"))
    table = Table(caption=f"shares add up to the score ({res['shares_sum']:.6f})")
    table.add_column("own item")
    table.add_column("share", justify="right")
    table.add_column("% of score", justify="right")
    denom = res["score"] if res["score"] != 0 else 1.0
    for c in res["contributions"]:
        table.add_row(escape(_label(c)), f"{c['share']:+.6f}", f"{100 * c['share'] / denom:.1f}")
    rest = res["own_items"] - len(res["contributions"])
    if rest:
        table.add_row(
            f"{rest} others", f"{res['others']:+.6f}", f"{100 * res['others'] / denom:.1f}"
        )
    out.print(table)
    if res["prior"]:
        out.print(
            f"ranking score {res['ranking_score']:.6f} = {res['score']:.6f} from your items "
            f"{res['prior']:+.6f} from private popularity (a DP aggregate over all users)"
        )

"""`ppr transparency --run RUN --user U`: what a user's device holds, sent and spent.

Shows what the device holds and uses, every kind of message that left it (bytes, encrypted or
not, the rounds it took part in: from the device's own log), the user-level ε and δ it spent
(and whether the noise was secret), the user's settings and the explanations of the current top
recommendations. ``--json`` / ``--markdown`` print that on stdout; ``--html FILE`` writes one
self-contained page (inline CSS and SVG chart, no external asset: it opens without a server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ppr.errors import PprError
from ppr.experiments.transparency import gather
from ppr.io import atomic_write_text
from ppr.reporting.transparency import to_html, to_markdown

from ._common import guarded, print_json

RunOpt = Annotated[Path, typer.Option("--run", help="A finished run directory (with its model).")]
UserOpt = Annotated[str, typer.Option("--user", help="The user's id as in the data set.")]


@guarded
def transparency(
    run: RunOpt,
    user: UserOpt,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Markdown on stdout.")] = False,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML page here.")
    ] = None,
) -> None:
    """Show a user what their device holds, what left it and the privacy it spent."""
    if sum([json_out, markdown, html_file is not None]) > 1:
        raise PprError("choose one of --json, --markdown and --html")
    if html_file is not None and not html_file.parent.is_dir():
        raise PprError(f"{html_file.parent}: no such directory for the --html page")
    page = gather(run, user)
    if json_out:
        print_json(page)
    elif html_file is not None:
        atomic_write_text(html_file, to_html(page))
        typer.echo(f"wrote {html_file}")
    else:
        typer.echo(to_markdown(page), nl=False)

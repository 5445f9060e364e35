"""`ppr serve --run RUN [--host 127.0.0.1] [--port N]`: the refinement server of a run.

Serves server-side refinement on ciphertext for the run's released model over HTTP
(:mod:`ppr.serving.http`; Starlette on uvicorn) until interrupted. The server holds no secret key
and logs no payload. Bad input (no run directory, no released model, a bad port): one line on
stderr, exit 2, before anything listens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ppr.errors import PprError

from ._common import fail, guarded


@guarded
def serve(
    run: Annotated[Path, typer.Option("--run", help="Run directory holding model.msgpack.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (1..65535).")] = 8000,
) -> None:
    """Serve refinement on ciphertext for RUN's model (hybrid serving)."""
    from ppr.serving.http import create_app, service_for_run

    if not run.is_dir():
        raise PprError(f"{run}: run directory does not exist")
    if not 1 <= port <= 65535:
        raise fail(f"`port` must be in 1..65535. Found {port}.")
    app = create_app(service_for_run(run))
    import uvicorn

    typer.echo(f"ppr serve: model {app.state.version} on http://{host}:{port}", err=True)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")

"""Entry point of the `ppr` command line."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import typer

from . import cold_start as cold_start_cmd
from . import data as data_cmd
from . import evaluate as evaluate_cmd
from . import explain as explain_cmd
from . import periodic as periodic_cmd
from . import privacy as privacy_cmd
from . import recommend as recommend_cmd
from . import serve as serve_cmd
from . import simulate as simulate_cmd
from . import sweep as sweep_cmd
from . import transparency as transparency_cmd
from . import tune as tune_cmd

app = typer.Typer(
    name="ppr",
    help="Privacy-preserving recommender toolkit: federated MF, CKKS aggregation, DP accounting.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("simulate")(simulate_cmd.simulate)
app.command("sweep")(sweep_cmd.sweep)
app.command("tune")(tune_cmd.tune)
app.command("periodic")(periodic_cmd.periodic)
app.command("recommend")(recommend_cmd.recommend)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("explain")(explain_cmd.explain)
app.command("serve")(serve_cmd.serve)
app.command("transparency")(transparency_cmd.transparency)
app.command("cold-start")(cold_start_cmd.cold_start)
app.add_typer(data_cmd.app, name="data", help="Generate and inspect interaction data sets.")
app.add_typer(privacy_cmd.app, name="privacy", help="Privacy accounting and noise calibration.")


if __name__ == "__main__":  # pragma: no cover
    app()

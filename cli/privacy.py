"""`ppr privacy`: epsilon of a DP-FedAvg configuration, and noise calibration for a target.

Thin wrappers over :mod:`ppr.privacy`; ε comes only from the dp_accounting accountant.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ._common import guarded, print_json

app = typer.Typer(
    help="Privacy accounting (dp_accounting RDP / PLD) and noise calibration for DP-FedAvg.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SamplingRate = Annotated[float, typer.Option("--sampling-rate", "-q", help="Poisson rate q.")]
Rounds = Annotated[int, typer.Option("--rounds", "-T", help="Federated rounds T.")]
Delta = Annotated[float, typer.Option("--delta", "-d", help="Target delta, in (0, 1).")]
AccountantOpt = Annotated[
    str, typer.Option("--accountant", "-a", help="Privacy accountant: pld (exact, default) or rdp.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead.")]


def _num(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def _table(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=True)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


@app.command("epsilon")
@guarded
def epsilon(
    noise_multiplier: Annotated[
        float, typer.Option("--noise-multiplier", "-s", help="Noise multiplier σ (>= 0).")
    ],
    sampling_rate: SamplingRate,
    rounds: Rounds,
    delta: Delta,
    accountant: AccountantOpt = "pld",
    json_out: JsonOpt = False,
) -> None:
    """ε of T rounds of DP-FedAvg: Poisson sampling q, Gaussian noise σ·C on the clipped sum."""
    from ppr.privacy import dpfedavg_event, epsilon_of
    from ppr.privacy._checks import check_delta
    from ppr.privacy.accounting import check_accountant

    check_accountant(accountant)
    check_delta("delta", delta)
    event = dpfedavg_event(noise_multiplier, sampling_rate, rounds)
    start = time.perf_counter()
    eps = epsilon_of(event, delta, accountant)
    seconds = time.perf_counter() - start
    result = {
        "noise_multiplier": noise_multiplier,
        "sampling_rate": sampling_rate,
        "rounds": rounds,
        "delta": delta,
        "accountant": accountant,
        "epsilon": _num(eps),
        "seconds": seconds,
    }
    if json_out:
        print_json(result)
        return
    _table(
        "DP-FedAvg privacy",
        [
            ("noise multiplier σ", f"{noise_multiplier:g}"),
            ("sampling rate q", f"{sampling_rate:g}"),
            ("rounds T", str(rounds)),
            ("delta δ", f"{delta:g}"),
            ("accountant", accountant),
            ("epsilon ε", f"{eps:.4f}"),
        ],
    )


@app.command("calibrate")
@guarded
def calibrate(
    epsilon: Annotated[float, typer.Option("--epsilon", "-e", help="Target epsilon (> 0).")],
    sampling_rate: SamplingRate,
    rounds: Rounds,
    delta: Delta,
    accountant: AccountantOpt = "pld",
    json_out: JsonOpt = False,
) -> None:
    """Smallest noise multiplier σ whose T rounds of DP-FedAvg meet (ε, δ)."""
    from ppr.privacy import calibrate_noise_multiplier, dpfedavg_event, epsilon_of
    from ppr.privacy._checks import check_delta
    from ppr.privacy.accounting import check_accountant

    check_accountant(accountant)
    check_delta("delta", delta)
    start = time.perf_counter()
    sigma = calibrate_noise_multiplier(epsilon, delta, sampling_rate, rounds, accountant)
    seconds = time.perf_counter() - start
    achieved = (
        epsilon_of(dpfedavg_event(sigma, sampling_rate, rounds), delta, accountant)
        if sigma > 0
        else math.inf
    )
    result = {
        "target_epsilon": _num(epsilon),
        "sampling_rate": sampling_rate,
        "rounds": rounds,
        "delta": delta,
        "accountant": accountant,
        "noise_multiplier": sigma,
        "epsilon": _num(achieved),
        "seconds": seconds,
    }
    if json_out:
        print_json(result)
        return
    _table(
        "DP-FedAvg noise calibration",
        [
            ("target epsilon ε", f"{epsilon:g}"),
            ("sampling rate q", f"{sampling_rate:g}"),
            ("rounds T", str(rounds)),
            ("delta δ", f"{delta:g}"),
            ("accountant", accountant),
            ("noise multiplier σ", f"{sigma:.4f}"),
            ("achieved epsilon", f"{achieved:.4f}"),
        ],
    )

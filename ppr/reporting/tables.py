"""Rich tables of sweep results (for terminals; the numbers themselves live in points.json/.csv).

Rows are the aggregated points of :func:`~ppr.experiments.sweep.run_sweep`, JSON-safe (ε = ∞ is
``"inf"``); a missing value prints as an em dash, never as a made-up number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.table import Table

__all__ = ["fmt_bytes", "fmt_mean_std", "sweep_table"]

_DASH = "—"


def fmt_bytes(n: float | None) -> str:
    """``1234567`` -> ``"1.23 MB"`` (decimal units)."""
    if n is None:
        return _DASH
    n = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000.0 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000.0
    raise AssertionError("unreachable")


def fmt_mean_std(mean: float | None, std: float | None, digits: int = 4) -> str:
    """``"0.1234 ± 0.0050"``; the std is left out when unknown (one seed)."""
    if mean is None:
        return _DASH
    if std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _eps_text(v: Any) -> str:
    if v == "inf" or (isinstance(v, float) and math.isinf(v)):
        return "∞"
    return f"{float(v):g}"


def _num_text(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return _DASH
    if v == "inf":
        return "∞"
    return format(float(v), spec)


def sweep_table(
    points: Sequence[dict[str, Any]], grid_keys: Sequence[str] = (), title: str = "ppr sweep"
) -> Table:
    """ε, σ, the grid values (headed by the last part of their key), recall@k and NDCG@k
    (mean ± std over seeds), bytes uploaded per participating device per round, seeds; the
    popularity baselines' recall@k as columns when reported."""
    ks = sorted({int(p["k"]) for p in points}) or [0]
    k = str(ks[0]) if len(ks) == 1 else "k"
    has_pop = any(p.get(f"popularity_recall@{p['k']}") is not None for p in points)
    has_dp_pop = any(p.get(f"private_popularity_recall@{p['k']}") is not None for p in points)

    baselines = " (popularity columns: their recall@k)" if has_pop or has_dp_pop else ""
    table = Table(title=title, show_header=True, caption=f"mean ± sample std over seeds{baselines}")
    table.add_column("ε", justify="right")
    table.add_column("σ", justify="right")
    for g in grid_keys:
        table.add_column(g.rsplit(".", 1)[-1], justify="right")
    table.add_column(f"recall@{k}", justify="right", no_wrap=True)
    table.add_column(f"NDCG@{k}", justify="right", no_wrap=True)
    if has_pop:
        table.add_column("popularity", justify="right")
    if has_dp_pop:
        table.add_column("DP popularity", justify="right")
    table.add_column("upload/round", justify="right")  # per participating device
    table.add_column("seeds", justify="right")
    for p in points:
        kk = p["k"]
        row = [_eps_text(p["epsilon"]), _num_text(p.get("noise_multiplier"))]
        row += [str(p.get(g)) for g in grid_keys]
        row += [
            fmt_mean_std(p.get(f"recall@{kk}"), p.get(f"recall@{kk}_std")),
            fmt_mean_std(p.get(f"ndcg@{kk}"), p.get(f"ndcg@{kk}_std")),
        ]
        if has_pop:
            row.append(fmt_mean_std(p.get(f"popularity_recall@{kk}"), None))
        if has_dp_pop:
            row.append(fmt_mean_std(p.get(f"private_popularity_recall@{kk}"), None))
        row += [fmt_bytes(p.get("upload_bytes_per_device")),
                " ".join(str(s) for s in p.get("seeds", []))]  # fmt: skip
        table.add_row(*row)
    return table

"""PNG plots of sweep results, drawn with matplotlib's Agg renderer.

No pyplot and no global backend switch: figures are plain :class:`matplotlib.figure.Figure`
objects rendered to PNG bytes and written atomically, so plotting is safe in any process (CLI,
tests, worker) and never opens a window.

``recall_vs_epsilon``: recall@k (mean ± std over seeds) against finite ε on a log axis, one series
per combination of grid values; the ε = ∞ point of each series is a dashed horizontal line
("non-private"), the popularity baseline a dotted grey line, and the DP popularity baseline (when
the runs report it) a faint series at each ε.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ppr.io import atomic_write_bytes

__all__ = ["plot_recall_vs_epsilon"]


def _eps(v: Any) -> float:
    return math.inf if v == "inf" else float(v)


def _label(row: dict[str, Any], grid_keys: Sequence[str]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={row.get(k)}" for k in grid_keys)


def plot_recall_vs_epsilon(
    points: Sequence[dict[str, Any]], path: str | Path, grid_keys: Sequence[str] = ()
) -> Path:
    """Draw the aggregated sweep ``points`` (rows of :func:`~ppr.experiments.sweep.run_sweep`) to
    the PNG file ``path`` (atomically) and return ``path``."""
    from matplotlib.figure import Figure

    if not points:
        raise ValueError("no points to plot")
    ks = sorted({int(p["k"]) for p in points})
    k_text = str(ks[0]) if len(ks) == 1 else "k"

    groups: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault(json.dumps([p.get(k) for k in grid_keys]), []).append(p)

    fig = Figure(figsize=(9.0, 4.5), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xscale("log")
    finite = [_eps(p["epsilon"]) for p in points if math.isfinite(_eps(p["epsilon"]))]
    lo, hi = (min(finite), max(finite)) if finite else (1.0, 1.0)
    ax.set_xlim(lo / 1.6, hi * 1.6)
    if finite:  # label the swept ε themselves
        ticks = sorted(set(finite))
        ax.set_xticks(ticks, [f"{e:g}" for e in ticks])
        ax.minorticks_off()

    colors = [f"C{i}" for i in range(10)]
    for i, rows in enumerate(groups.values()):
        color = colors[i % len(colors)]
        name = _label(rows[0], grid_keys)
        key = f"recall@{rows[0]['k']}"
        suffix = f" ({name})" if name else ""
        pts = sorted((r for r in rows if math.isfinite(_eps(r["epsilon"]))),
                     key=lambda r: _eps(r["epsilon"]))  # fmt: skip
        if pts:
            xs = [_eps(r["epsilon"]) for r in pts]
            ys = [r.get(key) for r in pts]
            err = [r.get(f"{key}_std") or 0.0 for r in pts]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=color,
                        label=f"federated DP{suffix}")  # fmt: skip
            pk = f"private_popularity_{key}"
            dp_pop = [(x, r[pk]) for x, r in zip(xs, pts, strict=True) if r.get(pk) is not None]
            if dp_pop:
                ax.plot([x for x, _ in dp_pop], [y for _, y in dp_pop], marker="x",
                        linestyle=":", color=color, alpha=0.6,
                        label=f"DP popularity{suffix}")  # fmt: skip
        for r in rows:
            if not math.isfinite(_eps(r["epsilon"])) and r.get(key) is not None:
                ax.axhline(r[key], linestyle="--", color=color, label=f"non-private (ε=∞){suffix}")

    pops = {round(float(p[f"popularity_recall@{p['k']}"]), 6) for p in points
            if p.get(f"popularity_recall@{p['k']}") is not None}  # fmt: skip
    for j, v in enumerate(sorted(pops)):
        ax.axhline(v, linestyle=":", color="0.4", label="popularity" if j == 0 else None)

    ax.set_xlabel("target ε (user-level, log scale)")
    ax.set_ylabel(f"recall@{k_text}")
    ax.set_ylim(bottom=0.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"recall@{k_text} against ε")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())

"""`ppr data`: generate synthetic logs and inspect interaction data sets.

- ``ppr data synth OUT [--users N --items M --interactions K --dim D --seed S] [--json]``
- ``ppr data info PATH [--source auto|ml-100k|ml-1m|ml-csv|csv|parquet] [--verify] [--json]``

Bad input: one line on stderr, exit 2. ``info --verify`` exits 1 when a file fails verification.
With ``--json`` stdout holds exactly one JSON object.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ppr.config import DataConfig, SyntheticConfig
from ppr.data.loaders import SOURCES, load_interactions
from ppr.data.manifest import guess_dataset, verify_dataset
from ppr.data.stats import dataset_stats
from ppr.data.synthetic import generate_synthetic, output_format, write_interactions
from ppr.errors import DataError

from ._common import guarded, print_json

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
_DEF = SyntheticConfig()
FILE_SOURCES = tuple(s for s in SOURCES if s != "synthetic")


def parse_columns(text: str) -> dict[str, str]:
    """``"user=uid,item=iid"`` -> ``{"user": "uid", "item": "iid"}`` (empty text -> ``{}``)."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise DataError(f"--columns: `{part}` must look like role=column (e.g. user=userId)")
        out[key.strip()] = value.strip()
    return out


def _fmt_counts(q: dict) -> str:
    return " · ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in q.items())


def _stats_table(st: dict, title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("")
    span = st["time_span"]
    rows = [
        ("source", st["source"]),
        ("users", f"{st['users']:,}"),
        ("items", f"{st['items']:,}"),
        ("interactions", f"{st['interactions']:,}"),
        ("density", f"{st['density']:.4%}"),
        ("ratings", ", ".join(f"{k}: {v:,}" for k, v in st["ratings"].items())),
        ("rating mean", f"{st['rating_mean']:.3f}"),
        (
            f"positives (>= {st['positive_threshold']:g})",
            f"{st['positives']:,} ({st['positive_share']:.1%}); "
            f"{st['users_with_positives']:,} users have one",
        ),
        ("user activity", _fmt_counts(st["user_activity"])),
        ("item popularity", _fmt_counts(st["item_popularity"])),
        (f"top 1% items ({st['top1pct_items']})", f"{st['top1pct_item_share']:.1%} of rows"),
        (
            "time span",
            f"{span['start_utc']} → {span['end_utc']} ({span['days']:.0f} days)" if span else "-",
        ),
        ("user attributes", ", ".join(st["attributes"]) or "-"),
        (
            "titles / genres",
            f"{'yes' if st['titles'] else 'no'} / {'yes' if st['genres'] else 'no'}",
        ),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    return table


@app.command("synth")
@guarded
def synth(
    out: Path = typer.Argument(..., help="output file: .csv, .csv.gz, .tsv or .parquet"),
    users: int = typer.Option(_DEF.n_users, "--users", help="number of users"),
    items: int = typer.Option(_DEF.n_items, "--items", help="number of items"),
    interactions: int = typer.Option(_DEF.n_interactions, "--interactions", help="target rows"),
    dim: int = typer.Option(_DEF.dim, "--dim", help="latent dimension"),
    seed: int = typer.Option(0, "--seed", help="seed of the generator"),
    popularity_exponent: float = typer.Option(_DEF.popularity_exponent, help="Zipf exponent"),
    activity_sigma: float = typer.Option(_DEF.activity_sigma, help="log-normal activity sigma"),
    min_per_user: int = typer.Option(_DEF.min_per_user, help="minimum ratings per user"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Generate a synthetic MovieLens-like log and write it (user,item,rating,timestamp)."""
    output_format(out)
    cfg = SyntheticConfig(
        n_users=users,
        n_items=items,
        n_interactions=interactions,
        dim=dim,
        popularity_exponent=popularity_exponent,
        activity_sigma=activity_sigma,
        min_per_user=min_per_user,
    )
    inter = generate_synthetic(cfg, seed)
    path = write_interactions(inter, out)
    st = dataset_stats(inter)
    if json_out:
        print_json({"path": str(path), "seed": seed, **st})
        return
    console = Console()
    console.print(
        f"wrote {path}: {st['users']:,} users, {st['items']:,} items, "
        f"{st['interactions']:,} ratings (seed {seed})"
    )
    console.print(_stats_table(st, "synthetic data"))


@app.command("info")
@guarded
def info(
    path: Path = typer.Argument(..., help="data directory or file"),
    source: str = typer.Option("auto", "--source", help=" | ".join(FILE_SOURCES)),
    columns: str = typer.Option("", "--columns", help="csv/parquet: user=COL,item=COL[,...]"),
    separator: str = typer.Option(",", "--separator", help="csv field separator"),
    verify: bool = typer.Option(False, "--verify", help="check files against datasets/manifest"),
    dataset: str = typer.Option("", "--dataset", help="manifest entry for --verify (guessed)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Load a data set and print its statistics (and, with --verify, its checksums)."""
    if source not in FILE_SOURCES:
        raise DataError(f"--source must be one of {', '.join(FILE_SOURCES)}. Found {source!r}.")
    cfg = DataConfig(
        source=source,  # type: ignore[arg-type]
        path=str(path),
        columns=parse_columns(columns),
        separator=separator,
    )
    inter = load_interactions(cfg)
    st = dataset_stats(inter)
    checks = None
    if verify:
        name = dataset or guess_dataset(cfg.resolved_path())
        rows = verify_dataset(name, cfg.resolved_path(), inter)
        checks = {
            "dataset": name,
            "ok": all(r.ok for r in rows),
            "files": [r._asdict() for r in rows],
        }
    if json_out:
        print_json({**st, **({"verify": checks} if checks is not None else {})})
    else:
        console = Console()
        console.print(_stats_table(st, str(path)))
        if checks is not None:
            table = Table(title=f"verify against manifest entry {checks['dataset']!r}")
            for col in ("file", "ok", "detail"):
                table.add_column(col)
            for r in checks["files"]:
                table.add_row(r["file"], "ok" if r["ok"] else "FAIL", r["detail"])
            console.print(table)
    if checks is not None and not checks["ok"]:
        raise typer.Exit(code=1)

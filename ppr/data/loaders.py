"""Loaders: MovieLens releases and generic CSV/Parquet logs -> :class:`Interactions`.

Entry point: :func:`load_interactions` dispatches on ``DataConfig.source``:

- ``ml-100k``: ``u.data`` (tab separated), ``u.user`` and ``u.item`` (``|``, Latin-1) when present;
- ``ml-1m``: ``::``-separated ml-1m / ml-10m (``ratings.dat`` or any ``ratings*.dat[.gz]``,
  ``users.dat``, ``movies.dat``; plain or gzip);
- ``ml-csv``: ml-20m / ml-25m / ml-latest (``ratings.csv`` + ``movies.csv``, UTF-8);
- ``csv`` / ``parquet``: any log, columns named by ``DataConfig.columns``;
- ``synthetic``: :func:`ppr.data.synthetic.generate_synthetic`;
- ``auto``: guessed from the files under the path (:func:`detect_source`).

The MovieLens readers live in :mod:`ppr.data.movielens`, the generic CSV/Parquet reader in
:mod:`ppr.data.tabular`, and the parsing steps they share in :mod:`ppr.data._parse`; each states
its own invariants. This module only checks the config, guesses the format and dispatches.

Invariants: every failure caused by the input raises :class:`DataError` with one line naming the
file (and the 1-based line, or row for Parquet, where it applies); never a raw pandas error.
A ``csv`` source whose path ends in ``.tsv`` / ``.tsv.gz`` and keeps the default ``,`` separator
is read tab separated.
"""

from __future__ import annotations

from pathlib import Path

from ppr.config import DataConfig
from ppr.data._parse import first_existing, read_bytes
from ppr.data.interactions import Interactions
from ppr.data.movielens import ML_CSV_COLUMNS, load_ml1m, load_ml100k, load_ml_csv
from ppr.data.synthetic import generate_synthetic
from ppr.data.tabular import load_table
from ppr.errors import DataError

__all__ = ["SOURCES", "detect_source", "load_interactions"]

SOURCES = ("synthetic", "ml-100k", "ml-1m", "ml-csv", "csv", "parquet", "auto")


def detect_source(path: Path) -> str:
    """Guess the loader for ``path`` (a directory or a file) from file names and headers."""
    if path.is_dir():
        if (path / "u.data").is_file():
            return "ml-100k"
        if first_existing(path, ("ratings.csv", "ratings.csv.gz")) is not None:
            return "ml-csv"
        if any(p.name.endswith((".dat", ".dat.gz")) for p in path.glob("ratings*.dat*")):
            return "ml-1m"
        raise DataError(
            f"{path}: cannot guess the data format (no u.data, ratings.csv or ratings*.dat); "
            "pass the file itself or --source"
        )
    name = path.name.lower()
    if name == "u.data":
        return "ml-100k"
    if name.startswith("ratings") and name.endswith((".dat", ".dat.gz")):
        return "ml-1m"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        if name.endswith((".csv", ".csv.gz")):
            head = read_bytes(path).split(b"\n", 1)[0].decode("latin-1").strip().split(",")
            if all(c in head for c in ML_CSV_COLUMNS):
                return "ml-csv"
        return "csv"
    raise DataError(f"{path}: unknown data format; pass --source (one of {', '.join(SOURCES)})")


def load_interactions(cfg: DataConfig, seed: int = 0) -> Interactions:
    """Load (or generate) the interaction table described by ``cfg``.

    ``seed`` only matters for ``source = "synthetic"``. Raises :class:`DataError` on bad input.
    """
    source = cfg.source
    if source == "synthetic":
        return generate_synthetic(cfg.synthetic, seed)
    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; expected one of {', '.join(SOURCES)}")
    if not cfg.path:
        raise DataError(f"`data.path` is empty; source {source!r} needs a file or directory")
    path = cfg.resolved_path()
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if source == "auto":
        source = detect_source(path)
    if source == "ml-100k":
        return load_ml100k(path)
    if source == "ml-1m":
        return load_ml1m(path)
    if source == "ml-csv":
        return load_ml_csv(path)
    sep = cfg.separator
    if source == "csv" and cfg.path.lower().endswith((".tsv", ".tsv.gz")) and sep == ",":
        sep = "\t"
    return load_table(path, source, dict(cfg.columns), sep)

"""Shared parsing steps of the loaders: raw bytes -> text -> checked frame -> :class:`Interactions`.

Private to :mod:`ppr.data` (used by :mod:`ppr.data.movielens`, :mod:`ppr.data.tabular` and
:mod:`ppr.data.loaders`); the names carry no leading underscore because they cross modules.

Invariants: every failure caused by the input raises :class:`DataError` with one line naming the
file (and the 1-based line, or row for Parquet, where it applies); never a raw pandas error.
Fast paths use pandas' C engine with explicit dtypes; only when that fails is the file re-scanned
line by line (:func:`diagnose`) to say *where* it is wrong. Line numbers skip blank lines the way
pandas does (:func:`line_of_row`). Files that start with the gzip magic number are gunzipped
whatever their name; a ``.gz`` name without it is an error. A checked frame has finite ratings and
no duplicate (user, item) pair (:func:`check_values`).
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ppr.data.interactions import Interactions
from ppr.errors import DataError

INT = re.compile(r"\s*[+-]?\d+\s*")
SEP = "\x1f"  # single-byte stand-in for multi-character separators (C engine fast path)


def read_bytes(path: Path) -> bytes:
    """Whole file as bytes, gunzipped when it starts with the gzip magic number."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip file ({exc})") from None
    elif path.suffix == ".gz":
        raise DataError(f"{path}: not a gzip file (no gzip header)")
    if not raw.strip():
        raise DataError(f"{path}: empty file")
    return raw


def decode(raw: bytes, path: Path, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not valid {encoding} text") from None


def line_of_row(lines: Iterable[str], row: int, header: bool) -> int:
    """1-based line number of data row ``row`` (0-based), skipping blank lines as pandas does."""
    seen = -1 if header else 0
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if seen == row:
            return no
        seen += 1
    return row + 1 + int(header)


def diagnose(
    lines: Iterable[str],
    label: Path,
    split: Callable[[str], list[str]],
    n_fields: int,
    ints: dict[int, str],
    floats: dict[int, str],
    start: int = 1,
) -> str | None:
    """First line that breaks the format, as a one-line message (None if every line is fine)."""
    for no, line in enumerate(lines, start=start):
        if not line.strip():
            continue
        parts = split(line)
        if len(parts) != n_fields:
            return f"{label}: line {no}: expected {n_fields} fields, found {len(parts)}"
        for j, name in ints.items():
            if not INT.fullmatch(parts[j]):
                return f"{label}: line {no}: {name} {parts[j]!r} is not an integer"
        for j, name in floats.items():
            try:
                ok = math.isfinite(float(parts[j]))
            except ValueError:
                ok = False
            if not ok:
                return f"{label}: line {no}: {name} {parts[j]!r} is not a finite number"
    return None


def check_values(
    df: pd.DataFrame,
    path: Path,
    lines: Callable[[], list[str]],
    header: bool,
    row_word: str = "line",
) -> None:
    """Finite ratings and no duplicate (user, item) pair; errors name the offending line."""

    def where(row: int) -> str:
        n = line_of_row(lines(), row, header) if row_word == "line" else row + 1
        return f"{row_word} {n}"

    bad = ~np.isfinite(df["rating"].to_numpy(dtype=np.float64))
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: {where(row)}: rating is empty or not a finite number")
    u = pd.factorize(df["user"])[0].astype(np.int64)
    i, item_uniques = pd.factorize(df["item"])
    key = u * len(item_uniques) + i
    dup = pd.Series(key).duplicated().to_numpy()
    if dup.any():
        row = int(np.argmax(dup))
        first = int(np.flatnonzero(key == key[row])[0])
        raise DataError(
            f"{path}: {where(row)}: duplicate (user, item) pair "
            f"({df['user'].iloc[row]}, {df['item'].iloc[row]}), first seen on {where(first)}"
        )


def read_lines(path: Path, encoding: str = "latin-1") -> list[str]:
    return decode(read_bytes(path), path, encoding).splitlines()


def fields(
    path: Path, sep: str, n: int | tuple[int, int], encoding: str = "latin-1"
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_no, fields)`` of a small side file, checking the field count."""
    lo, hi = (n, n) if isinstance(n, int) else n
    for no, line in enumerate(read_lines(path, encoding), start=1):
        if not line.strip():
            continue
        parts = line.split(sep)
        if not lo <= len(parts) <= hi:
            want = lo if lo == hi else f"{lo}-{hi}"
            raise DataError(f"{path}: line {no}: expected {want} fields, found {len(parts)}")
        yield no, parts


def int_field(path: Path, no: int, value: str, name: str) -> int:
    if not INT.fullmatch(value):
        raise DataError(f"{path}: line {no}: {name} {value!r} is not an integer")
    return int(value)


def first_existing(directory: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        p = directory / name
        if p.is_file():
            return p
    return None


def build(
    df: pd.DataFrame,
    source: str,
    titles: dict | None,
    genres: dict | None,
    attrs: pd.DataFrame | None,
) -> Interactions:
    """Checked ``user, item, rating, timestamp`` frame (+ side data) -> :class:`Interactions`.

    Ratings become float32 and timestamps int64; genres, when given, go to
    ``extra["item_genres"]`` aligned with ``item_ids`` (``""`` for items without one).
    """
    inter = Interactions.from_arrays(
        df["user"].to_numpy(), df["item"].to_numpy(),
        df["rating"].to_numpy(dtype=np.float32), df["timestamp"].to_numpy(dtype=np.int64),
        item_titles=titles, user_attributes=attrs, source=source,
    )  # fmt: skip
    if genres:
        g = np.array([genres.get(k, "") for k in inter.item_ids.tolist()], dtype=object)
        inter = dataclasses.replace(inter, extra={**inter.extra, "item_genres": g})
    return inter

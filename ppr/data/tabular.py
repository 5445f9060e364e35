"""Generic CSV / Parquet interaction logs -> :class:`Interactions`, columns named by role.

:func:`resolve_columns` maps the roles ``user``, ``item``, ``rating``, ``timestamp`` to columns:
the explicit ``DataConfig.columns`` (which must name ``user`` and ``item``), or else the first
common name of each role found in the file (:data:`_COLUMN_ALIASES`). :func:`load_table` reads
the file: CSV (UTF-8, plain or gzip, any separator; a multi-character one is swapped for a
single byte on the C engine fast path) or Parquet (needs pyarrow).

Invariants: every failure caused by the input raises :class:`DataError` with one line naming the
file and the 1-based line (CSV) or row (Parquet) where it applies; never a raw pandas or pyarrow
error. Only when pandas fails is a CSV re-scanned line by line to say *where* it is wrong.
Missing ``rating`` -> 1.0, missing ``timestamp`` -> 0; integer ids (or integral floats) stay
int64, other ids become strings; timestamps are int64 seconds (date strings are parsed as UTC).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ppr.data._parse import SEP, build, check_values, decode, diagnose, line_of_row, read_bytes
from ppr.data.interactions import Interactions
from ppr.errors import DataError

_COLUMN_ALIASES = {
    "user": ("user", "user_id", "userId", "userid", "uid"),
    "item": ("item", "item_id", "itemId", "movieId", "movie_id", "iid"),
    "rating": ("rating", "ratings", "score"),
    "timestamp": ("timestamp", "time", "ts"),
}


def resolve_columns(columns: dict, available: list[str], path: Path) -> dict[str, str]:
    """Mapping role -> column name. An empty mapping picks common names (user/userId/...)."""
    unknown = sorted(set(columns) - set(_COLUMN_ALIASES))
    if unknown:
        raise DataError(
            f"`data.columns` has unknown key(s) {', '.join(unknown)}; "
            "allowed: user, item, rating, timestamp"
        )
    if columns:
        mapping = {k: str(v) for k, v in columns.items()}
        for role in ("user", "item"):
            if role not in mapping:
                raise DataError(f"`data.columns` must name the `{role}` column")
    else:
        mapping = {}
        for role, names in _COLUMN_ALIASES.items():
            hit = next((n for n in names if n in available), None)
            if hit is not None:
                mapping[role] = hit
        if "user" not in mapping or "item" not in mapping:
            raise DataError(
                f"{path}: no user/item columns found (columns: {', '.join(available)}); "
                "set data.columns = {user=..., item=...}"
            )
    missing = [v for v in mapping.values() if v not in available]
    if missing:
        raise DataError(
            f"{path}: column(s) {', '.join(missing)} not found; columns: {', '.join(available)}"
        )
    return mapping


def _ids(series: pd.Series, path: Path, name: str, where: Callable[[int], str]) -> np.ndarray:
    if series.isna().any():
        row = int(np.argmax(series.isna().to_numpy()))
        raise DataError(f"{path}: {where(row)}: empty {name} id")
    if pd.api.types.is_integer_dtype(series.dtype):
        return series.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64)
        if np.all(values == np.round(values)):
            return values.astype(np.int64)
    return series.astype(str).to_numpy(dtype=object)


def _numbers(series: pd.Series, path: Path, name: str, where: Callable[[int], str]) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: {where(row)}: {name} {series.iloc[row]!r} is not a finite number")
    return values


def _timestamps(series: pd.Series, path: Path, where: Callable[[int], str]) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series.dtype):
        return _numbers(series, path, "timestamp", where).astype(np.int64)
    dt = pd.to_datetime(series, utc=True, errors="coerce", format="mixed")
    if dt.isna().any():
        row = int(np.argmax(dt.isna().to_numpy()))
        raise DataError(f"{path}: {where(row)}: timestamp {series.iloc[row]!r} is not a time")
    return ((dt - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def load_table(path: Path, fmt: str, columns: dict, separator: str = ",") -> Interactions:
    """Generic log (``fmt`` = ``csv`` or ``parquet``) with a role -> column mapping.

    Missing ``rating`` -> 1.0, missing ``timestamp`` -> 0. String ids are allowed and re-indexed
    densely (sorted); integer ids stay integers.
    """
    if path.is_dir():
        raise DataError(f"{path}: is a directory; a {fmt} source needs a file")

    def lines() -> list[str]:
        return []

    if fmt == "parquet":
        try:
            frame = pd.read_parquet(path)
        except ImportError:
            raise DataError("reading Parquet needs pyarrow: pip install 'ppr[parquet]'") from None
        except Exception as exc:  # pyarrow raises many types for bad files
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{path}: not a readable Parquet file ({first})") from None
        header, row_word = False, "row"
    else:
        raw = read_bytes(path)
        if not separator:
            raise DataError("`data.separator` must not be empty")
        data = raw.replace(separator.encode(), SEP.encode()) if len(separator) > 1 else raw
        csep = SEP if len(separator) > 1 else separator
        try:
            frame = pd.read_csv(io.BytesIO(data), sep=csep, engine="c")
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: empty file") from None
        except (ValueError, pd.errors.ParserError) as exc:
            text = decode(raw, path, "utf-8").splitlines()
            head = next(csv.reader(text[:1], delimiter=csep), [])
            split = (
                (lambda s: next(csv.reader([s], delimiter=separator)))
                if len(separator) == 1
                else (lambda s: s.split(separator))
            )
            msg = diagnose(text[1:], path, split, len(head), {}, {}, start=2)
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(msg or f"{path}: cannot parse CSV ({why})") from None
        header, row_word = True, "line"

        def lines() -> list[str]:
            return decode(raw, path, "utf-8").splitlines()

    available = [str(c) for c in frame.columns]
    mapping = resolve_columns(columns, available, path)
    if frame.empty:
        raise DataError(f"{path}: no rows")

    def where(row: int) -> str:
        n = line_of_row(lines(), row, header) if row_word == "line" else row + 1
        return f"{row_word} {n}"

    n = len(frame)
    df = pd.DataFrame({
        "user": _ids(frame[mapping["user"]], path, "user", where),
        "item": _ids(frame[mapping["item"]], path, "item", where),
        "rating": (_numbers(frame[mapping["rating"]], path, "rating", where)
                   if "rating" in mapping else np.ones(n)),
        "timestamp": (_timestamps(frame[mapping["timestamp"]], path, where)
                      if "timestamp" in mapping else np.zeros(n, dtype=np.int64)),
    })  # fmt: skip
    check_values(df, path, lines, header=header, row_word=row_word)
    return build(df, f"{fmt}:{path}", None, None, None)

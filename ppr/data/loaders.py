"""Loaders: MovieLens releases and generic CSV/Parquet logs -> :class:`Interactions`.

Entry point: :func:`load_interactions` dispatches on ``DataConfig.source``:

- ``ml-100k``: ``u.data`` (tab separated), ``u.user`` and ``u.item`` (``|``, Latin-1) when present;
- ``ml-1m``: ``::``-separated ml-1m / ml-10m (``ratings.dat`` or any ``ratings*.dat[.gz]``,
  ``users.dat``, ``movies.dat``; plain or gzip);
- ``ml-csv``: ml-20m / ml-25m / ml-latest (``ratings.csv`` + ``movies.csv``, UTF-8);
- ``csv`` / ``parquet``: any log, columns named by ``DataConfig.columns``;
- ``synthetic``: :func:`ppr.data.synthetic.generate_synthetic`;
- ``auto``: guessed from the files under the path (:func:`detect_source`).

Invariants: every failure caused by the input raises :class:`DataError` with one line naming the
file (and the 1-based line, or row for Parquet, where it applies); never a raw pandas error.
Fast paths use pandas' C engine with explicit dtypes; only when that fails is the file re-scanned
line by line to say *where* it is wrong. Side files keep titles (Latin-1 decoded for ``.dat`` /
``u.item``) and user attributes with the columns of :data:`ATTRIBUTE_COLUMNS` (``age`` and
``zip`` where the release has them). Genres, when present, go to ``extra["item_genres"]``.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import math
import re
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ppr.config import DataConfig
from ppr.data.interactions import Interactions
from ppr.errors import DataError

SOURCES = ("synthetic", "ml-100k", "ml-1m", "ml-csv", "csv", "parquet", "auto")
AGE_BANDS = ("Under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
ML1M_AGE_CODES = {1: 0, 18: 1, 25: 2, 35: 3, 45: 4, 50: 5, 56: 6}  # code -> index in AGE_BANDS
OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
ATTRIBUTE_COLUMNS = ("age_band", "gender", "occupation")
_INT = re.compile(r"\s*[+-]?\d+\s*")
_SEP = "\x1f"  # single-byte stand-in for multi-character separators (C engine fast path)
_COLUMN_ALIASES = {
    "user": ("user", "user_id", "userId", "userid", "uid"),
    "item": ("item", "item_id", "itemId", "movieId", "movie_id", "iid"),
    "rating": ("rating", "ratings", "score"),
    "timestamp": ("timestamp", "time", "ts"),
}


def age_band(age: int) -> str:
    """MovieLens-1M age band (``AGE_BANDS``) of an age in years."""
    edges = (18, 25, 35, 45, 50, 56)
    return AGE_BANDS[int(np.searchsorted(edges, age, side="right"))]


# --------------------------------------------------------------------------------------------
# raw input


def _read_bytes(path: Path) -> bytes:
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


def _decode(raw: bytes, path: Path, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not valid {encoding} text") from None


def _line_of_row(lines: Iterable[str], row: int, header: bool) -> int:
    """1-based line number of data row ``row`` (0-based), skipping blank lines as pandas does."""
    seen = -1 if header else 0
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if seen == row:
            return no
        seen += 1
    return row + 1 + int(header)


def _diagnose(
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
            if not _INT.fullmatch(parts[j]):
                return f"{label}: line {no}: {name} {parts[j]!r} is not an integer"
        for j, name in floats.items():
            try:
                ok = math.isfinite(float(parts[j]))
            except ValueError:
                ok = False
            if not ok:
                return f"{label}: line {no}: {name} {parts[j]!r} is not a finite number"
    return None


_ML_INTS = {0: "user id", 1: "item id", 3: "timestamp"}
_ML_FLOATS = {2: "rating"}


def _read_ml_ratings(path: Path, sep: str) -> pd.DataFrame:
    """Headerless ``user<sep>item<sep>rating<sep>timestamp`` file -> checked frame."""
    raw = _read_bytes(path)
    data = raw.replace(sep.encode(), _SEP.encode()) if len(sep) > 1 else raw
    csep = _SEP if len(sep) > 1 else sep
    dtypes = {0: np.int64, 1: np.int64, 2: np.float64, 3: np.int64}
    try:
        df = pd.read_csv(
            io.BytesIO(data),
            sep=csep,
            header=None,
            engine="c",
            dtype=dtypes,
            quoting=csv.QUOTE_NONE,
        )
        ok = df.shape[1] == 4
    except (ValueError, OverflowError, pd.errors.ParserError, pd.errors.EmptyDataError):
        ok = False
    if not ok:
        lines = _decode(raw, path, "latin-1").splitlines()
        msg = _diagnose(lines, path, lambda s: s.split(sep), 4, _ML_INTS, _ML_FLOATS)
        raise DataError(msg or f"{path}: cannot parse as {sep!r}-separated ratings")
    df.columns = ["user", "item", "rating", "timestamp"]
    _check_values(df, path, lambda: _decode(raw, path, "latin-1").splitlines(), header=False)
    return df


def _check_values(
    df: pd.DataFrame,
    path: Path,
    lines: Callable[[], list[str]],
    header: bool,
    row_word: str = "line",
) -> None:
    """Finite ratings and no duplicate (user, item) pair; errors name the offending line."""

    def where(row: int) -> str:
        n = _line_of_row(lines(), row, header) if row_word == "line" else row + 1
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


def _lines(path: Path, encoding: str = "latin-1") -> list[str]:
    return _decode(_read_bytes(path), path, encoding).splitlines()


def _fields(path: Path, sep: str, n: int | tuple[int, int], encoding: str = "latin-1"):
    """Yield ``(line_no, fields)`` of a small side file, checking the field count."""
    lo, hi = (n, n) if isinstance(n, int) else n
    for no, line in enumerate(_lines(path, encoding), start=1):
        if not line.strip():
            continue
        parts = line.split(sep)
        if not lo <= len(parts) <= hi:
            want = lo if lo == hi else f"{lo}-{hi}"
            raise DataError(f"{path}: line {no}: expected {want} fields, found {len(parts)}")
        yield no, parts


def _int_field(path: Path, no: int, value: str, name: str) -> int:
    if not _INT.fullmatch(value):
        raise DataError(f"{path}: line {no}: {name} {value!r} is not an integer")
    return int(value)


def _first_existing(directory: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        p = directory / name
        if p.is_file():
            return p
    return None


def _build(
    df: pd.DataFrame,
    source: str,
    titles: dict | None,
    genres: dict | None,
    attrs: pd.DataFrame | None,
) -> Interactions:
    inter = Interactions.from_arrays(
        df["user"].to_numpy(), df["item"].to_numpy(),
        df["rating"].to_numpy(dtype=np.float32), df["timestamp"].to_numpy(dtype=np.int64),
        item_titles=titles, user_attributes=attrs, source=source,
    )  # fmt: skip
    if genres:
        g = np.array([genres.get(k, "") for k in inter.item_ids.tolist()], dtype=object)
        inter = dataclasses.replace(inter, extra={**inter.extra, "item_genres": g})
    return inter


# --------------------------------------------------------------------------------------------
# MovieLens 100k


def load_ml100k(path: Path) -> Interactions:
    """``u.data`` (+ ``u.user``, ``u.item``) from a directory or the ``u.data`` file itself."""
    data = path / "u.data" if path.is_dir() else path
    folder = data.parent
    df = _read_ml_ratings(data, "\t")
    attrs = None
    users_file = folder / "u.user"
    if users_file.is_file():
        rows = {}
        for no, (uid, age, gender, occ, zc) in _fields(users_file, "|", 5):
            a = _int_field(users_file, no, age, "age")
            rows[_int_field(users_file, no, uid, "user id")] = (a, age_band(a), gender, occ, zc)
        attrs = pd.DataFrame.from_dict(
            rows, orient="index", columns=["age", "age_band", "gender", "occupation", "zip"]
        )
    titles = genres = None
    items_file = folder / "u.item"
    if items_file.is_file():
        titles, genres = {}, {}
        for no, parts in _fields(items_file, "|", 5 + len(ML100K_GENRES)):
            iid = _int_field(items_file, no, parts[0], "item id")
            titles[iid] = parts[1]
            flags = parts[5:]
            genres[iid] = "|".join(g for g, f in zip(ML100K_GENRES, flags, strict=True) if f == "1")
    return _build(df, f"ml-100k:{data}", titles, genres, attrs)


# --------------------------------------------------------------------------------------------
# MovieLens 1M / 10M (``::``)


def _ml1m_ratings_file(path: Path) -> Path:
    if path.is_file():
        return path
    found = _first_existing(path, ("ratings.dat", "ratings.dat.gz"))
    if found is not None:
        return found
    cands = sorted(p for p in path.glob("ratings*.dat*") if p.name.endswith((".dat", ".dat.gz")))
    if len(cands) == 1:
        return cands[0]
    if not cands:
        raise DataError(f"{path}: no ratings.dat (or ratings*.dat[.gz]) file in this directory")
    names = ", ".join(p.name for p in cands)
    raise DataError(f"{path}: several ratings files ({names}); pass the one to use as the path")


def load_ml1m(path: Path) -> Interactions:
    """ml-1m / ml-10m ``::`` files; ``path`` is the directory or the ratings file."""
    ratings = _ml1m_ratings_file(path)
    folder = ratings.parent
    df = _read_ml_ratings(ratings, "::")
    attrs = None
    users_file = _first_existing(folder, ("users.dat", "users.dat.gz"))
    if users_file is not None:
        rows = {}
        for no, (uid, gender, age, occ, zc) in _fields(users_file, "::", 5):
            code = _int_field(users_file, no, age, "age code")
            ocode = _int_field(users_file, no, occ, "occupation code")
            if code not in ML1M_AGE_CODES or not 0 <= ocode < len(OCCUPATIONS):
                raise DataError(f"{users_file}: line {no}: unknown age or occupation code")
            band = AGE_BANDS[ML1M_AGE_CODES[code]]
            key = _int_field(users_file, no, uid, "user id")
            rows[key] = (band, gender, OCCUPATIONS[ocode], zc)
        attrs = pd.DataFrame.from_dict(
            rows, orient="index", columns=["age_band", "gender", "occupation", "zip"]
        )
    titles = genres = None
    movies_file = _first_existing(folder, ("movies.dat", "movies.dat.gz"))
    if movies_file is not None:
        titles, genres = {}, {}
        for no, (iid, title, gen) in _fields(movies_file, "::", 3):
            k = _int_field(movies_file, no, iid, "movie id")
            titles[k], genres[k] = title, gen
    return _build(df, f"ml-1m:{ratings}", titles, genres, attrs)


# --------------------------------------------------------------------------------------------
# MovieLens CSV releases (20m, 25m, latest)

_ML_CSV_COLUMNS = ("userId", "movieId", "rating", "timestamp")


def load_ml_csv(path: Path) -> Interactions:
    """``ratings.csv`` (+ ``movies.csv``) of ml-20m / ml-25m / ml-latest(-small)."""
    ratings = path if path.is_file() else _first_existing(path, ("ratings.csv", "ratings.csv.gz"))
    if ratings is None:
        raise DataError(f"{path}: no ratings.csv in this directory")
    raw = _read_bytes(ratings)
    header = raw.split(b"\n", 1)[0].decode("latin-1").strip().split(",")
    missing = [c for c in _ML_CSV_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{ratings}: line 1: missing column(s) {', '.join(missing)} in the header")
    dtypes = {"userId": np.int64, "movieId": np.int64, "rating": np.float64, "timestamp": np.int64}
    try:
        df = pd.read_csv(io.BytesIO(raw), usecols=list(_ML_CSV_COLUMNS), dtype=dtypes, engine="c")
    except (ValueError, OverflowError, pd.errors.ParserError):
        lines = _decode(raw, ratings, "latin-1").splitlines()
        pos = {c: header.index(c) for c in _ML_CSV_COLUMNS}
        ints = {pos["userId"]: "user id", pos["movieId"]: "item id", pos["timestamp"]: "timestamp"}
        msg = _diagnose(
            lines[1:],
            ratings,
            lambda s: s.split(","),
            len(header),
            ints,
            {pos["rating"]: "rating"},
            start=2,
        )
        raise DataError(msg or f"{ratings}: cannot parse as MovieLens ratings.csv") from None
    df.columns = ["user", "item", "rating", "timestamp"]
    if df.empty:
        raise DataError(f"{ratings}: no rows after the header")
    _check_values(df, ratings, lambda: _decode(raw, ratings, "latin-1").splitlines(), header=True)
    titles = genres = None
    movies = _first_existing(ratings.parent, ("movies.csv", "movies.csv.gz"))
    if movies is not None:
        titles, genres = {}, {}
        reader = csv.reader(_lines(movies, "utf-8"))
        head = next(reader, [])
        if "movieId" not in head or "title" not in head:
            raise DataError(f"{movies}: line 1: expected columns movieId,title[,genres]")
        ci, ct = head.index("movieId"), head.index("title")
        cg = head.index("genres") if "genres" in head else None
        for row in reader:
            no = reader.line_num
            if not row:
                continue
            if len(row) != len(head):
                msg = f"expected {len(head)} fields, found {len(row)}"
                raise DataError(f"{movies}: line {no}: {msg}")
            k = _int_field(movies, no, row[ci], "movie id")
            titles[k] = row[ct]
            if cg is not None:
                genres[k] = row[cg]
    return _build(df, f"ml-csv:{ratings}", titles, genres, None)


# --------------------------------------------------------------------------------------------
# generic CSV / Parquet logs


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
        raw = _read_bytes(path)
        if not separator:
            raise DataError("`data.separator` must not be empty")
        data = raw.replace(separator.encode(), _SEP.encode()) if len(separator) > 1 else raw
        csep = _SEP if len(separator) > 1 else separator
        try:
            frame = pd.read_csv(io.BytesIO(data), sep=csep, engine="c")
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: empty file") from None
        except (ValueError, pd.errors.ParserError) as exc:
            text = _decode(raw, path, "utf-8").splitlines()
            head = next(csv.reader(text[:1], delimiter=csep), [])
            split = (
                (lambda s: next(csv.reader([s], delimiter=separator)))
                if len(separator) == 1
                else (lambda s: s.split(separator))
            )
            msg = _diagnose(text[1:], path, split, len(head), {}, {}, start=2)
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(msg or f"{path}: cannot parse CSV ({why})") from None
        header, row_word = True, "line"

        def lines() -> list[str]:
            return _decode(raw, path, "utf-8").splitlines()

    available = [str(c) for c in frame.columns]
    mapping = resolve_columns(columns, available, path)
    if frame.empty:
        raise DataError(f"{path}: no rows")

    def where(row: int) -> str:
        n = _line_of_row(lines(), row, header) if row_word == "line" else row + 1
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
    _check_values(df, path, lines, header=header, row_word=row_word)
    return _build(df, f"{fmt}:{path}", None, None, None)


# --------------------------------------------------------------------------------------------
# dispatch


def detect_source(path: Path) -> str:
    """Guess the loader for ``path`` (a directory or a file) from file names and headers."""
    if path.is_dir():
        if (path / "u.data").is_file():
            return "ml-100k"
        if _first_existing(path, ("ratings.csv", "ratings.csv.gz")) is not None:
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
            head = _read_bytes(path).split(b"\n", 1)[0].decode("latin-1").strip().split(",")
            if all(c in head for c in _ML_CSV_COLUMNS):
                return "ml-csv"
        return "csv"
    raise DataError(f"{path}: unknown data format; pass --source (one of {', '.join(SOURCES)})")


def load_interactions(cfg: DataConfig, seed: int = 0) -> Interactions:
    """Load (or generate) the interaction table described by ``cfg``.

    ``seed`` only matters for ``source = "synthetic"``. Raises :class:`DataError` on bad input.
    """
    source = cfg.source
    if source == "synthetic":
        from ppr.data.synthetic import generate_synthetic

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

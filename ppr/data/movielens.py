"""MovieLens releases -> :class:`Interactions`, with the releases' side files and code tables.

- :func:`load_ml100k`: ``u.data`` (tab separated), ``u.user`` and ``u.item`` (``|``, Latin-1)
  when present;
- :func:`load_ml1m`: ``::``-separated ml-1m / ml-10m (``ratings.dat`` or any
  ``ratings*.dat[.gz]``, ``users.dat``, ``movies.dat``; plain or gzip);
- :func:`load_ml_csv`: ml-20m / ml-25m / ml-latest (``ratings.csv`` + ``movies.csv``, UTF-8).

Invariants: every failure caused by the input raises :class:`DataError` with one line naming the
file and the 1-based line; never a raw pandas error. Ratings files are read by pandas' C engine
with explicit dtypes; only when that fails is the file re-scanned line by line to say *where* it
is wrong (:mod:`ppr.data._parse`). Side files keep titles (Latin-1 decoded for ``.dat`` /
``u.item``) and user attributes with the columns of :data:`ATTRIBUTE_COLUMNS` (``age`` and
``zip`` where the release has them). Genres, when present, go to ``extra["item_genres"]``.
ml-1m age and occupation codes map into :data:`AGE_BANDS` and :data:`OCCUPATIONS`; ml-100k ages
in years map to the same bands (:func:`age_band`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from ppr.data._parse import (
    SEP,
    build,
    check_values,
    decode,
    diagnose,
    fields,
    first_existing,
    int_field,
    read_bytes,
    read_lines,
)
from ppr.data.interactions import Interactions
from ppr.errors import DataError

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
ML_CSV_COLUMNS = ("userId", "movieId", "rating", "timestamp")  # required in a ratings.csv header
_ML_INTS = {0: "user id", 1: "item id", 3: "timestamp"}
_ML_FLOATS = {2: "rating"}


def age_band(age: int) -> str:
    """MovieLens-1M age band (``AGE_BANDS``) of an age in years."""
    edges = (18, 25, 35, 45, 50, 56)
    return AGE_BANDS[int(np.searchsorted(edges, age, side="right"))]


def _read_ml_ratings(path: Path, sep: str) -> pd.DataFrame:
    """Headerless ``user<sep>item<sep>rating<sep>timestamp`` file -> checked frame."""
    raw = read_bytes(path)
    data = raw.replace(sep.encode(), SEP.encode()) if len(sep) > 1 else raw
    csep = SEP if len(sep) > 1 else sep
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
        lines = decode(raw, path, "latin-1").splitlines()
        msg = diagnose(lines, path, lambda s: s.split(sep), 4, _ML_INTS, _ML_FLOATS)
        raise DataError(msg or f"{path}: cannot parse as {sep!r}-separated ratings")
    df.columns = ["user", "item", "rating", "timestamp"]
    check_values(df, path, lambda: decode(raw, path, "latin-1").splitlines(), header=False)
    return df


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
        for no, (uid, age, gender, occ, zc) in fields(users_file, "|", 5):
            a = int_field(users_file, no, age, "age")
            rows[int_field(users_file, no, uid, "user id")] = (a, age_band(a), gender, occ, zc)
        attrs = pd.DataFrame.from_dict(
            rows, orient="index", columns=["age", "age_band", "gender", "occupation", "zip"]
        )
    titles = genres = None
    items_file = folder / "u.item"
    if items_file.is_file():
        titles, genres = {}, {}
        for no, parts in fields(items_file, "|", 5 + len(ML100K_GENRES)):
            iid = int_field(items_file, no, parts[0], "item id")
            titles[iid] = parts[1]
            flags = parts[5:]
            genres[iid] = "|".join(g for g, f in zip(ML100K_GENRES, flags, strict=True) if f == "1")
    return build(df, f"ml-100k:{data}", titles, genres, attrs)


# --------------------------------------------------------------------------------------------
# MovieLens 1M / 10M (``::``)


def _ml1m_ratings_file(path: Path) -> Path:
    if path.is_file():
        return path
    found = first_existing(path, ("ratings.dat", "ratings.dat.gz"))
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
    users_file = first_existing(folder, ("users.dat", "users.dat.gz"))
    if users_file is not None:
        rows = {}
        for no, (uid, gender, age, occ, zc) in fields(users_file, "::", 5):
            code = int_field(users_file, no, age, "age code")
            ocode = int_field(users_file, no, occ, "occupation code")
            if code not in ML1M_AGE_CODES or not 0 <= ocode < len(OCCUPATIONS):
                raise DataError(f"{users_file}: line {no}: unknown age or occupation code")
            band = AGE_BANDS[ML1M_AGE_CODES[code]]
            key = int_field(users_file, no, uid, "user id")
            rows[key] = (band, gender, OCCUPATIONS[ocode], zc)
        attrs = pd.DataFrame.from_dict(
            rows, orient="index", columns=["age_band", "gender", "occupation", "zip"]
        )
    titles = genres = None
    movies_file = first_existing(folder, ("movies.dat", "movies.dat.gz"))
    if movies_file is not None:
        titles, genres = {}, {}
        for no, (iid, title, gen) in fields(movies_file, "::", 3):
            k = int_field(movies_file, no, iid, "movie id")
            titles[k], genres[k] = title, gen
    return build(df, f"ml-1m:{ratings}", titles, genres, attrs)


# --------------------------------------------------------------------------------------------
# MovieLens CSV releases (20m, 25m, latest)


def load_ml_csv(path: Path) -> Interactions:
    """``ratings.csv`` (+ ``movies.csv``) of ml-20m / ml-25m / ml-latest(-small)."""
    ratings = path if path.is_file() else first_existing(path, ("ratings.csv", "ratings.csv.gz"))
    if ratings is None:
        raise DataError(f"{path}: no ratings.csv in this directory")
    raw = read_bytes(ratings)
    header = raw.split(b"\n", 1)[0].decode("latin-1").strip().split(",")
    missing = [c for c in ML_CSV_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{ratings}: line 1: missing column(s) {', '.join(missing)} in the header")
    dtypes = {"userId": np.int64, "movieId": np.int64, "rating": np.float64, "timestamp": np.int64}
    try:
        df = pd.read_csv(io.BytesIO(raw), usecols=list(ML_CSV_COLUMNS), dtype=dtypes, engine="c")
    except (ValueError, OverflowError, pd.errors.ParserError):
        lines = decode(raw, ratings, "latin-1").splitlines()
        pos = {c: header.index(c) for c in ML_CSV_COLUMNS}
        ints = {pos["userId"]: "user id", pos["movieId"]: "item id", pos["timestamp"]: "timestamp"}
        msg = diagnose(
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
    check_values(df, ratings, lambda: decode(raw, ratings, "latin-1").splitlines(), header=True)
    titles = genres = None
    movies = first_existing(ratings.parent, ("movies.csv", "movies.csv.gz"))
    if movies is not None:
        titles, genres = {}, {}
        reader = csv.reader(read_lines(movies, "utf-8"))
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
            k = int_field(movies, no, row[ci], "movie id")
            titles[k] = row[ct]
            if cg is not None:
                genres[k] = row[cg]
    return build(df, f"ml-csv:{ratings}", titles, genres, None)

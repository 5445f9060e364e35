"""Loaders: real MovieLens files (skipped without PPR_DATA_DIR) and malformed fixtures."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ppr.config import DataConfig
from ppr.data.loaders import detect_source, load_interactions
from ppr.data.manifest import guess_dataset, verify_dataset
from ppr.errors import DataError


def load(path: Path | str, source: str = "auto", **kw):
    return load_interactions(DataConfig(source=source, path=str(path), **kw))


def title_of(inter, item_id: int) -> str:
    return inter.item_titles[int(np.flatnonzero(inter.item_ids == item_id)[0])]


# ---------------------------------------------------------------------------- real data


def test_ml100k_real(ml100k_dir):
    inter = load(ml100k_dir, "ml-100k")
    assert (inter.n_users, inter.n_items, len(inter)) == (943, 1682, 100_000)
    assert title_of(inter, 1) == "Toy Story (1995)"
    assert title_of(inter, 543) == "Misérables, Les (1995)"  # Latin-1 decoded
    counts = np.unique(inter.ratings, return_counts=True)[1]
    assert counts.tolist() == [6110, 11370, 27145, 34174, 21201]
    assert (int(inter.timestamps.min()), int(inter.timestamps.max())) == (874724710, 893286638)
    a = inter.user_attributes
    assert len(a) == 943 and a.iloc[0].to_dict() == {
        "age": 24, "age_band": "18-24", "gender": "M", "occupation": "technician", "zip": "85711",
    }  # fmt: skip
    assert inter.extra["item_genres"][0] == "Animation|Children's|Comedy"
    assert np.bincount(inter.users).min() >= 20
    # the u.data file itself and auto detection give the same table
    again = load(ml100k_dir / "u.data")
    assert np.array_equal(again.users, inter.users) and np.array_equal(again.items, inter.items)


def test_ml1m_partial_real(ml1m_dir):
    inter = load(ml1m_dir, "ml-1m")
    assert (inter.n_users, inter.n_items, len(inter)) == (2999, 3615, 487_650)
    counts = np.unique(inter.ratings, return_counts=True)[1]
    assert counts.tolist() == [27472, 53838, 127216, 170579, 108545]
    assert title_of(inter, 1) == "Toy Story (1995)"
    assert title_of(inter, 73) == "Misérables, Les (1995)"
    first = inter.user_attributes.iloc[0].to_dict()
    assert first == {"age_band": "Under 18", "gender": "F", "occupation": "K-12 student",
                     "zip": "48067"}  # fmt: skip
    assert detect_source(ml1m_dir) == "ml-1m"


def test_real_manifest_verification(ml100k_dir, ml1m_dir):
    rows = verify_dataset("ml-100k", ml100k_dir)
    assert rows and all(r.ok for r in rows), rows
    assert guess_dataset(ml1m_dir) == "ml-1m-partial"
    assert all(r.ok for r in verify_dataset("ml-1m-partial", ml1m_dir))
    full = {r.file: r for r in verify_dataset("ml-1m", ml1m_dir)}
    assert not full["ratings.dat"].ok and full["ratings.dat"].detail == "missing"
    assert full["users.dat"].ok


# ---------------------------------------------------------------------------- fixtures


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def ml100k(tmp_path: Path, data: str) -> Path:
    write(tmp_path / "u.data", data)
    return tmp_path


GOOD_100K = "1\t10\t5\t100\n1\t20\t3\t101\n2\t10\t4\t102\n"


def test_ml100k_without_side_files(tmp_path):
    inter = load(ml100k(tmp_path, GOOD_100K))
    assert inter.item_titles is None and inter.user_attributes is None
    assert inter.user_ids.tolist() == [1, 2] and inter.item_ids.tolist() == [10, 20]
    assert inter.ratings.dtype == np.float32 and inter.timestamps.tolist() == [100, 101, 102]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            "1\t10\t5\t100\n1\t20\t3\t101\nx7\t10\t4\t102\n",
            "line 3: user id 'x7' is not an integer",
        ),
        ("1\t10\t5\t100\n1\tabc\t3\t101\n", "line 2: item id 'abc' is not an integer"),
        ("1\t10\t5\t100\n1\t20\t\t101\n", "line 2: rating is empty or not a finite number"),
        ("1\t10\tnan\t100\n", "line 1: rating is empty or not a finite number"),
        ("1\t10\t5\t100\n1\t20\t3\n", "line 2: expected 4 fields, found 3"),
        ("1\t10\t5\t100\n1\t20\t3\t4\t9\n", "line 2: expected 4 fields, found 5"),
        ("1\t10\t5\t100\n\n1\t20\t3\t101\n1\t10\t2\t102\n", "line 4: duplicate (user, item) pair"),
        ("", "empty file"),
        ("\n\n", "empty file"),
    ],
)
def test_ml100k_malformed(tmp_path, data, expected):
    with pytest.raises(DataError) as err:
        load(ml100k(tmp_path, data), "ml-100k")
    msg = str(err.value)
    assert "u.data" in msg and expected in msg and "\n" not in msg


def test_duplicate_names_first_occurrence(tmp_path):
    with pytest.raises(DataError, match=r"line 3: duplicate .*first seen on line 1"):
        load(ml100k(tmp_path, "1\t10\t5\t1\n2\t10\t5\t1\n1\t10\t3\t2\n"))


def test_ml100k_side_files_latin1_and_errors(tmp_path):
    ml100k(tmp_path, GOOD_100K)
    flags = "|".join(["0"] * 18)
    write(tmp_path / "u.item", b"10|Caf\xe9 (1990)|01-Jan-1990||url|1|" + flags.encode() + b"\n")
    write(tmp_path / "u.user", "1|30|F|writer|12345\n2|17|M|student|54321\n")
    inter = load(tmp_path)
    assert title_of(inter, 10) == "Café (1990)" and title_of(inter, 20) == ""
    assert inter.user_attributes["age_band"].tolist() == ["25-34", "Under 18"]
    write(tmp_path / "u.user", "1|30|F|writer|12345\n2|old|M|student|54321\n")
    with pytest.raises(DataError, match=r"u\.user: line 2: age 'old' is not an integer"):
        load(tmp_path)


def test_ml1m_formats(tmp_path):
    d = tmp_path / "ml"
    write(d / "ratings.dat", "1::1193::5::978300760\n2::661::3::978302109\n")
    write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    write(d / "movies.dat", b"1193::Caf\xe9 (1990)::Drama\n661::Other (1991)::Comedy|Drama\n")
    inter = load(d)
    assert inter.source.startswith("ml-1m:")
    assert title_of(inter, 1193) == "Café (1990)"
    assert inter.extra["item_genres"].tolist() == ["Comedy|Drama", "Drama"]
    assert inter.user_attributes["occupation"].tolist() == ["K-12 student", "self-employed"]
    # gzip ratings in another folder, any ratings*.dat.gz name, no side files (like ml-10m)
    g = tmp_path / "gz"
    write(g / "ratings-part.dat.gz", gzip.compress(b"5::1::3.5::1\n5::2::4::2\n"))
    inter = load(g, "ml-1m")
    assert inter.ratings.tolist() == [3.5, 4.0] and inter.user_attributes is None
    assert np.array_equal(load(g / "ratings-part.dat.gz").ratings, inter.ratings)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("ratings.dat", "1::2::5::1\n1::b::5::2\n", "line 2: item id 'b' is not an integer"),
        ("ratings.dat", "1::2::5::1\n1::3::5\n", "line 2: expected 4 fields, found 3"),
        ("ratings.dat.gz", gzip.compress(b"1::2::5::1\n")[:-6], "corrupt gzip"),
        ("ratings.dat.gz", b"1::2::5::1\n", "not a gzip file"),
        ("ratings.dat", "", "empty file"),
    ],
)
def test_ml1m_malformed(tmp_path, name, content, expected):
    write(tmp_path / name, content)
    with pytest.raises(DataError) as err:
        load(tmp_path, "ml-1m")
    assert name in str(err.value) and expected in str(err.value)


def test_ml1m_ambiguous_and_bad_users(tmp_path):
    write(tmp_path / "ratings-a.dat", "1::2::5::1\n")
    write(tmp_path / "ratings-b.dat", "1::2::5::1\n")
    with pytest.raises(DataError, match="several ratings files"):
        load(tmp_path, "ml-1m")
    (tmp_path / "ratings-b.dat").unlink()
    write(tmp_path / "users.dat", "1::F::7::10::48067\n")
    with pytest.raises(DataError, match=r"users\.dat: line 1: unknown age or occupation code"):
        load(tmp_path, "ml-1m")


def test_ml_csv(tmp_path):
    write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n2,1,2.5,1\n",
    )
    write(
        tmp_path / "movies.csv",
        'movieId,title,genres\n1,"Amélie, or not (2001)",Comedy|Romance\n3,Plain (1999),Drama\n',
    )
    inter = load(tmp_path)
    assert inter.source.startswith("ml-csv:")
    assert title_of(inter, 1) == "Amélie, or not (2001)"
    assert inter.ratings.tolist() == [4.0, 4.5, 2.5]
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,9\n1,3,good,9\n")
    with pytest.raises(DataError, match=r"ratings\.csv: line 3: rating 'good' is not a finite"):
        load(tmp_path)
    write(tmp_path / "ratings.csv", "userId,movieId,stars,timestamp\n1,1,4.0,9\n")
    with pytest.raises(DataError, match=r"missing column.*rating"):
        load(tmp_path, "ml-csv")


def test_generic_csv_mapping_and_string_ids(tmp_path):
    f = write(
        tmp_path / "log.csv", "uid,sku,stars,when\nbob,B-2,5,10\nann,A-1,3,11\nbob,A-1,4,12\n"
    )
    cols = {"user": "uid", "item": "sku", "rating": "stars", "timestamp": "when"}
    inter = load(f, "csv", columns=cols)
    assert inter.user_ids.tolist() == ["ann", "bob"] and inter.item_ids.tolist() == ["A-1", "B-2"]
    assert inter.users.tolist() == [1, 0, 1] and inter.items.tolist() == [1, 0, 0]
    assert inter.ratings.tolist() == [5.0, 3.0, 4.0] and inter.timestamps.tolist() == [10, 11, 12]
    # rating / timestamp optional -> 1.0 / 0
    inter = load(f, "csv", columns={"user": "uid", "item": "sku"})
    assert inter.ratings.tolist() == [1.0] * 3 and inter.timestamps.tolist() == [0] * 3
    with pytest.raises(DataError, match=r"column.*nope.*not found"):
        load(f, "csv", columns={"user": "nope", "item": "sku"})
    with pytest.raises(DataError, match="unknown key"):
        load(f, "csv", columns={"user": "uid", "item": "sku", "weight": "stars"})
    with pytest.raises(DataError, match="no user/item columns"):
        load(f, "csv")


def test_generic_csv_errors_and_options(tmp_path):
    cols = {"user": "u", "item": "i", "rating": "r", "timestamp": "t"}
    f = write(tmp_path / "a.csv", "u,i,r,t\n1,2,5,2020-01-01T00:00:00Z\n1,3,4,2020-01-02\n")
    assert load(f, "csv", columns=cols).timestamps.tolist() == [1577836800, 1577923200]
    write(f, "u,i,r,t\n1,2,5,1\n1,3,,2\n")
    with pytest.raises(DataError, match=r"a\.csv: line 3: rating .* not a finite number"):
        load(f, "csv", columns=cols)
    write(f, "u,i,r,t\n1,2,5,1\n,3,4,2\n")
    with pytest.raises(DataError, match=r"line 3: empty user id"):
        load(f, "csv", columns=cols)
    write(f, "u,i,r,t\n1,2,5,1\n1,3,4,2,7\n")
    with pytest.raises(DataError, match=r"line 3: expected 4 fields, found 5"):
        load(f, "csv", columns=cols)
    write(f, "u,i,r,t\n1,2,5,1\n1,2,4,2\n")
    with pytest.raises(DataError, match=r"line 3: duplicate .* first seen on line 2"):
        load(f, "csv", columns=cols)
    tsv = write(tmp_path / "b.tsv", "user\titem\n1\t2\n2\t2\n")  # tab by suffix, default names
    assert len(load(tsv, "csv")) == 2
    odd = write(tmp_path / "c.txt", "user::item\n1::2\n2::2\n")
    assert load(odd, "csv", separator="::").item_ids.tolist() == [2]


def test_parquet(tmp_path):
    f = tmp_path / "log.parquet"
    pd.DataFrame({"a": ["x", "y"], "b": [3, 4], "r": [1.5, 2.0]}).to_parquet(f)
    inter = load(f, columns={"user": "a", "item": "b", "rating": "r"})
    assert inter.source.startswith("parquet:") and inter.ratings.tolist() == [1.5, 2.0]
    pd.DataFrame({"a": ["x", "y"], "b": [3, 4], "r": [1.5, np.nan]}).to_parquet(f)
    with pytest.raises(DataError, match=r"row 2: rating"):
        load(f, columns={"user": "a", "item": "b", "rating": "r"})
    write(f, b"PAR1 not really parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load(f)


def test_dispatch_errors(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        load(tmp_path / "missing", "ml-100k")
    with pytest.raises(DataError, match=r"`data\.path` is empty"):
        load("", "csv")
    with pytest.raises(DataError, match="unknown data source 'ml-2m'"):
        load(tmp_path, "ml-2m")
    with pytest.raises(DataError, match="cannot guess the data format"):
        load(tmp_path)
    with pytest.raises(DataError, match="unknown data format"):
        load(write(tmp_path / "x.xyz", "1"))
    with pytest.raises(DataError, match="is a directory"):
        load(tmp_path, "csv")


def test_verify_mismatch_and_counts(tmp_path):
    ml100k(tmp_path, GOOD_100K)
    rows = {r.file: r for r in verify_dataset("ml-100k", tmp_path, load(tmp_path))}
    assert not rows["u.data"].ok and "mismatch" in rows["u.data"].detail
    assert rows["u.item"].detail == "missing"
    assert not rows["(counts)"].ok and "expected 943 / 1682 / 100000" in rows["(counts)"].detail
    assert guess_dataset(tmp_path) == "ml-100k"
    with pytest.raises(DataError, match="unknown dataset"):
        verify_dataset("ml-3m", tmp_path)

"""Synthetic generator: determinism, sizes, shape of the distributions, signal, round trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ppr.config import DataConfig, SyntheticConfig
from ppr.data.loaders import load_interactions
from ppr.data.movielens import AGE_BANDS, OCCUPATIONS
from ppr.data.synthetic import (
    SPAN_SECONDS,
    START_TIME,
    activity_counts,
    generate_synthetic,
    write_interactions,
)
from ppr.errors import ConfigError, DataError

DEFAULT = SyntheticConfig()


@pytest.fixture(scope="module")
def default_data():
    return generate_synthetic(DEFAULT, 0)


def arrays(inter):
    return (inter.users, inter.items, inter.ratings, inter.timestamps, inter.item_ids)


def test_deterministic_per_seed(default_data):
    again = generate_synthetic(DEFAULT, 0)
    for a, b in zip(arrays(default_data), arrays(again), strict=True):
        assert np.array_equal(a, b)
    pd.testing.assert_frame_equal(default_data.user_attributes, again.user_attributes)
    other = generate_synthetic(DEFAULT, 1)
    assert len(other) != len(default_data) or not np.array_equal(other.items, default_data.items)
    assert not default_data.user_attributes.equals(other.user_attributes)


def test_sizes_and_invariants(default_data):
    x = default_data
    assert x.n_users == DEFAULT.n_users and x.n_items <= DEFAULT.n_items
    assert 0.98 * DEFAULT.n_interactions <= len(x) <= DEFAULT.n_interactions  # cap at n_items
    assert x.users.dtype == np.int32 and x.items.dtype == np.int32
    assert x.ratings.dtype == np.float32 and x.timestamps.dtype == np.int64
    assert np.bincount(x.items, minlength=x.n_items).min() >= 1  # only used items kept
    assert np.all(np.diff(x.item_ids) > 0) and x.user_ids.tolist() == list(range(1, 601))
    assert set(np.unique(x.ratings).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert START_TIME <= x.timestamps.min() and x.timestamps.max() <= START_TIME + SPAN_SECONDS
    key = x.users.astype(np.int64) * (1 << 32) + x.timestamps - START_TIME
    assert np.all(np.diff(key) >= 0)  # sorted by (user, time)
    assert x.item_titles[0] == f"Synthetic movie {x.item_ids[0]}"


def test_rating_histogram_is_movielens_like(default_data):
    share = np.bincount(default_data.ratings.astype(int), minlength=6)[1:] / len(default_data)
    assert np.allclose(share, [0.06, 0.11, 0.27, 0.34, 0.22], atol=0.01)


def test_min_per_user_and_activity_skew(default_data):
    counts = np.bincount(default_data.users)
    assert counts.min() >= DEFAULT.min_per_user
    assert counts.max() / np.median(counts) >= 5
    flat = generate_synthetic(dataclasses.replace(DEFAULT, activity_sigma=0.0), 0)
    flat_counts = np.bincount(flat.users)
    assert flat_counts.max() - flat_counts.min() <= 1


def test_activity_counts_sum_to_target():
    cfg = SyntheticConfig(n_users=1000, n_items=5000, n_interactions=80_000, min_per_user=20)
    n = activity_counts(cfg, np.random.default_rng(3))
    assert n.sum() == 80_000 and n.min() >= 20 and n.max() <= 5000
    tight = SyntheticConfig(n_users=100, n_items=50, n_interactions=10, min_per_user=5)
    assert activity_counts(tight, np.random.default_rng(0)).tolist() == [5] * 100


def top_share(inter, frac: float) -> float:
    c = np.sort(np.bincount(inter.items, minlength=inter.n_items))[::-1]
    return c[: max(1, int(frac * len(c)))].sum() / c.sum()


def test_power_law_popularity():
    cfg = SyntheticConfig(n_users=2000, n_items=3000, n_interactions=100_000)
    zipf = generate_synthetic(cfg, 0)
    flat = generate_synthetic(dataclasses.replace(cfg, popularity_exponent=0.0), 0)
    assert top_share(zipf, 0.01) > 0.15  # 30 of 3000 items take > 15% of rows
    assert top_share(zipf, 0.10) > 0.45
    assert top_share(flat, 0.01) < 0.05
    assert len(zipf) == cfg.n_interactions  # pool sampling gives every user exactly n_u items


def test_concentrated_popularity_falls_back_to_exact_sampling():
    # Zipf exponent 3: candidate pools hold few distinct items, so users fall back to full ranking
    cfg = SyntheticConfig(n_users=300, n_items=4000, n_interactions=30_000, popularity_exponent=3.0,
                          activity_sigma=0.3)  # fmt: skip
    x = generate_synthetic(cfg, 5)
    assert len(x) == 30_000 and x.n_items > 100


def test_attributes_present_and_explain_latent_factors(default_data):
    a = default_data.user_attributes
    assert list(a.columns) == ["age_band", "gender", "occupation"] and len(a) == 600
    assert not a.isna().any().any()
    assert set(a["age_band"]) <= set(AGE_BANDS) and set(a["occupation"]) <= set(OCCUPATIONS)
    assert set(a["gender"]) == {"M", "F"}
    big = generate_synthetic(SyntheticConfig(n_users=5000, n_items=500, n_interactions=60_000), 0)
    onehot = pd.get_dummies(big.user_attributes).to_numpy(dtype=float)
    p = big.extra["latent_users"].astype(float)
    coef, *_ = np.linalg.lstsq(onehot, p, rcond=None)
    r2 = 1 - ((p - onehot @ coef) ** 2).sum() / ((p - p.mean(0)) ** 2).sum()
    assert 0.2 < r2 < 0.7  # attributes explain a real but partial share (cold start)


def _recall(scores, train, test, k=20):
    s = scores.copy()
    s[train] = -np.inf
    top = np.argsort(-s, axis=1)[:, :k]
    truth = np.zeros(s.shape, dtype=bool)
    truth[test] = True
    hits = np.take_along_axis(truth, top, axis=1).sum(axis=1)
    n = truth.sum(axis=1)
    return float(np.mean(hits[n > 0] / np.minimum(k, n[n > 0])))


def test_positives_carry_learnable_signal(default_data):
    """Implicit ALS on ratings >= 4 beats popularity clearly (recall@20, 80/20 split)."""
    x = default_data
    pos = x.ratings >= 4
    u, i = x.users[pos], x.items[pos]
    held = np.random.default_rng(1).random(u.shape[0]) < 0.2
    train, test = (u[~held], i[~held]), (u[held], i[held])
    r = np.zeros((x.n_users, x.n_items))
    r[train] = 1.0
    c = 1 + 10.0 * r
    rng = np.random.default_rng(0)
    p, q = np.zeros((x.n_users, 16)), rng.normal(0, 0.1, (x.n_items, 16))
    for _ in range(8):
        for a, b, cm, rm in ((p, q, c, r), (q, p, c.T, r.T)):
            btb = b.T @ b + np.eye(16)
            for row in range(a.shape[0]):
                a[row] = np.linalg.solve(btb + (b.T * (cm[row] - 1)) @ b, (b.T * cm[row]) @ rm[row])
    pop = np.bincount(train[1], minlength=x.n_items).astype(float)
    pop_recall = _recall(np.tile(pop, (x.n_users, 1)), train, test)
    mf_recall = _recall(p @ q.T, train, test)
    assert mf_recall > 1.3 * pop_recall, (mf_recall, pop_recall)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"n_users": 0}, "n_users"),
        ({"dim": -1}, "dim"),
        ({"popularity_exponent": float("nan")}, "popularity_exponent"),
        ({"min_per_user": 401}, "min_per_user"),
    ],
)
def test_invalid_config(change, key):
    with pytest.raises(ConfigError, match=f"`data.synthetic.{key}`"):
        generate_synthetic(dataclasses.replace(DEFAULT, **change), 0)
    with pytest.raises(ConfigError, match="`seed`"):
        generate_synthetic(DEFAULT, -1)


def test_load_interactions_synthetic_source(default_data):
    x = load_interactions(DataConfig(), seed=0)
    assert np.array_equal(x.items, default_data.items)


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz", "out.tsv", "out.parquet"])
def test_write_read_round_trip(tmp_path, default_data, name):
    path = write_interactions(default_data, tmp_path / "sub" / name)
    assert sorted(p.name for p in path.parent.iterdir()) == [name]  # no temp file left
    fmt = "parquet" if name.endswith("parquet") else "csv"
    cols = {"user": "user", "item": "item", "rating": "rating", "timestamp": "timestamp"}
    back = load_interactions(DataConfig(source=fmt, path=str(path), columns=cols))
    for a, b in zip(arrays(default_data), arrays(back), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(back.user_ids, default_data.user_ids)
    assert (back.n_users, back.n_items) == (default_data.n_users, default_data.n_items)


def test_round_trip_string_ids(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("uid,iid,r\nbob,B,5\nann,A,2.5\n")
    x = load_interactions(
        DataConfig(source="csv", path=str(f), columns={"user": "uid", "item": "iid", "rating": "r"})
    )
    back = load_interactions(
        DataConfig(source="csv", path=str(write_interactions(x, tmp_path / "o.csv")))
    )
    assert back.user_ids.tolist() == ["ann", "bob"] and np.array_equal(back.ratings, x.ratings)


def test_write_unknown_suffix(tmp_path, default_data):
    with pytest.raises(DataError, match="unknown output format"):
        write_interactions(default_data, tmp_path / "out.xlsx")

"""Synthetic MovieLens-like interaction logs, deterministic from a seed.

Generative model (all draws from ``numpy.random.Generator`` streams spawned from ``seed``):

- users get coarse attributes (age band, gender, occupation with MovieLens-1M vocabularies);
  user latent vectors are the sum of one random effect per attribute value plus an individual part,
  so the attributes explain about :data:`ATTRIBUTE_SHARE` of the latent variance (cold start);
- item latent vectors are Gaussian; preference ``pref = p_u . q_i`` has unit variance;
- item popularity follows a Zipf law ``w_i ∝ rank_i^-a`` over a random ranking of the items;
- user activity is log-normal (``activity_sigma``), at least ``min_per_user``, at most ``n_items``,
  and sums to ``n_interactions`` (unless ``min_per_user`` forces more or the cap forces fewer);
- each user picks its ``n_u`` distinct items by Gumbel-top-k: items are drawn from the popularity
  law into a candidate pool (:data:`POOL_FACTOR` x ``n_u`` draws) and ranked by
  ``PREFERENCE_WEIGHT * pref + Gumbel`` (an item drawn m times keeps its best key, i.e. weight
  ∝ m * exp(beta * pref)); users whose pool would cover most of the catalogue (or comes out too
  small) rank every item by ``log w_i + beta * pref + Gumbel`` instead (exact Plackett-Luce);
- ratings 1..5 cut a latent score ``pref + user bias + item bias + noise`` at quantiles that
  reproduce the MovieLens rating histogram, so ratings >= 4 mark the higher-preference items;
- timestamps: each user is active in a window inside a three-year span starting 2000-01-01.

Invariants: same config and seed -> identical arrays; every user has at least one row; only items
with at least one row are kept (re-indexed densely by original id, like ``from_arrays``); rows are
sorted by (user, timestamp). Work is chunked over users so memory stays O(chunk + output).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ppr.config import SyntheticConfig
from ppr.data.interactions import Interactions
from ppr.data.movielens import AGE_BANDS, OCCUPATIONS
from ppr.errors import ConfigError, DataError

PREFERENCE_WEIGHT = 2.5  # beta: weight of preference against popularity in item choice
POOL_FACTOR = 4.0  # candidate pool draws per wanted item
ATTRIBUTE_SHARE = 0.4  # share of latent user variance explained by the attributes
RATING_CDF = (0.06, 0.17, 0.44, 0.78)  # MovieLens-100k: P(r<=1), P(r<=2), P(r<=3), P(r<=4)
START_TIME = 946_684_800  # 2000-01-01T00:00:00Z
SPAN_SECONDS = 3 * 365 * 86_400
AGE_PROBS = (0.037, 0.183, 0.347, 0.197, 0.091, 0.082, 0.063)  # ml-1m shares
GENDER_PROBS = (0.72, 0.28)  # M, F
_CHUNK_ELEMENTS = 1 << 22  # per-chunk budget of (user x candidate) cells


def _check(cfg: SyntheticConfig, seed: int) -> None:
    """Validate sizes first, with messages naming the key."""
    for name in ("n_users", "n_items", "n_interactions", "dim", "min_per_user"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"`data.synthetic.{name}` must be an integer >= 1. Found {v!r}.")
    for name in ("popularity_exponent", "activity_sigma"):
        v = getattr(cfg, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"`data.synthetic.{name}` must be a finite number >= 0. Found {v!r}.")
    if cfg.min_per_user > cfg.n_items:
        raise ConfigError(
            f"`data.synthetic.min_per_user` must be <= n_items ({cfg.n_items}). "
            f"Found {cfg.min_per_user}."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"`seed` must be an integer >= 0. Found {seed!r}.")


def activity_counts(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Per-user interaction counts: log-normal shares of the budget above ``min_per_user``.

    Sums to ``n_interactions`` when ``n_users * min_per_user <= n_interactions`` and no user hits
    the ``n_items`` cap; every count lies in ``[min_per_user, n_items]``.
    """
    m, total = cfg.min_per_user, cfg.n_interactions
    extra = max(0, total - cfg.n_users * m)
    share = np.exp(cfg.activity_sigma * rng.standard_normal(cfg.n_users))
    share /= share.sum()
    exact = extra * share
    base = np.floor(exact).astype(np.int64)
    short = int(extra - base.sum())
    if short > 0:  # largest remainders get the leftover units
        base[np.argsort(-(exact - base), kind="stable")[:short]] += 1
    return np.minimum(base + m, cfg.n_items)


def _user_factors(cfg: SyntheticConfig, rng: np.random.Generator):
    """Attributes (codes) and latent user vectors built from per-attribute effects."""
    u, d = cfg.n_users, cfg.dim
    scale = d**-0.25  # entries of p and q: pref = p.q has unit variance
    gender = rng.choice(2, size=u, p=GENDER_PROBS)
    age = rng.choice(len(AGE_BANDS), size=u, p=AGE_PROBS)
    occ_p = rng.dirichlet(np.full(len(OCCUPATIONS), 2.0))
    occ = rng.choice(len(OCCUPATIONS), size=u, p=occ_p)
    s_attr = scale * math.sqrt(ATTRIBUTE_SHARE / 3)
    effects = [rng.normal(0, s_attr, (k, d)) for k in (2, len(AGE_BANDS), len(OCCUPATIONS))]
    p = effects[0][gender] + effects[1][age] + effects[2][occ]
    p += rng.normal(0, scale * math.sqrt(1 - ATTRIBUTE_SHARE), (u, d))
    return gender, age, occ, p.astype(np.float32)


def _top_n_full(p_rows, n, q, log_pop, rng):
    """Exact Gumbel-top-k over all items: per row the ``n[r]`` best of log w + beta pref + G."""
    pref = p_rows @ q.T
    score = log_pop[None, :] + PREFERENCE_WEIGHT * pref
    score += rng.gumbel(size=score.shape).astype(np.float32)
    k = int(n.max())
    if k < score.shape[1]:
        head = np.argpartition(-score, k - 1, axis=1)[:, :k]
    else:
        head = np.broadcast_to(np.arange(score.shape[1]), score.shape).copy()
    order = np.argsort(-np.take_along_axis(score, head, axis=1), axis=1)
    items = np.take_along_axis(head, order, axis=1)
    take = np.arange(k)[None, :] < n[:, None]
    rows = np.nonzero(take)[0]
    chosen = items[take]
    return rows, chosen.astype(np.int32), pref[rows, chosen]


def _top_n_pool(p_rows, n, q, cdf, rng):
    """Gumbel-top-k on a popularity-drawn candidate pool; also returns rows short of items."""
    b, c = n.shape[0], math.ceil(POOL_FACTOR * n.max())
    cand = np.searchsorted(cdf, rng.random((b, c)), side="right").astype(np.int32)
    np.minimum(cand, q.shape[0] - 1, out=cand)
    pref = np.einsum("bd,bcd->bc", p_rows, q[cand])
    score = PREFERENCE_WEIGHT * pref + rng.gumbel(size=(b, c)).astype(np.float32)
    order = np.argsort(-score, axis=1)
    items = np.take_along_axis(cand, order, axis=1)
    pref = np.take_along_axis(pref, order, axis=1)
    by_item = np.argsort(items, axis=1, kind="stable")  # ties keep score order
    sorted_items = np.take_along_axis(items, by_item, axis=1)
    first_sorted = np.ones_like(sorted_items, dtype=bool)
    first_sorted[:, 1:] = sorted_items[:, 1:] != sorted_items[:, :-1]
    first = np.empty_like(first_sorted)
    np.put_along_axis(first, by_item, first_sorted, axis=1)
    take = first & (np.cumsum(first, axis=1) <= n[:, None])
    short = take.sum(axis=1) < n
    take[short] = False
    rows = np.nonzero(take)[0]
    return rows, items[take], pref[take], np.flatnonzero(short)


def _chunks(n_sorted: np.ndarray, n_items: int, dim: int):
    """Split users (sorted by activity) into runs whose work fits :data:`_CHUNK_ELEMENTS`.

    Yields ``(start, stop, full)``; ``full`` runs rank the whole catalogue (their pool would cover
    half of it or more). Pool runs are cut so that every user's pool fits the budget.
    """
    start, total, width = 0, n_sorted.shape[0], max(dim, 4)
    while start < total:
        pool = math.ceil(POOL_FACTOR * n_sorted[start])
        if 2 * pool >= n_items:
            stop = min(total, start + max(1, _CHUNK_ELEMENTS // n_items), start + 4096)
            yield start, stop, True
        else:
            window = n_sorted[start : min(total, start + 4096)]
            pools = np.ceil(POOL_FACTOR * window).astype(np.int64)
            ok = np.arange(1, window.shape[0] + 1) * pools * width <= _CHUNK_ELEMENTS
            ok &= 2 * pools < n_items
            size = window.shape[0] if ok.all() else max(1, int(np.argmin(ok)))
            stop = start + size
            yield start, stop, False
        start = stop


def _select(p, n, q, pop, rng):
    """All users' item choices -> (users, items, pref) arrays (unsorted)."""
    order = np.argsort(n, kind="stable")
    n_sorted = n[order]
    cdf = np.cumsum(pop)
    cdf /= cdf[-1]
    log_pop = np.log(pop).astype(np.float32)
    out_u, out_i, out_p = [], [], []
    for start, stop, full in _chunks(n_sorted, q.shape[0], q.shape[1]):
        users = order[start:stop]
        if full:
            rows, items, pref = _top_n_full(p[users], n_sorted[start:stop], q, log_pop, rng)
        else:
            rows, items, pref, short = _top_n_pool(p[users], n_sorted[start:stop], q, cdf, rng)
            if short.size:
                rows2, items2, pref2 = _top_n_full(
                    p[users[short]], n_sorted[start:stop][short], q, log_pop, rng
                )
                rows = np.concatenate([rows, short[rows2]])
                items = np.concatenate([items, items2])
                pref = np.concatenate([pref, pref2])
        out_u.append(users[rows].astype(np.int32))
        out_i.append(items.astype(np.int32))
        out_p.append(pref.astype(np.float32))
    return np.concatenate(out_u), np.concatenate(out_i), np.concatenate(out_p)


def generate_synthetic(cfg: SyntheticConfig, seed: int) -> Interactions:
    """MovieLens-like :class:`Interactions` (see the module docstring for the model)."""
    _check(cfg, seed)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(5)]
    r_user, r_item, r_act, r_pick, r_rate = streams
    d = cfg.dim
    gender, age, occ, p = _user_factors(cfg, r_user)
    q = r_item.normal(0, d**-0.25, (cfg.n_items, d)).astype(np.float32)
    ranks = r_item.permutation(cfg.n_items)
    pop = (ranks + 1.0) ** -cfg.popularity_exponent
    pop /= pop.sum()
    item_bias = r_item.normal(0, 0.3, cfg.n_items).astype(np.float32)
    n = activity_counts(cfg, r_act)
    users, items, pref = _select(p, n, q, pop, r_pick)

    user_bias = r_rate.normal(0, 0.4, cfg.n_users).astype(np.float32)
    latent = pref + user_bias[users] + item_bias[items]
    latent += r_rate.normal(0, 0.5, latent.shape[0]).astype(np.float32)
    cuts = np.quantile(latent, RATING_CDF)
    ratings = (1 + np.searchsorted(cuts, latent)).astype(np.float32)
    del latent, pref
    start = r_rate.uniform(0, 0.8 * SPAN_SECONDS, cfg.n_users)
    length = np.minimum(
        SPAN_SECONDS - start, np.exp(r_rate.normal(math.log(60 * 86_400), 1.5, cfg.n_users))
    )
    ts = START_TIME + (start[users] + r_rate.random(users.shape[0]) * length[users]).astype(
        np.int64
    )

    order = np.argsort(users.astype(np.int64) << 32 | (ts - START_TIME), kind="stable")
    users, items, ratings, ts = users[order], items[order], ratings[order], ts[order]
    used = np.bincount(items, minlength=cfg.n_items) > 0
    dense = (np.cumsum(used) - 1).astype(np.int32)
    items = dense[items]
    item_ids = np.flatnonzero(used).astype(np.int64) + 1
    attrs = pd.DataFrame({
        "age_band": np.asarray(AGE_BANDS, dtype=object)[age],
        "gender": np.asarray(("M", "F"), dtype=object)[gender],
        "occupation": np.asarray(OCCUPATIONS, dtype=object)[occ],
    })  # fmt: skip
    return Interactions(
        users=users,
        items=items,
        ratings=ratings,
        timestamps=ts,
        n_users=cfg.n_users,
        n_items=int(used.sum()),
        user_ids=np.arange(1, cfg.n_users + 1, dtype=np.int64),
        item_ids=item_ids,
        item_titles=np.array([f"Synthetic movie {k}" for k in item_ids.tolist()], dtype=object),
        user_attributes=attrs,
        source=f"synthetic:seed={seed}",
        extra={
            "synthetic": {**dataclasses.asdict(cfg), "seed": int(seed)},
            "latent_users": p,
            "latent_items": q[used],
        },
    ).validate()


def output_format(path: str | Path) -> str:
    """``"csv"`` or ``"parquet"`` from the file suffix (check before any expensive work)."""
    name = Path(path).name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        return "csv"
    raise DataError(f"{path}: unknown output format; use .csv, .csv.gz, .tsv or .parquet")


def write_interactions(inter: Interactions, path: str | Path) -> Path:
    """Write ``user,item,rating,timestamp`` (original ids) atomically; format by suffix.

    ``.csv`` / ``.csv.gz`` (comma), ``.tsv`` / ``.tsv.gz`` (tab), ``.parquet`` / ``.pq``. Reading it
    back with source ``csv``/``parquet`` and the default column names gives identical arrays and
    ids (titles and attributes are not part of a log file).
    """
    path = Path(path)
    name = path.name.lower()
    fmt = output_format(path)
    frame = pd.DataFrame({
        "user": inter.user_ids[inter.users],
        "item": inter.item_ids[inter.items],
        "rating": inter.ratings,
        "timestamp": inter.timestamps,
    })  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            sep = "\t" if ".tsv" in name else ","
            gz = name.endswith(".gz")
            frame.to_csv(tmp, sep=sep, index=False, compression="gzip" if gz else None)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path

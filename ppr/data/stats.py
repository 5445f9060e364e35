"""Descriptive statistics of an interaction table (what `ppr data info` prints).

Every value is a plain Python number, string, list or dict, so the result is JSON-ready.
Quantiles use numpy's default linear interpolation over per-user (per-item) counts of rows.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

import numpy as np

from ppr.data.interactions import Interactions

QUANTILES = (("25%", 25), ("50%", 50), ("75%", 75), ("90%", 90), ("99%", 99))


def count_quantiles(counts: np.ndarray) -> dict:
    """``min, 25%, 50%, 75%, 90%, 99%, max, mean`` of a non-empty count vector."""
    counts = np.asarray(counts)
    out: dict = {"min": int(counts.min())}
    qs = np.percentile(counts, [q for _, q in QUANTILES])
    out.update({name: float(v) for (name, _), v in zip(QUANTILES, qs, strict=True)})
    out["max"] = int(counts.max())
    out["mean"] = float(counts.mean())
    return out


def rating_histogram(ratings: np.ndarray, max_levels: int = 20) -> dict[str, int]:
    """Counts per distinct rating (keys like ``"4"`` or ``"3.5"``); ten equal-width bins
    (keys ``"[a, b)"``, the last one closed) when there are more than ``max_levels`` values."""
    values, counts = np.unique(ratings, return_counts=True)
    if values.shape[0] <= max_levels:
        return {f"{float(v):g}": int(c) for v, c in zip(values, counts, strict=True)}
    edges = np.linspace(float(values[0]), float(values[-1]), 11)
    hist, _ = np.histogram(ratings, bins=edges)
    keys = [
        f"[{a:g}, {b:g}{']' if j == 9 else ')'}"
        for j, (a, b) in enumerate(itertools.pairwise(edges))
    ]
    return {k: int(h) for k, h in zip(keys, hist, strict=True)}


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def dataset_stats(inter: Interactions, positive_threshold: float = 4.0) -> dict:
    """Sizes, density, rating histogram, positives, activity/popularity quantiles, time span,
    share of rows on the top 1% items (at least one item), and which side data is present."""
    n = len(inter)
    user_counts = np.bincount(inter.users, minlength=inter.n_users)
    item_counts = np.bincount(inter.items, minlength=inter.n_items)
    pos = inter.ratings >= positive_threshold
    top_k = max(1, math.ceil(0.01 * inter.n_items))
    top_share = float(np.sort(item_counts)[::-1][:top_k].sum() / n)
    ts_min, ts_max = int(inter.timestamps.min()), int(inter.timestamps.max())
    span = None
    if ts_min != 0 or ts_max != 0:
        span = {
            "start": ts_min,
            "end": ts_max,
            "days": (ts_max - ts_min) / 86_400,
            "start_utc": _iso(ts_min),
            "end_utc": _iso(ts_max),
        }
    attributes: list[str] = []
    if inter.user_attributes is not None:
        attrs = inter.user_attributes
        attributes = [str(c) for c in attrs.columns if attrs[c].notna().any()]
    has_titles = inter.item_titles is not None and any(bool(t) for t in inter.item_titles)
    return {
        "source": inter.source,
        "users": int(inter.n_users),
        "items": int(inter.n_items),
        "interactions": n,
        "density": n / (inter.n_users * inter.n_items),
        "ratings": rating_histogram(inter.ratings),
        "rating_mean": float(inter.ratings.astype(np.float64).mean()),
        "positive_threshold": float(positive_threshold),
        "positives": int(pos.sum()),
        "positive_share": float(pos.mean()),
        "users_with_positives": int(np.unique(inter.users[pos]).shape[0]),
        "user_activity": count_quantiles(user_counts),
        "item_popularity": count_quantiles(item_counts),
        "top1pct_items": top_k,
        "top1pct_item_share": top_share,
        "time_span": span,
        "attributes": attributes,
        "titles": bool(has_titles),
        "genres": "item_genres" in inter.extra,
    }

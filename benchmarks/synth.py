"""Benchmark the synthetic generator: wall time, peak RSS, sizes; optionally the learnable signal.

    python benchmarks/synth.py                       # 200k users x 30k items x 20M ratings
    python benchmarks/synth.py --users 600 --items 400 --interactions 30000 --json
    python benchmarks/synth.py --signal              # popularity vs. implicit ALS recall@20

Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux) for the whole process.
The signal check uses the default 600 x 400 config (dense ALS): ratings >= 4 are positives, 80/20
per-interaction random split, recall@20 = hits / min(20, |test|) over users with test items.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ppr.config import SyntheticConfig
from ppr.data.stats import dataset_stats
from ppr.data.synthetic import generate_synthetic, write_interactions


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _recall(scores: np.ndarray, train: tuple, test: tuple, k: int = 20) -> float:
    s = scores.copy()
    s[train] = -np.inf
    top = np.argsort(-s, axis=1)[:, :k]
    truth = np.zeros(s.shape, dtype=bool)
    truth[test] = True
    hits = np.take_along_axis(truth, top, axis=1).sum(axis=1)
    n = truth.sum(axis=1)
    ok = n > 0
    return float(np.mean(hits[ok] / np.minimum(k, n[ok])))


def _als(
    n_users: int,
    n_items: int,
    train: tuple,
    dim: int = 16,
    alpha: float = 10.0,
    reg: float = 1.0,
    iters: int = 10,
) -> np.ndarray:
    """Dense implicit ALS (Hu, Koren, Volinsky) for small data: the signal check only."""
    rng = np.random.default_rng(0)
    r = np.zeros((n_users, n_items))
    r[train] = 1.0
    c = 1 + alpha * r
    p, q = np.zeros((n_users, dim)), rng.normal(0, 0.1, (n_items, dim))
    for _ in range(iters):
        for a, b, cm, rm in ((p, q, c, r), (q, p, c.T, r.T)):
            btb = b.T @ b + reg * np.eye(dim)
            for row in range(a.shape[0]):
                m = btb + (b.T * (cm[row] - 1)) @ b
                a[row] = np.linalg.solve(m, (b.T * cm[row]) @ rm[row])
    return p @ q.T


def signal_check(seed: int) -> dict:
    inter = generate_synthetic(SyntheticConfig(), seed)
    pos = inter.ratings >= 4
    u, i = inter.users[pos], inter.items[pos]
    test = np.random.default_rng(seed + 1).random(u.shape[0]) < 0.2
    train, held = (u[~test], i[~test]), (u[test], i[test])
    pop = np.bincount(train[1], minlength=inter.n_items).astype(np.float64)
    pop_recall = _recall(np.tile(pop, (inter.n_users, 1)), train, held)
    als_recall = _recall(_als(inter.n_users, inter.n_items, train), train, held)
    return {
        "popularity_recall@20": pop_recall,
        "als_recall@20": als_recall,
        "ratio": als_recall / pop_recall,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=30_000)
    ap.add_argument("--interactions", type=int, default=20_000_000)
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", type=Path, help="also write the log here (csv/parquet by suffix)")
    ap.add_argument("--signal", action="store_true", help="popularity vs ALS on the default config")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args(argv)

    out: dict = {}
    if args.signal:
        out["signal"] = signal_check(args.seed)
    else:
        cfg = SyntheticConfig(
            n_users=args.users, n_items=args.items, n_interactions=args.interactions, dim=args.dim
        )
        t0 = time.perf_counter()
        inter = generate_synthetic(cfg, args.seed)
        out["generate_s"] = time.perf_counter() - t0
        out["peak_rss_mib_after_generate"] = _peak_rss_mib()
        st = dataset_stats(inter)
        out.update(
            {
                k: st[k]
                for k in (
                    "users",
                    "items",
                    "interactions",
                    "density",
                    "positives",
                    "top1pct_item_share",
                )
            }
        )
        out["user_activity"] = st["user_activity"]
        out["ratings"] = st["ratings"]
        if args.write is not None:
            t0 = time.perf_counter()
            write_interactions(inter, args.write)
            out["write_s"] = time.perf_counter() - t0
            out["file_mib"] = args.write.stat().st_size / 2**20
    out["peak_rss_mib"] = _peak_rss_mib()
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>28}: {v:.4g}" if isinstance(v, float) else f"{k:>28}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

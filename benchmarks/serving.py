"""On-device serving: Annoy recall and speed against the exact scan, per catalog size and format.

Catalogs (dim 32): implicit ALS fitted on ML-100K and ML-1M (``$PPR_DATA_DIR``, ratings >= 4;
real users' items as queries), and synthetic catalogs of 30k, 100k and 1M items with latent
structure (:mod:`ppr.serving.catalog`: items around 256 cluster centres, power-law norms; its
query statistics match the ML-1M ALS factors: cos(p, top-20) ~0.5, top-20 norms ~5x the median).
User vectors come from the device's closed-form solve (alpha 3, reg 30).

Per catalog: exact full scan and the norm-pruned exact scan per format (float32 / float16 / int8;
latency p50/p95, fraction scanned); Annoy (``dot`` metric, ``n_trees``, a ``search_k`` grid):
recall of the exact float32 top-20 and latency; the best Annoy recall among settings faster than
the exact float32 scan, and the fastest setting reaching the recall goal (0.98 on ML sizes,
0.95 on synthetic) with its speed ratio; bytes per item; each format's score error and bound; the
crossover catalog size where Annoy at the goal beats the exact scan. Queries run single-threaded
(BLAS threads = 1, as on a phone core; Annoy queries are single-threaded anyway); Annoy builds
use 2 threads.

    python benchmarks/serving.py [--quick] [--json] [--queries 200] [--seed 0]

``--modes``: instead, the serving modes side by side through the one recommender interface
(:mod:`ppr.experiments.serving`): recall@20 / NDCG@20 of full-server scoring (float32, exact
scan), local serving (the device's format and index within ``--budget-mb``) and, when
``ppr.serving.hybrid`` exists, hybrid serving, on a trained ML-100K run (``--run DIR``; trained
from ``configs/ml100k.toml`` into a temporary folder when omitted) and on a synthetic catalog of
``--synth-items`` items (default 1M: float32 does not fit 64 MiB) whose users hold 80 % of their
items on the device and are evaluated on the other 20 %; device bytes and latency p50 / p95.

    python benchmarks/serving.py --modes [--run RUN] [--synth-items 1000000] [--budget-mb 64]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ppr.data.movielens import load_ml1m, load_ml100k  # noqa: E402
from ppr.data.split import UserItems, positives  # noqa: E402
from ppr.model.baselines import centralized_als  # noqa: E402
from ppr.model.mf import MFHyper  # noqa: E402
from ppr.serving.catalog import clustered_catalog, sample_user_items  # noqa: E402
from ppr.serving.codecs import FORMATS, encode, entry_error_bound, score_error_bound  # noqa: E402
from ppr.serving.index import AnnoyIndex, ExactIndex, LocalIndex  # noqa: E402
from ppr.serving.recommender import ExactRecommender  # noqa: E402

K = 20
ALPHA, REG, DIM = 3.0, 30.0, 32


def ml_catalog(name: str, iterations: int, n_queries: int, rng: np.random.Generator):
    """ALS item matrix of a MovieLens set and ``n_queries`` real users' positive item lists."""
    loader = {"ml-100k": load_ml100k, "ml-1m": load_ml1m}[name]
    root = Path(os.environ.get("PPR_DATA_DIR", "../shared/datasets"))
    inter = positives(loader(root / name), 4.0)
    ui = UserItems.from_pairs(
        inter.users.astype(np.int64), inter.items, inter.n_users, inter.n_items
    )
    key = jax.random.key(int(rng.integers(2**31)))
    hyper = MFHyper(ALPHA, REG)
    q = centralized_als(key, ui, np.arange(ui.n_users), DIM, hyper, iterations, 0.1)
    users = [ui.row(int(u)) for u in rng.permutation(ui.n_users) if ui.counts()[u] > 0]
    return np.asarray(q, np.float32), users[:n_queries]


def synth_catalog(n_items: int, n_queries: int, rng: np.random.Generator):
    cat = clustered_catalog(rng, n_items, DIM)
    return cat.q, sample_user_items(rng, cat, n_queries)


def timed(index: LocalIndex, vecs, users) -> tuple[list, np.ndarray]:
    """Results and per-query seconds of ``index`` over the queries."""
    out, lat = [], []
    for p, own in zip(vecs, users, strict=True):
        t = time.perf_counter()
        out.append(index.query(p, K, exclude=own))
        lat.append(time.perf_counter() - t)
    return out, np.asarray(lat)


def lat_ms(lat: np.ndarray) -> dict:
    return {"p50_ms": float(np.median(lat) * 1e3), "p95_ms": float(np.quantile(lat, 0.95) * 1e3)}


def recall(truth: list, got: list) -> float:
    return float(
        np.mean([np.isin(g[0], t[0]).sum() / t[0].size for t, g in zip(truth, got, strict=True)])
    )


def exact_part(q: np.ndarray, vecs, users) -> tuple[dict, list]:
    """Full and pruned exact scans per format; score errors against float32."""
    rows, truth = {}, None
    for fmt in FORMATS:
        enc = encode(q, fmt)
        full, pruned = ExactIndex.build(enc), ExactIndex.build(enc, prune=True)
        res, lat = timed(full, vecs, users)
        truth = res if fmt == "float32" else truth
        scanned = []
        _, lat_p = timed(pruned, vecs, users)
        for p, own in zip(vecs[:20], users[:20], strict=True):
            pruned.query(p, K, own)
            scanned.append(pruned.last_scanned / q.shape[0])
        rows[fmt] = {
            "full": lat_ms(lat),
            "pruned": lat_ms(lat_p) | {"scanned": float(np.mean(scanned))},
            "bytes_per_item": enc.nbytes / q.shape[0],
            "top20_overlap_vs_float32": recall(truth, res),
        } | score_errors(q, enc, fmt, vecs[:20])
    return rows, truth


def score_errors(q: np.ndarray, enc, fmt: str, vecs) -> dict:
    """Max |p_hat.q_hat - p.q| (matrix and user vector both in ``fmt``), its bound, and the error
    relative to the user's 20th best score."""
    q64, err, bound, rel = q.astype(np.float64), 0.0, 0.0, 0.0
    for p in vecs:
        p_enc = encode(p, fmt)
        p_hat = p_enc.decode(dtype=np.float64)[0]
        exact = q64 @ np.asarray(p, np.float64)
        e = np.abs(enc.decode(dtype=np.float64) @ p_hat - exact)
        b = score_error_bound(p_hat, entry_error_bound(p_enc)[0], enc)
        assert np.all(e <= b + 1e-9), "score error bound violated"
        err, bound = max(err, float(e.max())), max(bound, float(b.max()))
        rel = max(rel, float(e.max() / np.sort(exact)[-K]))
    return {"score_err_max": err, "score_bound_max": bound, "score_err_rel_20th": rel}


def annoy_part(q, vecs, users, truth, exact_ms: float, n_trees: int, grid: list[int]) -> dict:
    t = time.perf_counter()
    ann = AnnoyIndex.build(q, n_trees=n_trees, seed=0, n_jobs=2)
    build_s = time.perf_counter() - t
    points = []
    for sk in grid:
        ann.search_k = sk
        res, lat = timed(ann, vecs, users)
        points.append({"search_k": sk, "recall": recall(truth, res)} | lat_ms(lat))
    return {
        "n_trees": n_trees,
        "build_s": build_s,
        "index_bytes_per_item": (ann.nbytes - ann.items.nbytes) / q.shape[0],
        "points": points,
        "fallbacks": ann.fallbacks,
    }


def summarize(name: str, n: int, exact: dict, ann: dict, goal: float) -> dict:
    ref = exact["float32"]["full"]["p50_ms"]
    faster = [pt for pt in ann["points"] if pt["p50_ms"] < ref]
    best = max(faster, key=lambda pt: pt["recall"]) if faster else None
    at_goal = [pt for pt in ann["points"] if pt["recall"] >= goal]
    fast_goal = min(at_goal, key=lambda pt: pt["p50_ms"]) if at_goal else None
    return {
        "catalog": name,
        "n_items": n,
        "goal": goal,
        "exact_f32_p50_ms": ref,
        "pruned_f32_p50_ms": exact["float32"]["pruned"]["p50_ms"],
        "best_faster_than_exact": best,
        "fastest_at_goal": fast_goal,
        "speedup_at_goal": None if fast_goal is None else ref / fast_goal["p50_ms"],
        "speedup_at_goal_vs_pruned": None
        if fast_goal is None
        else exact["float32"]["pruned"]["p50_ms"] / fast_goal["p50_ms"],
    }


def run_catalog(name, q, users, n_trees, grid, goal) -> dict:
    rec = ExactRecommender(ExactIndex.build(q), ALPHA, REG)
    vecs = [rec.recalculate_user(u).astype(np.float32) for u in users]
    exact, truth = exact_part(q, vecs, users)
    ann = annoy_part(q, vecs, users, truth, exact["float32"]["full"]["p50_ms"], n_trees, grid)
    summary = summarize(name, q.shape[0], exact, ann, goal)
    return {"summary": summary, "exact": exact, "annoy": ann, "n_queries": len(users)}


def crossover(results: list[dict], key: str) -> int | None:
    """Smallest catalog (by size) from which Annoy at its goal is faster than ``key``'s p50 at
    every larger size too; None if it never is."""
    rows = sorted((r["summary"] for r in results), key=lambda s: s["n_items"])
    wins = [
        s["fastest_at_goal"] is not None and s["fastest_at_goal"]["p50_ms"] < s[key] for s in rows
    ]
    for i, s in enumerate(rows):
        if all(wins[i:]):
            return s["n_items"]
    return None


def pruned_crossover(results: list[dict]) -> int | None:
    """Smallest catalog from which the pruned exact scan beats the full scan (float32 p50) at
    every larger size too."""
    rows = sorted((r["summary"] for r in results), key=lambda s: s["n_items"])
    wins = [s["pruned_f32_p50_ms"] < s["exact_f32_p50_ms"] for s in rows]
    return next((s["n_items"] for i, s in enumerate(rows) if all(wins[i:])), None)


def _row(r: dict) -> str:
    s, e, a = r["summary"], r["exact"], r["annoy"]
    ex = " ".join(f"{e[f]['full']['p50_ms']:.2f}/{e[f]['full']['p95_ms']:.2f}" for f in FORMATS)
    pe = e["float32"]["pruned"]
    pr = f"{pe['p50_ms']:.2f}/{pe['p95_ms']:.2f} ({pe['scanned']:.3f})"
    b, g = s["best_faster_than_exact"], s["fastest_at_goal"]
    bs = "none" if b is None else f"{b['search_k']}, {b['recall']:.3f}, {b['p50_ms']:.2f}"
    gs = f"none >= {s['goal']}"
    if g is not None:
        gs = f"{g['search_k']}, {g['p50_ms']:.2f}, {s['speedup_at_goal']:.2f}x"
        gs += f", {s['speedup_at_goal_vs_pruned']:.2f}x"
    return f"{s['catalog']:>10} {s['n_items']:>8} | {ex} | {pr} | {bs} | {gs} | {a['build_s']:.1f}"


def _formats(r: dict) -> str:
    e = r["exact"]
    cells = [
        f"{f} {e[f]['bytes_per_item']:.0f} B, {e[f]['score_err_max']:.2e}/"
        f"{e[f]['score_bound_max']:.2e}/{e[f]['score_err_rel_20th']:.1e}, "
        f"{e[f]['top20_overlap_vs_float32']:.3f}"
        for f in FORMATS
    ]
    ann = r["annoy"]["index_bytes_per_item"]
    return f"{r['summary']['catalog']:>10}: {'; '.join(cells)}; annoy index {ann:.0f} B/item"


def print_table(results: list[dict], cross: dict) -> None:
    print(
        f"{'catalog':>10} {'items':>8} | exact p50/p95 ms f32 f16 i8 | pruned f32 (scanned) | "
        "annoy best-faster (sk, recall, ms) | at goal (sk, ms, x exact, x pruned) | build s"
    )
    for r in results:
        print(_row(r))
    print("\nper format: bytes/item, score error max / bound / rel. to 20th score, top-20 overlap")
    for r in results:
        print(_formats(r))
    print("\nannoy recall / p50 ms per search_k:")
    for r in results:
        pts = ", ".join(
            f"{p['search_k']}: {p['recall']:.3f}/{p['p50_ms']:.2f}" for p in r["annoy"]["points"]
        )
        print(f"{r['summary']['catalog']:>10}: {pts}")
    print(f"\ncrossover (pruned exact faster than full scan from): {cross['pruned_vs_full_scan']}")
    print(f"crossover (Annoy at goal faster than exact full scan from): {cross['vs_full_scan']}")
    print(f"crossover (Annoy at goal faster than pruned exact scan from): {cross['vs_pruned']}")
    print(f"peak RSS {cross['peak_rss_mb']:.0f} MB, wall {cross['wall_s']:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="ML-100K (3 ALS sweeps) + 30k synthetic")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", action="store_true", help="serving modes side by side instead")
    ap.add_argument("--run", type=Path, default=None, help="trained ML-100K run (--modes)")
    ap.add_argument("--synth-items", type=int, default=1_000_000, help="synthetic catalog size")
    ap.add_argument("--budget-mb", type=float, nargs="+", default=[64.0, 40.0])
    args = ap.parse_args()
    if args.modes:
        modes_main(args)
        return
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    nq = min(args.queries, 60) if args.quick else args.queries
    cats = [("ml-100k", 3 if args.quick else 10)] + ([] if args.quick else [("ml-1m", 10)])
    sizes = [30_000] if args.quick else [30_000, 100_000, 1_000_000]
    results = []
    for name, iters in cats:
        q, users = ml_catalog(name, iters, nq, rng)
        grid = [100, 300, 1000, 3000, 10_000, 30_000]
        results.append(run_catalog(name, q, users, 10, grid, 0.98))
    for n in sizes:
        q, users = synth_catalog(n, nq if n < 1_000_000 else nq // 2, rng)
        grid = [g for g in (1000, 3000, 10_000, 30_000, 100_000, 300_000) if g <= 3 * n]
        results.append(run_catalog(f"synth-{n // 1000}k", q, users, 10, grid, 0.95))
    cross = {
        "pruned_vs_full_scan": pruned_crossover(results),
        "vs_full_scan": crossover(results, "exact_f32_p50_ms"),
        "vs_pruned": crossover(results, "pruned_f32_p50_ms"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_s": time.perf_counter() - start,
    }
    if args.json:
        print(json.dumps({"results": results, "crossover": cross, "k": K}, indent=1))
    else:
        print_table(results, cross)


def _mode_row(name: str, mode: str, res: dict) -> dict:
    keep = ("recall@20", "ndcg@20", "evaluated_users", "device_bytes", "format", "index")
    row = {"catalog": name, "mode": mode} | {k: res.get(k) for k in keep}
    return row | res["latency"] | ({"requests": res["requests"]} if "requests" in res else {})


def ml100k_modes(run_dir: Path | None) -> list[dict]:
    """exact / local (/ hybrid) on a trained ML-100K run (trained here when ``run_dir`` is None)."""
    import importlib.util
    import tempfile

    from ppr.config import load_config
    from ppr.experiments import simulate
    from ppr.experiments.serving import evaluate_serving, open_run

    if run_dir is None:
        cfg = load_config(Path(__file__).parents[1] / "configs/ml100k.toml")
        out = tempfile.mkdtemp(prefix="ppr-bench-")
        run_dir = simulate(cfg.replace(**{"output.runs_dir": out}), write=True).run_dir
    run = open_run(run_dir)
    modes = ["exact", "local"]
    if importlib.util.find_spec("ppr.serving.hybrid") is not None:
        modes.append("hybrid")
    return [_mode_row("ml-100k", m, evaluate_serving(run, m)) for m in modes]


def synth_modes(n_items: int, budgets: list[float], n_users: int, seed: int) -> list[dict]:
    """Full-server (float32 exact) against the device within each budget on a synthetic catalog;
    each user holds 80 % of its items and is evaluated on the other 20 %."""
    from ppr.experiments.serving import evaluate_recommender
    from ppr.model.release import ReleasedModel
    from ppr.serving.device import DeviceSettings, build_local, plan_local

    rng = np.random.default_rng(seed)
    q, users = synth_catalog(n_items, n_users, rng)
    uu, ii, tt = [], [], []
    for u, items in enumerate(users):
        test = rng.random(items.size) < 0.2
        uu.append(np.full(items.size, u)), ii.append(items), tt.append(test)
    u_all, i_all, t_all = (np.concatenate(x) for x in (uu, ii, tt))
    train = UserItems.from_pairs(u_all[~t_all], i_all[~t_all], len(users), n_items)
    target = UserItems.from_pairs(u_all[t_all], i_all[t_all], len(users), n_items)
    model = ReleasedModel(q, np.arange(n_items), alpha=ALPHA, reg=REG, version="synth")
    name = f"synth-{n_items // 1000}k"
    rows = [
        _mode_row(
            name,
            "exact",
            _eval(
                ExactRecommender(ExactIndex.build(q), ALPHA, REG),
                train,
                target,
                evaluate_recommender,
            ),
        )
    ]
    for mb in budgets:
        plan = plan_local(n_items, DIM, DeviceSettings(budget_mb=mb))
        res = _eval(build_local(model, plan), train, target, evaluate_recommender)
        rows.append(_mode_row(name, f"local@{mb:g}MiB", res))
    return rows


def _eval(rec, train, target, evaluate_recommender) -> dict:
    res = evaluate_recommender(rec, train, target, K)
    index, pruned = rec.index, getattr(rec.index, "order", None) is not None
    kind = index.kind + ("-pruned" if pruned else "")
    return res | {"device_bytes": rec.nbytes, "format": index.format, "index": kind}


def modes_main(args) -> None:
    start = time.perf_counter()
    rows = ml100k_modes(args.run)
    rows += synth_modes(args.synth_items, args.budget_mb, args.queries, args.seed)
    meta = {"wall_s": time.perf_counter() - start, "k": K}
    meta["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        print(json.dumps({"modes": rows} | meta, indent=1))
        return
    print(f"{'catalog':>12} {'mode':>14} | recall@20 ndcg@20 users | MiB fmt index | p50/p95 ms")
    for r in rows:
        print(
            f"{r['catalog']:>12} {r['mode']:>14} | {r['recall@20']:.4f} {r['ndcg@20']:.4f} "
            f"{r['evaluated_users']} | {r['device_bytes'] / 2**20:.2f} {r['format']} {r['index']} "
            f"| {r['p50_ms']:.2f}/{r['p95_ms']:.2f}"
        )
    print(f"wall {meta['wall_s']:.0f} s, peak RSS {meta['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()

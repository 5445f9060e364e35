"""Client updates per second at the ML-100K model size, vectorized vs a plain Python loop.

One "client update" = one device solving its user vector from the global item matrix and its own
items, computing its clipped update of the item matrix, and that update entering the cohort sum.

* vectorized: :meth:`ppr.federated.DeviceFleet.compute` + the clipped cohort sum (bucketed,
  padded, ``jit``; no Python loop over devices);
* loop: the same clients one at a time in NumPy (closed-form solve, dense update ``v p^T``, clip,
  add), the way a straightforward simulator would do it.

Both produce the same cohort sum (checked: max relative difference printed). Data: the real
ML-100K training split when ``$PPR_DATA_DIR/ml-100k`` exists (943 devices, 1682 items), else a
synthetic set of the same shape. ``--json`` prints one JSON object.

    python benchmarks/throughput.py [--dim 32] [--repeats 20] [--loop-clients 943] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from ppr.config import load_config
from ppr.experiments.factories import hyper_of, prepare_data
from ppr.federated import DeviceFleet


def _split(dim: int):
    data_dir = os.environ.get("PPR_DATA_DIR", "../shared/datasets")
    if os.path.isfile(os.path.join(data_dir, "ml-100k", "u.data")):
        over = {"data.source": "ml-100k", "data.path": os.path.join(data_dir, "ml-100k")}
        source = "ml-100k"
    else:
        over = {
            "data.synthetic.n_users": 943,
            "data.synthetic.n_items": 1682,
            "data.synthetic.n_interactions": 100_000,
        }
        source = "synthetic (ML-100K shape)"
    cfg = load_config(None, {**over, "model.dim": dim})
    return cfg, prepare_data(cfg), source


def loop_round(q: np.ndarray, items, users, alpha: float, reg: float, clip: float) -> np.ndarray:
    """The reference: a Python loop over clients, NumPy per client."""
    n_items, d = q.shape
    g = q.T @ q
    total = np.zeros_like(q)
    eye = reg * np.eye(d, dtype=q.dtype)
    for u in users:
        own = items.row(int(u))
        qu = q[own]
        p = np.linalg.solve(g + alpha * qu.T @ qu + eye, (1.0 + alpha) * qu.sum(axis=0))
        r = np.zeros(n_items, q.dtype)
        r[own] = 1.0
        v = (1.0 + alpha * r) * (r - q @ p)
        upd = np.outer(v, p)
        norm = np.linalg.norm(upd)
        total += upd * min(1.0, clip / max(norm, 1e-12))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--loop-clients", type=int, default=943, help="clients timed in the loop")
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    cfg, split, source = _split(args.dim)
    train, _ = split.for_evaluation("test")
    hyper = hyper_of(cfg)
    fleet = DeviceFleet(train, split.train_users, hyper)
    ids = fleet.population
    key = jax.random.PRNGKey(0)
    q = 0.1 * jax.random.normal(key, (train.n_items, args.dim), jnp.float32) / np.sqrt(args.dim)

    def vectorized() -> np.ndarray:
        return np.asarray(fleet.compute(q, ids, args.clip).clipped_sum())

    t0 = time.perf_counter()
    vec_total = vectorized()  # includes compilation
    compile_s = time.perf_counter() - t0
    vectorized()
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        vectorized()
        times.append(time.perf_counter() - t)
    vec_s = float(np.median(times))

    n_loop = min(args.loop_clients, ids.size)
    qn = np.asarray(q)
    t = time.perf_counter()
    loop_total = loop_round(qn, train, ids[:n_loop], hyper.alpha, hyper.reg, args.clip)
    loop_s_per_client = (time.perf_counter() - t) / n_loop
    if n_loop == ids.size:
        ref = loop_total
    else:
        ref = loop_round(qn, train, ids, hyper.alpha, hyper.reg, args.clip)
    rel = float(np.abs(vec_total - ref).max() / max(np.abs(ref).max(), 1e-12))

    out = {
        "data": source,
        "devices": int(ids.size),
        "items": int(train.n_items),
        "dim": args.dim,
        "clip_norm": args.clip,
        "compile_s": compile_s,
        "vectorized_round_s": vec_s,
        "vectorized_updates_per_s": ids.size / vec_s,
        "loop_updates_per_s": 1.0 / loop_s_per_client,
        "speedup_vs_loop": (ids.size / vec_s) * loop_s_per_client,
        "max_rel_diff_vs_loop": rel,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    if args.json:
        print(json.dumps(out))
        return
    print(f"data: {source}: {out['devices']} devices x {out['items']} items, dim {args.dim}")
    print(
        f"vectorized: {vec_s * 1e3:.2f} ms per round (median of {args.repeats}) -> "
        f"{out['vectorized_updates_per_s']:,.0f} client updates/s (compile {compile_s:.1f} s)"
    )
    print(
        f"python loop: {out['loop_updates_per_s']:,.0f} client updates/s ({n_loop} clients timed)"
    )
    print(f"speed-up: {out['speedup_vs_loop']:.1f}x; same cohort sum (max rel diff {rel:.1e})")


if __name__ == "__main__":
    main()

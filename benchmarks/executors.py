"""Benchmark the executors (ppr.execution): local vs processes vs ray, on CKKS rounds and a sweep.

    python benchmarks/executors.py --json            # one JSON object on stdout
    python benchmarks/executors.py --cohort 40 --repeats 1 --quick

What is measured (all in this one process run, wall-clock ``time.perf_counter``, so the ratios
share the machine's load at that moment):

* ``ckks_round``: one ``CkksSecureAggregation`` round of ``--cohort`` devices with ML-100K-sized
  clipped updates (1682 x 32 values) encrypted by the ``local`` executor (in-process), by
  ``processes`` (``--workers`` worker processes) and by ``ray`` (``--workers`` actors on a local
  Ray instance, ``--ray-batch`` devices per task). Each executor is warmed up (workers started,
  encryptors built, one round) and then times ``--repeats`` rounds; medians are reported and
  ``speedup`` = t(local) / t(executor). Every round's total is checked against the exact sum
  within the round's stated error bound.
* ``sweep``: ``run_sweep`` of 4 small synthetic points (ε in {inf, 4} x seeds {0, 1}, reproducible
  noise) with each executor, ``--workers`` workers; worker start and JAX compilation included (as
  a user sees it). ``identical`` says whether the released models are byte for byte the same.
* ``ray_start_s``: starting the local Ray instance (once, not in any figure above).
* ``machine``: cores and the 1-minute load average before and after: on a shared machine a load
  above the core count makes every speed-up pessimistic.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ppr.config import ExecutionConfig, load_config
from ppr.crypto import CkksSecureAggregation, default_params
from ppr.execution import Executor, LocalExecutor, ProcessExecutor, cores
from ppr.experiments.sweep import run_sweep

ML100K = 1682 * 32
KINDS = ("local", "processes", "ray")
SWEEP = [
    "data.synthetic.n_users=120",
    "data.synthetic.n_items=80",
    "data.synthetic.n_interactions=4000",
    "model.dim=8",
    "federated.rounds=5",
    "privacy.clip_norm=1.0",
    "baselines.centralized=false",
    'sweep.epsilons=["inf", 4.0]',
    "sweep.seeds=[0, 1]",
    "privacy.noise_seed=0",
]


def _executor(kind: str, workers: int) -> Executor:
    if kind == "local":
        return LocalExecutor()
    if kind == "processes":
        return ProcessExecutor(workers)
    from ppr.execution.ray_executor import RayExecutor

    return RayExecutor(workers)


def _updates(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, ML100K)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)  # clipped to norm 1


def bench_ckks(cohort: int, workers: int, repeats: int, ray_batch: int) -> dict:
    """Median round time per executor on the same updates (see the module docstring)."""
    rows = _updates(cohort, 0)
    exact = rows.astype(np.float64).sum(axis=0)
    ids = np.arange(cohort)
    out: dict = {}
    for kind in KINDS:
        batch = ray_batch if kind == "ray" else 1
        agg = CkksSecureAggregation(
            ML100K, default_params(), executor=_executor(kind, workers), batch=batch
        )
        with agg:
            agg._pool.warm_up()
            times = []
            for r in range(repeats + 1):  # round 0: warm-up
                t0 = time.perf_counter()
                res = agg.aggregate_stream([(ids, rows)], cohort, round_idx=r)
                if r:
                    times.append(time.perf_counter() - t0)
                assert res.n_accepted == cohort, (kind, res.dropped, res.rejected)
                assert np.max(np.abs(res.total - exact)) <= res.error_bound, kind
        out[kind] = {"round_s": statistics.median(times), "rounds_s": times, "batch": batch}
    for kind in KINDS:
        out[kind]["speedup"] = out["local"]["round_s"] / out[kind]["round_s"]
    return out


def bench_sweep(workers: int) -> dict:
    """One 4-point sweep per executor, wall time and whether the models are identical."""
    out: dict = {}
    models: dict[str, list[bytes]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            cfg = load_config(None, [*SWEEP, f"execution.executor={kind}",
                                     f"execution.workers={workers}"])  # fmt: skip
            t0 = time.perf_counter()
            res = run_sweep(cfg, Path(tmp) / kind, plot=False)
            out[kind] = {"sweep_s": time.perf_counter() - t0, "points": res.ran}
            models[kind] = [(Path(r["run_dir"]) / "model.msgpack").read_bytes() for r in res.runs]
    for kind in KINDS:
        out[kind]["speedup"] = out["local"]["sweep_s"] / out[kind]["sweep_s"]
    out["identical"] = models["local"] == models["processes"] == models["ray"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=int, default=100, help="devices per CKKS round")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="timed CKKS rounds per executor")
    ap.add_argument("--ray-batch", type=int, default=8, help="devices per Ray task")
    ap.add_argument("--no-sweep", action="store_true", help="only the CKKS rounds")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()
    import ray

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)  # fmt: skip
    result: dict = {"ray_start_s": time.perf_counter() - t0, "workers": args.workers}
    try:
        result["ckks_round"] = bench_ckks(args.cohort, args.workers, args.repeats, args.ray_batch)
        result["ckks_round"]["cohort"] = args.cohort
        if not args.no_sweep:
            result["sweep"] = bench_sweep(args.workers)
    finally:
        ray.shutdown()
    result["machine"] = {"cores": cores(), "load_avg_before": load0,
                         "load_avg_after": os.getloadavg()[0]}  # fmt: skip
    result["config"] = {"execution_defaults": ExecutionConfig().__dict__}
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return
    for part in ("ckks_round", "sweep"):
        for kind in KINDS:
            if part in result:
                r = result[part][kind]
                t = r.get("round_s", r.get("sweep_s"))
                print(f"{part:10s} {kind:9s} {t:8.2f} s  speed-up {r['speedup']:.2f}x")
    print(f"load average {load0:.1f} -> {result['machine']['load_avg_after']:.1f}")


if __name__ == "__main__":
    main()

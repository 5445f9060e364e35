"""Rounds per hour and peak memory at population scale: synthetic 10k, 50k, 100k users.

Each (population, mode) runs in its own child process (so its peak RSS is its own): synthetic
data of ``N`` users (``--items`` items, 40 ratings per user on average), the fleet, a DP plan at
ε = 4 (central noise), and the trainer built by the toolkit's factories; the sampling rate is
``devices / N`` so a round has ``--devices`` (default 1,000) devices on average. It times
``--rounds`` rounds (plaintext: after one warm-up round that compiles the kernels; CKKS: from the
first round, which also starts the encryption workers, so CKKS figures are pessimistic) and reports

* ``round_s``: the mean wall time of the measured rounds, and ``rounds_per_hour = 3600 /
  round_s``: an EXTRAPOLATION from those few rounds (labelled ``extrapolated`` in the JSON);
* ``setup_s``: data generation, split and fleet construction (not in the rounds);
* ``peak_rss_mib``: the child's peak resident memory (``getrusage``), data and model included.

CKKS rounds of 1,000 devices take tens of seconds here (every device encrypts its whole update):
measure one or two (``--ckks-rounds``). ``load_before``/``load_after``: the 1-minute load average
around the measurement (this machine is shared). Nothing is asserted; ``--json`` prints one JSON
object. ``--population LABEL:USERS:SWEEP[:POP_SWEEP] ... --figure PNG`` instead draws the
recall-against-ε table and figure across populations from finished sweep directories.

    python benchmarks/scale.py [--users 10000 50000 100000] [--devices 1000] [--rounds 3]
                               [--ckks-rounds 1] [--modes plaintext ckks] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(users: int, items: int, devices: int, mode: str, rounds: int, dim: int) -> dict:
    """One (population, mode): warm-up round, then ``rounds`` timed rounds (in this process)."""
    import jax

    from ppr.config import load_config
    from ppr.experiments.accounting import LiveLedger
    from ppr.experiments.factories import (
        build_fleet,
        build_summation,
        build_trainer,
        prepare_data,
        run_keys,
    )
    from ppr.privacy import plan_privacy

    over = {
        "data.synthetic.n_users": users,
        "data.synthetic.n_items": items,
        "data.synthetic.n_interactions": 40 * users,
        "model.dim": dim,
        "federated.sampling_rate": min(1.0, devices / users),
        "federated.rounds": rounds + 1,
        "privacy.epsilon": 4.0,
        "privacy.clip_norm": 1.0,
        "aggregation.mode": mode,
        "aggregation.workers": 2,
    }
    cfg = load_config(None, [f"{k}={json.dumps(v)}" for k, v in over.items()])
    t0 = time.perf_counter()
    split = prepare_data(cfg)
    train, _ = split.for_evaluation("test")
    fleet = build_fleet(cfg, split, train)
    setup_s = time.perf_counter() - t0
    fed = cfg.federated
    plan = plan_privacy(cfg.privacy, fleet.n_devices, fed.sampling_rate, fed.rounds, False)
    keys = run_keys(cfg, True)
    ledger = LiveLedger(plan, fleet.members)
    summation = build_summation(cfg, plan, train.n_items, fleet.n_devices)
    trainer, state = build_trainer(cfg, fleet, summation, keys, ledger, True)
    key = jax.random.fold_in(keys.secret, 2)
    load0 = os.getloadavg()[0]
    try:
        warm_s = None
        if mode == "plaintext":  # compile the kernels first; a CKKS round is measured cold
            t1 = time.perf_counter()
            state, _ = trainer.round(state, 0, key)
            warm_s = time.perf_counter() - t1
        times, sampled = [], []
        for t in range(1, rounds + 1):
            t1 = time.perf_counter()
            state, log = trainer.round(state, t, key)
            jax.block_until_ready(state.q)
            times.append(time.perf_counter() - t1)
            sampled.append(log.sampled)
    finally:
        summation.close()
    round_s = sum(times) / len(times)
    return {
        "users": users,
        "devices": fleet.n_devices,
        "items": train.n_items,
        "dim": dim,
        "mode": mode,
        "mean_devices_per_round": sum(sampled) / len(sampled),
        "setup_s": setup_s,
        "warmup_round_s": warm_s,
        "rounds_measured": rounds,
        "round_s": round_s,
        "rounds_per_hour": 3600.0 / round_s,
        "extrapolated": True,
        "upload_bytes_per_round": int(log.upload_bytes),
        "peak_rss_mib": _peak_rss_mib(),
        "load_before": load0,
        "load_after": os.getloadavg()[0],
    }


def _child(args: argparse.Namespace, users: int, mode: str) -> dict:
    rounds = args.ckks_rounds if mode == "ckks" else args.rounds
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(users),
        mode,
        str(rounds),
        "--items",
        str(args.items),
        "--devices",
        str(args.devices),
        "--dim",
        str(args.dim),
    ]
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if out.returncode != 0:
        return {"users": users, "mode": mode, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rows(path: str) -> dict[float, dict]:
    """Aggregated sweep rows by ε (a sweep directory's ``points.json`` or that file itself)."""
    f = Path(path)
    f = f / "points.json" if f.is_dir() else f
    data = json.loads(f.read_text())
    rows = data["points"] if isinstance(data, dict) else data
    return {float(r["epsilon"]): r for r in rows}


def population_table(specs: list[str], k: int = 20) -> list[dict]:
    """One row per (population, ε) from ``LABEL:USERS:SWEEP[:POPULARITY_SWEEP]`` specs: recall of
    the model, its share of the ε = ∞ recall, private popularity at that ε (the popularity
    sweep's ``private_popularity`` baseline) and non-private popularity."""
    out = []
    for spec in specs:
        label, users, sweep, *pop = spec.split(":")
        model, prior = _rows(sweep), _rows(pop[0]) if pop else {}
        inf = model.get(float("inf"), {}).get(f"recall@{k}")
        for eps in sorted(model, reverse=True):
            r = model[eps]
            rec = r.get(f"recall@{k}")
            priv = prior.get(eps, {}).get(f"private_popularity_recall@{k}")
            out.append({
                "population": label, "users": int(users), "epsilon": eps, "recall": rec,
                "share_of_nonprivate": rec / inf if inf and rec is not None else None,
                "private_popularity": priv, "popularity": r.get(f"popularity_recall@{k}"),
                "beats_private_popularity": None if priv is None else bool(rec > priv),
            })  # fmt: skip
    return out


def population_figure(rows: list[dict], path: str) -> None:
    """Recall@k against ε per population (left) and its share of the non-private recall
    (right: the price of privacy); private popularity dashed."""
    import math

    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 4.2), dpi=120)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for label in dict.fromkeys(r["population"] for r in rows):
        pts = [r for r in rows if r["population"] == label and math.isfinite(r["epsilon"])]
        pts.sort(key=lambda r: r["epsilon"])
        eps = [r["epsilon"] for r in pts]
        line = left.plot(eps, [r["recall"] for r in pts], marker="o", label=label)[0]
        priv = [(r["epsilon"], r["private_popularity"]) for r in pts if r["private_popularity"]]
        if priv:
            left.plot(*zip(*priv, strict=True), ls="--", color=line.get_color(), alpha=0.6)
        right.plot(eps, [r["share_of_nonprivate"] for r in pts], marker="o", label=label)
    for ax, name in ((left, "recall@20 (dashed: private popularity)"),
                     (right, "recall@20 / non-private recall@20")):  # fmt: skip
        ax.set_xscale("log")
        ticks = sorted({r["epsilon"] for r in rows if math.isfinite(r["epsilon"])})
        ax.set_xticks(ticks, [f"{e:g}" for e in ticks])
        ax.minorticks_off()
        ax.set_xlabel("user-level epsilon")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ckks-rounds", type=int, default=1)
    ap.add_argument("--modes", nargs="+", default=["plaintext", "ckks"])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=3, metavar=("USERS", "MODE", "ROUNDS"), help=argparse.SUPPRESS)
    ap.add_argument("--population", nargs="+", metavar="LABEL:USERS:SWEEP[:POP_SWEEP]")
    ap.add_argument("--figure", help="with --population: write the recall-vs-epsilon PNG here")
    args = ap.parse_args(argv)
    if args.population:
        rows = population_table(args.population)
        if args.figure:
            population_figure(rows, args.figure)
        print(json.dumps({"benchmark": "population", "rows": rows}))
        return 0
    if args.child:
        users, mode, rounds = int(args.child[0]), args.child[1], int(args.child[2])
        print(json.dumps(measure(users, args.items, args.devices, mode, rounds, args.dim)))
        return 0
    rows = [_child(args, n, m) for n in args.users for m in args.modes]
    result = {
        "benchmark": "scale",
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "rounds_per_hour": "extrapolated: 3600 / mean round_s",
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{'users':>8} {'mode':>9} {'dev/round':>9} {'round s':>8} {'rounds/h':>9} {'RSS MiB':>8}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['users']:>8} {r['mode']:>9} error: {r['error']}")
            continue
        print(
            f"{r['users']:>8} {r['mode']:>9} {r['mean_devices_per_round']:>9.0f} "
            f"{r['round_s']:>8.2f} {r['rounds_per_hour']:>9.0f} {r['peak_rss_mib']:>8.0f}"
        )
    print("rounds/h: extrapolated from the measured rounds (3600 / mean round time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

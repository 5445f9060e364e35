"""Cold PLD calibration of one sweep point, against the cost of the point's own training run.

A sweep calibrates σ for every point (exact PLD calibration, the live ledger's accountant); the
target is that calibration stays small next to the point itself. For each case of the ML-100K
sweep (q = 1, T = 80, with and without the DP popularity release; q = 0.1, T = 200) and each ε
of ``--epsilons``, the ε cache is cleared and ``plan_privacy`` timed cold. In the same process,
one run of ``configs/sweep_ml100k.toml`` (baselines off, not written) is timed; the ratio
``calibration / run`` is the figure that does not depend on this machine's speed. Nothing is
asserted; ``--json`` prints one JSON object.

    python benchmarks/calibration.py [--epsilons 1 2 4 8 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ppr.config import PrivacyConfig, load_config  # noqa: E402
from ppr.experiments.simulate import simulate  # noqa: E402
from ppr.privacy import clear_cache, plan_privacy  # noqa: E402

CASES = [(1.0, 80, False), (1.0, 80, True), (0.1, 200, False)]
N_USERS, DELTA = 943, 1e-4


def cold_calibration_s(eps: float, q: float, rounds: int, prior: bool) -> float:
    cfg = PrivacyConfig(epsilon=eps, delta=DELTA, accountant="pld", popularity_share=0.5)
    clear_cache()
    start = time.perf_counter()
    plan_privacy(cfg, N_USERS, q, rounds, include_popularity=prior)
    return time.perf_counter() - start


def point_run_s(eps: float) -> float:
    over = [f"privacy.epsilon={eps}", "baselines.centralized=false", "privacy.noise_seed=0"]
    cfg = load_config(ROOT / "configs" / "sweep_ml100k.toml", over)
    start = time.perf_counter()
    simulate(cfg, write=False)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0, 16.0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    run_s = point_run_s(max(args.epsilons))
    rows = []
    for q, rounds, prior in CASES:
        times = [cold_calibration_s(e, q, rounds, prior) for e in args.epsilons]
        rows.append({
            "q": q, "rounds": rounds, "popularity_release": prior,
            "calibration_s": dict(zip(map(str, args.epsilons), times, strict=True)),
            "max_s": max(times), "max_over_run": max(times) / run_s,
        })  # fmt: skip
    out = {"point_run_s": run_s, "cases": rows}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"one sweep point (configs/sweep_ml100k.toml, baselines off): {run_s:.1f} s")
    for r in rows:
        cal = " ".join(f"{k}:{v:.2f}" for k, v in r["calibration_s"].items())
        print(f"q={r['q']} T={r['rounds']} prior={r['popularity_release']}: eps:s {cal}; "
              f"max {r['max_s']:.2f} s = {r['max_over_run']:.2f}x the run")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Hybrid serving: bytes and latency of one refinement request, score error, attacker AUC, and
recall@20 of local vs hybrid vs full-server scoring.

Usage: ``python benchmarks/refine.py [--json] [--quick]`` (PPR_DATA_DIR must hold ml-100k).

* ML-100K: ALS (dim 32) on 80% of each user's positives; recall@20 on the other 20%. The device
  budget (64 MB) does not bind there: the device stores float32 and hybrid runs in ``catalog``
  mode (all 1,682 items in one ciphertext).
* Synthetic (``clustered_catalog``, 100k items, dim 32, 20% of each sampled user's items held
  out): the device budget (1.5 MB) binds, even int8 at dim 32 does not fit, so the device keeps
  the largest PCA projection that does (``truncated_device``); the server scores with the full
  float32 dim-32 model in ``items`` mode (real candidates among popularity-matched personas).
* Attack: the server's popularity, coherence and intersection attacks on real-vs-decoy items
  over devices whose history grows by one item per request (fixed personas with one pseudonym
  per user vector vs the naive scheme).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from ppr.data.movielens import load_ml100k
from ppr.data.split import UserItems, positives
from ppr.model.baselines import centralized_als
from ppr.model.mf import MFHyper
from ppr.model.release import ReleasedModel
from ppr.serving.budget import plan_device
from ppr.serving.catalog import Catalog, clustered_catalog, sample_user_items
from ppr.serving.errors import BudgetError
from ppr.serving.hybrid import PersonaRequester, attack_aucs, connect, observe_requests
from ppr.serving.recommender import recommender_for_budget
from ppr.serving.refine import DeviceKey, RefinementScorer, score_error_bound

K, ALPHA, REG, DIM = 20, 3.0, 30.0, 32
#: The synthetic catalog where the budget binds: int8 at dim 32 needs 3.4 MB, the device has 1.5.
SYN_ITEMS, SYN_BUDGET_MB = 100_000, 1.5


def split_users(users: list[np.ndarray], rng: np.random.Generator):
    """(train items, held-out items) per user with at least 5 items: 20% held out."""
    out = []
    for items in users:
        if items.size < 5:
            continue
        perm = rng.permutation(items)
        n_test = max(1, items.size // 5)
        out.append((np.sort(perm[n_test:]), np.sort(perm[:n_test])))
    return out


def ml100k(rng: np.random.Generator, n_eval: int):
    root = Path(os.environ.get("PPR_DATA_DIR", "../shared/datasets"))
    inter = positives(load_ml100k(root / "ml-100k"), 4.0)
    ui = UserItems.from_pairs(inter.users.astype(np.int64), inter.items, inter.n_users,
                              inter.n_items)  # fmt: skip
    pairs = split_users([ui.row(u) for u in range(ui.n_users)], rng)
    us = np.concatenate([np.full(tr.size, j) for j, (tr, _) in enumerate(pairs)])
    its = np.concatenate([tr for tr, _ in pairs])
    train = UserItems.from_pairs(us.astype(np.int64), its, len(pairs), ui.n_items)
    q = centralized_als(jax.random.key(0), train, np.arange(len(pairs)), DIM,
                        MFHyper(ALPHA, REG), 10, 0.1)  # fmt: skip
    return np.asarray(q, np.float32), pairs[:n_eval]


def recall_at_k(rec, pairs) -> tuple[float, float]:
    """(mean recall@K, mean seconds per recommend) over ``pairs``."""
    hits, t0 = [], time.perf_counter()
    for train, test in pairs:
        ids, _ = rec.recommend(train, k=K)
        hits.append(np.isin(test, ids).sum() / min(K, test.size))
    return float(np.mean(hits)), (time.perf_counter() - t0) / len(pairs)


def truncated_device(q: np.ndarray, budget_mb: float):
    """The device's model when even int8 at the full dimension exceeds the budget: the largest
    dimension ``d'`` whose PCA projection ``Q V_d'`` (post-processing of the release) fits, in
    the format and index :func:`recommender_for_budget` picks."""
    n, dim = q.shape
    fits = [d for d in range(1, dim + 1) if _fits(n, d, budget_mb)]
    if not fits or fits[-1] == dim:
        return recommender_for_budget(q, ALPHA, REG, budget_mb), dim
    _, vecs = np.linalg.eigh(q.T.astype(np.float64) @ q)
    small = (q @ vecs[:, -fits[-1] :]).astype(np.float32)
    return recommender_for_budget(small, ALPHA, REG, budget_mb), fits[-1]


def _fits(n: int, d: int, budget_mb: float) -> bool:
    try:
        plan_device(n, d, budget_mb)
    except BudgetError:
        return False
    return True


def compare(name: str, q: np.ndarray, pairs, budget_mb: float, candidates: int) -> dict:
    """recall@K of local (budgeted), hybrid and full-server; one request's bytes/latency."""
    with tempfile.TemporaryDirectory() as tmp:
        ReleasedModel(q, np.arange(q.shape[0]), ALPHA, REG, f"{name}@1").save(tmp)
        local, local_dim = truncated_device(q, budget_mb)
        full = recommender_for_budget(q, ALPHA, REG, 1e6)
        hybrid = connect(Path(tmp), local, n_candidates=candidates)
        r_local, _ = recall_at_k(local, pairs)
        r_full, _ = recall_at_k(full, pairs)
        r_hybrid, s_hybrid = recall_at_k(hybrid, pairs)
    h = hybrid.history
    gap = r_full - r_local
    return {
        "catalog": name, "n_items": int(q.shape[0]), "server_dim": int(q.shape[1]),
        "device_budget_mb": budget_mb, "device_dim": local_dim,
        "device_format": local.items.format, "device_bytes": local.index.nbytes,
        "mode": hybrid.mode, "users": len(pairs), "candidates": candidates,
        f"recall@{K}": {"local": r_local, "hybrid": r_hybrid, "full_server": r_full},
        "gap": gap, "gap_recovered": None if gap <= 1e-9 else (r_hybrid - r_local) / gap,
        "scored_per_request": float(np.mean([x.n_scored for x in h])),
        "request_bytes_up_excl_uploads": float(np.mean(
            [x.bytes_up - x.context_bytes - x.vector_bytes for x in h])),
        "request_bytes_down": float(np.mean([x.bytes_down for x in h])),
        "context_bytes": h[0].context_bytes, "vector_bytes": h[0].vector_bytes,
        "stream_bytes_once": int(max(x.stream_bytes for x in h)),
        "latency_s_p50": float(np.median([x.latency_s for x in h])),
        "hybrid_seconds_per_user": s_hybrid,
    }  # fmt: skip


def score_error(rng: np.random.Generator, q: np.ndarray) -> dict:
    """Max |decrypted - plaintext| over one block, absolute and as a fraction of the bound."""
    server = RefinementScorer(q, "err@1")
    key = DeviceKey(server.params)
    ctx = server.load_context(key.public_context())
    p = rng.normal(size=q.shape[1])
    frame, p_scale = key.encrypt_vector(p)
    s = key.decrypt_scores(server.score(server.load_vector(ctx, frame), [0]), 1)[0]
    ids = server.partition.items(0)
    qn = q[ids].astype(np.float64) / server.q_scale
    err = np.abs(s[: ids.size] - qn @ (p / p_scale))
    bound = score_error_bound(server.params, qn)
    real = err * p_scale * server.q_scale
    return {"max_abs_error_real_units": float(real.max()),
            "max_error_over_bound": float((err / bound).max()),
            "score_std_real_units": float(np.std(q[ids] @ p)),
            "bound_normalized_median": float(np.median(bound))}  # fmt: skip


def attack(
    rng: np.random.Generator, cat: Catalog, budget_mb: float, n_users: int, candidates: int
) -> dict:
    """The server's attacks on the ``items`` requests of devices whose history grows by one item
    per request; popularity from 2,000 other users of the same generator."""
    q = cat.q
    local, _ = truncated_device(q, budget_mb)
    users = sample_user_items(rng, cat, n_users, items_per_user=(10, 60))
    others = sample_user_items(rng, cat, 2000, items_per_user=(10, 60))
    pop = np.bincount(np.concatenate(others + users), minlength=q.shape[0])
    hist = [[u[: u.size - j] for j in (2, 1, 0)] for u in users]
    seeds = iter(range(10**6))
    out = {}
    for label, fixed, rekey in (("fixed_personas", True, True), ("naive", False, False)):
        obs = observe_requests(
            local,
            hist,
            lambda f=fixed: PersonaRequester(local, candidates, 9, f, next(seeds)),
            rekey,
        )
        out[label] = attack_aucs(obs, q, pop) | {
            "requests": len(obs),
            "pseudonyms": obs[-1].pseudonym,
            "items_per_request": float(np.mean([o.items.size for o in obs])),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer users")
    ap.add_argument("--candidates", type=int, default=500, help="local candidates refined")
    ap.add_argument("--attack-users", type=int, default=30, help="devices in the attack")
    ap.add_argument("--attack-only", action="store_true", help="only the attack section")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = 30 if args.quick else 100
    if args.attack_only:
        cat = clustered_catalog(rng, SYN_ITEMS, DIM)
        res = {"attack": attack(rng, cat, SYN_BUDGET_MB, args.attack_users, args.candidates)}
        print(json.dumps(res, indent=2) if args.json else json.dumps(res))
        return
    q_ml, pairs_ml = ml100k(rng, n)
    cat = clustered_catalog(rng, SYN_ITEMS, DIM)
    pairs_syn = split_users(sample_user_items(rng, cat, n, items_per_user=(10, 60)), rng)
    res = {
        "date": time.strftime("%Y-%m-%d"),
        "ml-100k": compare("ml-100k", q_ml, pairs_ml, 64.0, args.candidates),
        "synthetic": compare(
            f"synthetic-{SYN_ITEMS}", cat.q, pairs_syn, SYN_BUDGET_MB, args.candidates
        ),
        "score_error_ml100k": score_error(rng, q_ml),
        "attack": attack(rng, cat, SYN_BUDGET_MB, args.attack_users, args.candidates),
    }
    print(json.dumps(res, indent=2) if args.json else json.dumps(res))


if __name__ == "__main__":
    main()

"""Damage ONE malicious device does to (CKKS) secure aggregation on MovieLens 100K.

Threat model (DESIGN.md): devices may be malicious. Clipping runs on the device, and without
proofs neither the aggregator (which sees ciphertexts) nor the key holder (which sees only the
sum) can check one device's update. This benchmark measures what is caught and what is not.

1. Probes (real CKKS path, one round of the real cohort each, through the real trainer): one
   device sends garbage bytes, a wrong chunk count, ciphertexts under another key (same
   parameters), or correctly encrypted updates whose coordinates exceed the value bound, either
   by a huge factor or by a factor the key holder's aggregate bound cannot see.
2. Poisoning (passes every check): one device per round sends, inside valid ciphertexts, an
   update with every coordinate within +-value_bound (L2 norm up to sqrt(n_items*dim)*C instead of
   <= C): ``target`` pushes one unpopular item's row along the mean item vector (the attacker
   knows Q, which every device receives), ``random`` sends fresh +-C signs, ``shrink`` sends
   -C*sign(Q). ``x<k>`` variants send k value bounds per coordinate: the key holder accepts them
   (its check is on the aggregate, ``|sum| <= n_accepted * value_bound``; see the probes), and
   they are simulated on the plaintext path with a value bound of k*C for the attacker only.

The adversary is a subclass of the real :class:`~ppr.federated.EncodedSum` that replaces
one device's dense update before it is encrypted; the attacker takes part in every round (one
malicious device among the ~280 of each round). Poisoning runs use ``PlaintextAggregation`` (the
same arithmetic as CKKS up to CKKS error); one attacked run goes through the real CKKS path and
is compared with its plaintext twin.

    .venv/bin/python benchmarks/malicious.py [--json] [--rounds 20] [--ckks-rounds 8]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import tenseal as ts

from ppr.config import Config, load_config
from ppr.crypto import (
    CkksSecureAggregation,
    EncryptionPool,
    KeyHolder,
    PlaintextAggregation,
    decode_frame,
    encode_frame,
    pack,
)
from ppr.data.split import Split, UserItems
from ppr.evaluation.metrics import evaluate_scores
from ppr.experiments.factories import (
    build_trainer,
    hyper_of,
    prepare_data,
    run_keys,
    secure_aggregation,
)
from ppr.federated import (
    CentralNoise,
    DeviceFleet,
    DeviceRound,
    EncodedSum,
    FederatedTrainer,
    RoundSum,
    Server,
    make_server_optimizer,
)
from ppr.io import json_safe
from ppr.model.mf import init_item_factors, solve_user_factors
from ppr.privacy import plan_privacy

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = ("none", "target", "random", "shrink")


@dataclass(frozen=True)
class Attack:
    """One malicious device: ``kind`` in :data:`ATTACKS`, ``scale`` value bounds per coordinate."""

    kind: str
    device_id: int
    target_item: int
    scale: float = 1.0
    seed: int = 0


def craft_update(attack: Attack, q: np.ndarray, value_bound: float, round_idx: int) -> np.ndarray:
    """The malicious flat update (float32); every coordinate is ``<= scale * value_bound``."""
    n_items, dim = q.shape
    amp = attack.scale * value_bound
    x = np.zeros((n_items, dim), np.float64)
    if attack.kind == "target":
        x[attack.target_item] = amp * np.sign(q.sum(axis=0))
    elif attack.kind == "random":
        rng = np.random.default_rng([attack.seed, round_idx])
        x = amp * rng.choice([-1.0, 1.0], size=(n_items, dim))
    elif attack.kind == "shrink":
        x = -amp * np.sign(q)
    elif attack.kind != "none":
        raise ValueError(f"`attack` must be one of {ATTACKS}. Found {attack.kind!r}.")
    return x.reshape(-1).astype(np.float32)


class PoisoningAggregator(EncodedSum):
    """The real dense aggregation, with one device's update replaced before it is encrypted.

    The attacker takes part in every round (appended to the cohort when not sampled)."""

    def __init__(
        self, secure, n_items: int, dim: int, attack: Attack, craft_bound: float | None = None
    ) -> None:
        super().__init__(secure, n_items, dim)
        self.attack = attack
        self.craft_bound = secure.spec.value_bound if craft_bound is None else craft_bound
        self._round = 0

    def _rows(
        self, devices: DeviceRound, key: jax.Array, share_std: float
    ) -> tuple[np.ndarray, np.ndarray]:
        rows, ids = super()._rows(devices, key, share_std)
        if self.attack.kind == "none":
            return rows, ids
        bad = craft_update(self.attack, np.asarray(devices.q), self.craft_bound, self._round)
        hit = np.flatnonzero(ids == self.attack.device_id)
        if hit.size:
            rows[hit[0]] = bad
            return rows, ids
        return np.vstack([rows, bad[None]]), np.append(ids, self.attack.device_id)

    def aggregate(self, round_idx: int, devices: DeviceRound, key: jax.Array, **kw):
        self._round = round_idx
        return super().aggregate(round_idx, devices, key, **kw)


# -- probes of what is caught (real CKKS) -----------------------------------------------------


class ProbeAggregator(EncodedSum):
    """Real CKKS round where honest devices encrypt with the real pool and one device sends
    ``probe``'s payload through ``aggregate_messages`` (raw device payloads)."""

    def __init__(
        self,
        secure: CkksSecureAggregation,
        n_items: int,
        dim: int,
        probe: str,
        device_id: int,
        factor: float,
    ) -> None:
        super().__init__(secure, n_items, dim)
        self.probe, self.device_id, self.factor = probe, device_id, factor
        self.pool = EncryptionPool(secure.public_context, secure.spec, workers=2)

    def _bad_payload(self, round_idx: int, honest_payload: bytes) -> object:
        spec = self.secure.spec
        slots = spec.params.slots
        if self.probe == "garbage":
            return np.random.default_rng(0).bytes(4000)
        if self.probe == "wrong_chunk_count":
            _, chunks = decode_frame(honest_payload)
            return encode_frame(chunks[:-1], round_idx)
        if self.probe == "other_key":
            other = KeyHolder(spec)  # same parameters, another secret key
            ctx = ts.context_from(other.public_context())
            x = np.full(spec.n_values, 0.5)
        else:  # beyond the value bound, correctly encrypted with the round's public key
            ctx = ts.context_from(self.secure.public_context)
            x = np.zeros(spec.n_values)
            x[0] = self.factor  # in value bounds (the device encodes x / value_bound)
        cts = [ts.ckks_vector(ctx, row.tolist()).serialize() for row in pack(x, slots)]
        return encode_frame(cts, round_idx)

    def aggregate(self, round_idx, devices, key, *, noise=None, noise_share_std=0.0):
        rows, ids = self._rows(devices, key, noise_share_std)
        msgs: dict[int, object] = {}
        for out in self.pool.encrypt_many(rows, ids, round_idx):
            msgs[out.device_id] = out.payload
        msgs[self.device_id] = self._bad_payload(round_idx, msgs[self.device_id])
        flat = None if noise is None else np.asarray(noise, np.float64).reshape(-1)
        res = self.secure.aggregate_messages(msgs, round_idx, flat)
        return RoundSum(
            res.total.reshape(self.n_items, self.dim),
            res.n_accepted,
            res.upload_bytes,
            dict(res.rejected),
            list(res.dropped),
        )

    def close(self) -> None:
        self.pool.close()
        super().close()


# -- runs -------------------------------------------------------------------------------------


@dataclass
class Setup:
    cfg: Config
    split: Split
    train: UserItems
    target: UserItems
    fleet: DeviceFleet
    target_item: int
    attacker: int


def make_setup(config: str, overrides: dict) -> Setup:
    cfg = load_config(ROOT / "configs" / config, overrides)
    split = prepare_data(cfg)
    train, target = split.for_evaluation(cfg.evaluation.split)
    fleet = DeviceFleet(train, split.train_users, hyper_of(cfg))
    counts = np.bincount(train.to_pairs()[1], minlength=train.n_items)
    # unpopular target: the first item (by id) with exactly 2 training positives
    target_item = int(np.flatnonzero(counts == 2)[0])
    attacker = int(fleet.population[len(fleet.population) // 2])
    return Setup(cfg, split, train, target, fleet, target_item, attacker)


def train_model(setup: Setup, base: EncodedSum, rounds: int | None = None):
    cfg, fleet = setup.cfg, setup.fleet
    fed, priv = cfg.federated, cfg.privacy
    rounds = rounds or fed.rounds
    plan = plan_privacy(priv, fleet.n_devices, fed.sampling_rate, rounds, False)
    private = plan.noise_multiplier > 0
    agg = CentralNoise(base, plan.noise_multiplier, priv.clip_norm) if private else base
    keys = run_keys(cfg, private)  # secret noise unless the config sets privacy.noise_seed
    trainer, state0 = build_trainer(cfg, fleet, agg, keys, None, private)
    try:
        state, logs = trainer.fit(state0, rounds, jax.random.fold_in(keys.secret, 2))
    finally:
        agg.close()
    return np.asarray(state.q), logs, plan.noise_multiplier


def evaluate(setup: Setup, q: np.ndarray) -> dict:
    """recall@k of the model, and where the target item lands for users who do not hold it."""
    k = setup.cfg.evaluation.k
    hyper = hyper_of(setup.cfg)
    train, target = setup.train, setup.target
    m = evaluate_scores(lambda b: solve_user_factors(q, train, b, hyper) @ q.T, train, target, k)
    users = np.flatnonzero(train.counts() > 0)
    p = solve_user_factors(q, train, users, hyper)
    s = p @ q.T
    u_idx, i_idx = train.to_pairs()
    pos = {int(u): j for j, u in enumerate(users)}
    rows = np.fromiter((pos[int(u)] for u in u_idx), np.int64, u_idx.size)
    s[rows, i_idx] = -np.inf
    t = setup.target_item
    holders = np.isinf(s[:, t])
    st = s[~holders, t]
    ranks = 1 + np.sum(s[~holders] > st[:, None], axis=1)
    return {
        f"recall@{k}": float(m.recall),
        f"ndcg@{k}": float(m.ndcg),
        "target_median_rank": float(np.median(ranks)),
        f"target_in_top{k}": int(np.sum(ranks <= k)),
        "target_users": int(ranks.size),
        "target_norm": float(np.linalg.norm(q[t])),
        "q_fro": float(np.linalg.norm(q)),
    }


def poison_runs(setup: Setup, attacks: list[tuple[str, float]], rounds: int) -> list[dict]:
    cfg = setup.cfg
    n, dim, clip = setup.fleet.n_items, cfg.model.dim, cfg.privacy.clip_norm
    out = []
    for kind, scale in attacks:
        atk = Attack(kind, setup.attacker, setup.target_item, scale, seed=cfg.seed)
        t0 = time.perf_counter()
        # x<k>: what the CKKS key holder accepts (see the probes), on the plaintext path: the
        # honest devices still clip to C; only the bound checked on each payload is k * C.
        secure = PlaintextAggregation(n * dim, clip * scale)
        base = PoisoningAggregator(secure, n, dim, atk, craft_bound=clip)
        q, logs, sigma = train_model(setup, base, rounds)
        ev = evaluate(setup, q)
        bad = craft_update(atk, np.ones((n, dim)), clip, 0)
        out.append(
            {
                "attack": kind if scale == 1.0 else f"{kind} x{scale:g}",
                "epsilon": cfg.privacy.epsilon,
                "dim": dim,
                "clip_norm": clip,
                "noise_multiplier": sigma,
                "attacker_l2": float(np.linalg.norm(bad)) if kind != "none" else 0.0,
                "mean_cohort": float(np.mean([lg.accepted for lg in logs])),
                "rejected": int(sum(lg.rejected for lg in logs)),
                "seconds": time.perf_counter() - t0,
                **ev,
            }
        )
    return out


def ckks_run(setup: Setup, kind: str, rounds: int) -> dict:
    """The ``kind`` attack through the real CKKS path, compared with its plaintext twin."""
    cfg = setup.cfg
    n, dim, clip = setup.fleet.n_items, cfg.model.dim, cfg.privacy.clip_norm
    atk = Attack(kind, setup.attacker, setup.target_item, 1.0, seed=cfg.seed)
    t0 = time.perf_counter()
    fed = cfg.federated
    plan = plan_privacy(cfg.privacy, setup.fleet.n_devices, fed.sampling_rate, rounds, False)
    secure = secure_aggregation(cfg, plan, n, setup.fleet.n_devices)
    q_c, logs, _ = train_model(setup, PoisoningAggregator(secure, n, dim, atk), rounds)
    secs = time.perf_counter() - t0
    q_p, _, _ = train_model(
        setup, PoisoningAggregator(PlaintextAggregation(n * dim, clip), n, dim, atk), rounds
    )
    return {
        "attack": kind,
        "rounds": rounds,
        "accepted_per_round": [lg.accepted for lg in logs],
        "rejected": int(sum(lg.rejected for lg in logs)),
        "seconds": secs,
        "max_abs_q_diff_vs_plaintext": float(np.max(np.abs(q_c - q_p))),
        "ckks": evaluate(setup, q_c),
        "plaintext": evaluate(setup, q_p),
    }


def probe(setup: Setup, kind: str, factor: float = 0.0) -> dict:
    """One round of the real cohort under CKKS with one bad device, through the trainer."""
    cfg = setup.cfg
    n, dim, clip = setup.fleet.n_items, cfg.model.dim, cfg.privacy.clip_norm
    secure = CkksSecureAggregation(n * dim, workers=1, value_bound=clip, l2_clip=clip)
    base = ProbeAggregator(secure, n, dim, kind, setup.attacker, factor)
    res: dict = {"probe": kind if not factor else f"{kind} ({factor:g} value bounds)"}
    t0 = time.perf_counter()
    fed = cfg.federated
    try:
        server = Server(make_server_optimizer(fed, cfg.model.item_reg))
        q0 = init_item_factors(jax.random.PRNGKey(0), n, dim, cfg.model.init_scale)
        trainer = FederatedTrainer(
            _WithAttacker(setup.fleet, setup.attacker),
            base,
            server,
            sampling="poisson",
            sampling_rate=fed.sampling_rate,
            participants=fed.participants,
            dropout_rate=0.0,
            clip_norm=clip,
            fixed_denominator=None,
        )
        state0 = server.init(q0)
        state, logs = trainer.fit(state0, 1, jax.random.PRNGKey(cfg.seed))
        lg = logs[0]
        step = np.abs(np.asarray(state.q) - np.asarray(q0))
        res.update(
            outcome="round refused (skipped)" if lg.aggregate_rejected else "round accepted",
            sampled=lg.sampled,
            accepted=lg.accepted,
            rejected=lg.rejected,
            max_abs_step=float(step.max()),
        )
    except Exception as exc:  # report exactly what the trainer raised
        res.update(
            outcome="trainer raised",
            error=type(exc).__name__,
            message=" ".join(str(exc).split())[:200],
        )
    finally:
        base.close()
    res["seconds"] = time.perf_counter() - t0
    return res


class _WithAttacker:
    """The real fleet, with the attacker added to every cohort (so that it is in the probe's
    round whatever Poisson sampling drew)."""

    def __init__(self, fleet: DeviceFleet, attacker: int) -> None:
        self._fleet, self.attacker = fleet, attacker
        self.population = fleet.population

    def compute(self, q, device_ids, clip_norm):
        ids = np.union1d(np.asarray(device_ids, np.int64), [self.attacker])
        return self._fleet.compute(q, ids, clip_norm)


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--rate", type=float, default=0.3, help="Poisson sampling rate q")
    ap.add_argument("--ckks-rounds", type=int, default=8, help="0 skips the CKKS runs")
    ap.add_argument("--amplify", type=float, default=50.0, help="k of the x<k> attacks")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.getLogger("ppr.crypto").setLevel(logging.ERROR)
    os.environ.setdefault("PPR_DATA_DIR", str(ROOT.parent / "shared" / "datasets"))
    common = {
        "federated.sampling_rate": args.rate,
        "federated.rounds": args.rounds,
        "aggregation.workers": 2,
        "seed": args.seed,
    }
    t0 = time.perf_counter()
    report: dict = {"rounds": args.rounds, "sampling_rate": args.rate, "seed": args.seed}

    plain = make_setup("ml100k.toml", common)
    report["target_item"] = plain.target_item
    report["attacker_device"] = plain.attacker
    report["devices"] = plain.fleet.n_devices
    k = args.amplify
    report["poisoning"] = poison_runs(
        plain,
        [
            ("none", 1.0),
            ("target", 1.0),
            ("random", 1.0),
            ("shrink", 1.0),
            ("target", k),
            ("random", k),
            ("shrink", k),
        ],
        args.rounds,
    )
    dp = make_setup("sweep_ml100k.toml", {**common, "privacy.epsilon": 8.0})
    report["poisoning_dp"] = poison_runs(
        dp,
        [
            ("none", 1.0),
            ("target", 1.0),
            ("random", 1.0),
            ("shrink", 1.0),
            ("target", k),
            ("random", k),
        ],
        args.rounds,
    )
    if args.ckks_rounds > 0:
        report["probes"] = [
            probe(plain, "garbage"),
            probe(plain, "wrong_chunk_count"),
            probe(plain, "other_key"),
            probe(plain, "beyond_bound", 1e6),
            probe(plain, "beyond_bound", k),
        ]
        report["ckks_run"] = ckks_run(plain, "target", args.ckks_rounds)
    report["total_s"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(json_safe(report), indent=1, allow_nan=False))
    else:
        print_tables(report)
    return 0


def print_tables(r: dict) -> None:
    print(
        f"ML-100K, {r['rounds']} rounds, q={r['sampling_rate']}, {r['devices']} devices, "
        f"target item {r['target_item']}, attacker device {r['attacker_device']}"
    )
    cols = [
        "attack",
        "epsilon",
        "attacker_l2",
        "mean_cohort",
        "rejected",
        "recall@20",
        "target_median_rank",
        "target_in_top20",
        "target_users",
        "seconds",
    ]
    for name in ("poisoning", "poisoning_dp"):
        print(f"\n{name}")
        print(" | ".join(cols))
        for row in r[name]:
            print(
                " | ".join(
                    f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in cols
                )
            )
    for p in r.get("probes", []):
        print(p)
    if "ckks_run" in r:
        print(r["ckks_run"])


if __name__ == "__main__":
    sys.exit(main())

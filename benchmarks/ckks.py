"""Benchmark CKKS secure aggregation (ppr.crypto): device cost, upload size, workers, whole rounds.

    python benchmarks/ckks.py                  # ML-100K and ML-1M sizes, 1,000-device round
    python benchmarks/ckks.py --quick          # smoke test (< 60 s): small cohort, few repeats
    python benchmarks/ckks.py --json           # one JSON object on stdout (nothing else)
    python benchmarks/ckks.py --sizes ml100k --repeats 5 --cohort 200 --workers 2

What is measured (all in this one process run, wall-clock ``time.perf_counter``):

* ``sizes.<name>``: one device's ``DeviceEncryptor.encrypt`` (check, pack, encrypt, serialize,
  frame) of a clipped item-matrix update (ML-100K: 1682 x 32 values, ML-1M: 3706 x 32), against
  bare TenSEAL encrypting and serializing the same padded slots with the same public context
  (``ts.ckks_vector(ctx, row.tolist()).serialize()`` per ciphertext, no checks, no frame). The two
  are timed alternately ``--repeats`` times after a warm-up; medians are reported.
  ``throughput_ratio`` = our slots/s / bare slots/s. ``upload_bytes`` is the framed payload a
  device sends per round; ``expansion`` = upload bytes / float32 bytes of the update. The same
  values are also encrypted with TenSEAL's usual ``N=8192, [60, 40, 40, 60], 2^40`` parameters
  (public context, 4096 slots per ciphertext) for the size comparison.
* ``pool``: ``EncryptionPool.encrypt_many`` over ``--pool-devices`` ML-100K updates with
  ``workers=1`` (in-process) and ``workers=W`` (``--workers`` spawned worker processes), warm
  pools, alternating, medians: ``speedup`` = t(1) / t(W). ``machine_ceiling_speedup`` is W
  independent processes encrypting their share with nothing sent back, over one: what the
  machine allows at that moment. CPU seconds of the caller and of its workers (``/proc``) show
  the cost of moving each framed update (1.7 MB at ML-100K) from a worker to the caller.
* ``round``: one ``CkksSecureAggregation`` round of ``--cohort`` ML-100K devices (plus a Gaussian
  central-DP noise vector) with 1 worker (roles run one after another, so ``aggregator_s`` is the
  aggregator's own time) and with ``--workers`` workers (wall time as deployed on this machine;
  the aggregator then shares the cores with the encryption workers), and the
  ``PlaintextAggregation`` round of the same cohort. ``max_abs_error`` compares the CKKS total to
  the float64 sum; ``error_vs_bound`` divides it by ``precision_bound``. The key holder floods
  every release (ppr.crypto.params): ``flooding_std`` and ``error_bound`` are what the round's
  result states, ``rms_error`` the measured RMS error, ``value_rms`` the RMS of the exact sum
  (updates plus DP noise), so ``flooding_over_values`` is the precision the flooding costs.
* ``sizes.<name>.previous``: the same values under the unflooded design's parameters
  (``N=4096, [56, 53], 2^40``), for the before/after upload size.
* ``garbage``: one device in a round of ``--garbage-cohort`` ML-100K devices sends a well-formed
  ciphertext of garbage (a byte of its own ciphertext flipped, under a valid frame digest: nothing
  before decryption can tell) with probability ``q`` = 0.5 per round, over ``--garbage-rounds``
  rounds: ``rounds_refused`` (the key holder refuses every round it is in) and the seconds of
  work those rounds wasted; ``transport_flip_*``: the same flip made in transport (after the
  digest) only costs the device itself.

``targets`` gathers the goals: throughput ratio >= 0.9 (worst size), expansion <= 13 (worst
size; the flooding-safe parameters need a second data prime: the unflooded design met <= 8),
speed-up of the pool >= 1.7. ``machine.load_avg_*`` records the 1-minute load
average before and after: on a shared machine a load above the core count makes the speed-up and
timings pessimistic.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import tenseal as ts

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ppr.crypto import (
    AggregationSpec,
    CkksParams,
    CkksSecureAggregation,
    DeviceEncryptor,
    EncryptionPool,
    KeyHolder,
    PlaintextAggregation,
    decode_frame,
    default_params,
    encode_frame,
    pack,
    precision_bound,
)

#: Item-matrix sizes (n_items, dim) of the federated MF model.
SIZES: dict[str, tuple[int, int]] = {"ml100k": (1682, 32), "ml1m": (3706, 32)}
#: TenSEAL's tutorial parameters, for the upload-size comparison.
TENSEAL_USUAL = CkksParams(8192, (60, 40, 40, 60), 40)
#: The unflooded design's parameters (exact decryptions released), for the before/after size.
PREVIOUS = CkksParams(4096, (56, 53), 40)

TARGET_RATIO = 0.9
TARGET_EXPANSION = 13.0
TARGET_SPEEDUP = 1.7


def clipped_updates(rng: np.random.Generator, n: int, size: int, clip: float = 1.0) -> np.ndarray:
    """``n`` float32 updates with L2 norm ``clip`` (so every coordinate is within ``clip``)."""
    u = rng.normal(size=(n, size))
    u *= clip / np.linalg.norm(u, axis=1, keepdims=True)
    return u.astype(np.float32)


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _public_context(params: CkksParams) -> ts.Context:
    """A device-side (public) TenSEAL context for ``params``, built with TenSEAL alone."""
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
        n_threads=1,
    )
    ctx.global_scale = params.scale
    return ts.context_from(ctx.serialize(save_secret_key=False), n_threads=1)


def _children_cpu_s() -> float | None:
    """User + system CPU seconds of this process's live multiprocessing children (Linux /proc;
    ``None`` where it cannot be read)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / tick


_CEILING_DEVICE: DeviceEncryptor | None = None


def _ceiling_init(public_context: bytes, spec: AggregationSpec) -> None:
    global _CEILING_DEVICE
    _CEILING_DEVICE = DeviceEncryptor(public_context, spec)


def _ceiling_task(rows: np.ndarray) -> int:
    """Encrypt ``rows`` inside the worker and return only the byte count (no payload IPC)."""
    assert _CEILING_DEVICE is not None
    return sum(len(_CEILING_DEVICE.encrypt(row, 0)) for row in rows)


def _bare_encrypt(ctx: ts.Context, rows: np.ndarray) -> list[bytes]:
    return [ts.ckks_vector(ctx, row.tolist()).serialize() for row in rows]


def bench_size(name: str, repeats: int, seed: int) -> dict:
    """One device at one item-matrix size: ours vs bare TenSEAL, and TenSEAL's usual params."""
    n_items, dim = SIZES[name]
    n_values = n_items * dim
    params = default_params()
    spec = AggregationSpec(n_values, 1.0, params)
    public = KeyHolder(spec).public_context()
    device = DeviceEncryptor(public, spec)
    bare_ctx = _public_context(params)
    usual_ctx = _public_context(TENSEAL_USUAL)
    x = clipped_updates(np.random.default_rng(seed), 1, n_values)[0]
    rows = pack(x, params.slots)
    usual_rows = pack(x, TENSEAL_USUAL.slots)
    prev_spec = AggregationSpec(n_values, 1.0, PREVIOUS)
    prev_frame = DeviceEncryptor(KeyHolder(prev_spec).public_context(), prev_spec).encrypt(x, 0)

    frame = device.encrypt(x, 0)  # warm-up (and the payload whose size we report)
    bare = _bare_encrypt(bare_ctx, rows)
    usual = _bare_encrypt(usual_ctx, usual_rows)
    ours_t, bare_t, usual_t = [], [], []
    for r in range(repeats):
        pair = [
            (ours_t, lambda r=r: device.encrypt(x, r)),
            (bare_t, lambda: _bare_encrypt(bare_ctx, rows)),
        ]
        for out, fn in pair if r % 2 == 0 else pair[::-1]:
            out.append(_timed(fn))
        usual_t.append(_timed(lambda: _bare_encrypt(usual_ctx, usual_rows)))

    plain_bytes = 4 * n_values
    slots = spec.n_chunks * params.slots
    ours_s, bare_s, usual_s = (statistics.median(t) for t in (ours_t, bare_t, usual_t))
    usual_bytes = sum(len(c) for c in usual)
    return {
        "n_items": n_items,
        "dim": dim,
        "n_values": n_values,
        "ciphertexts": spec.n_chunks,
        "encrypt_s": ours_s,
        "encrypt_min_s": min(ours_t),
        "bare_tenseal_s": bare_s,
        "slots_per_s": slots / ours_s,
        "bare_slots_per_s": slots / bare_s,
        "throughput_ratio": bare_s / ours_s,
        "upload_bytes": len(frame),
        "bare_ciphertext_bytes": sum(len(c) for c in bare),
        "plaintext_float32_bytes": plain_bytes,
        "expansion": len(frame) / plain_bytes,
        "public_context_bytes": len(public),
        "tenseal_usual": {
            "ciphertexts": len(usual),
            "encrypt_s": usual_s,
            "upload_bytes": usual_bytes,
            "expansion": usual_bytes / plain_bytes,
        },
        "previous": {
            "upload_bytes": len(prev_frame),
            "expansion": len(prev_frame) / plain_bytes,
            "upload_ratio_now_vs_previous": len(frame) / len(prev_frame),
        },
    }


def bench_pool(n_devices: int, workers: int, repeats: int, seed: int) -> dict:
    """EncryptionPool with ``workers=1`` vs ``workers`` on the same ML-100K updates."""
    n_values = SIZES["ml100k"][0] * SIZES["ml100k"][1]
    spec = AggregationSpec(n_values, 1.0, default_params())
    public = KeyHolder(spec).public_context()
    updates = clipped_updates(np.random.default_rng(seed), n_devices, n_values)
    ids = np.arange(n_devices)
    times: dict[int, list[float]] = {1: [], workers: []}
    parent_cpu: dict[int, list[float]] = {1: [], workers: []}
    child_cpu: dict[int, list[float | None]] = {1: [], workers: []}
    # The ceiling: ``workers`` independent processes encrypting their share, nothing sent back,
    # timed in the same repeats (the machine's load changes with time).
    ceiling: dict[int, list[float]] = {1: [], workers: []}
    shares = np.array_split(updates, workers)
    mp_ctx = multiprocessing.get_context("spawn")
    pools = {w: EncryptionPool(public, spec, w) for w in times}
    try:
        with ProcessPoolExecutor(workers, mp_ctx, _ceiling_init, (public, spec)) as ex:
            list(ex.map(_ceiling_task, [updates[:1]] * workers))
            for pool in pools.values():
                pool.warm_up()
                list(pool.encrypt_many(updates[: pool.workers], ids[: pool.workers], 0))
            for r in range(repeats):
                order = list(pools) if r % 2 == 0 else list(pools)[::-1]
                for w in order:
                    c0, p0, t0 = _children_cpu_s(), time.process_time(), time.perf_counter()
                    outs = list(pools[w].encrypt_many(updates, ids, r + 1))
                    times[w].append(time.perf_counter() - t0)
                    parent_cpu[w].append(time.process_time() - p0)
                    c1 = _children_cpu_s()
                    child_cpu[w].append(None if c0 is None or c1 is None else c1 - c0)
                    if sum(o.payload is not None for o in outs) != n_devices:
                        raise RuntimeError(f"the pool with {w} workers failed some devices")
                ceiling[1].append(_timed(lambda: ex.submit(_ceiling_task, updates).result()))
                ceiling[workers].append(_timed(lambda: list(ex.map(_ceiling_task, shares))))
    finally:
        for pool in pools.values():
            pool.close()
    t1, tw = statistics.median(times[1]), statistics.median(times[workers])
    out = {
        "devices": n_devices,
        "workers": workers,
        "one_worker_s": t1,
        "workers_s": tw,
        "devices_per_s_one": n_devices / t1,
        "devices_per_s_workers": n_devices / tw,
        "speedup": t1 / tw,
        "best_of_speedup": min(times[1]) / min(times[workers]),
    }
    out["machine_ceiling_speedup"] = statistics.median(ceiling[1]) / statistics.median(
        ceiling[workers]
    )
    out["efficiency_vs_ceiling"] = out["speedup"] / out["machine_ceiling_speedup"]
    # CPU accounting: what the parallel run costs in CPU seconds, whatever else the machine runs.
    ms = 1e3 / n_devices
    cpu_one = statistics.median(parent_cpu[1])
    out["cpu_ms_per_device_one_worker"] = cpu_one * ms
    out["parent_cpu_ms_per_device"] = statistics.median(parent_cpu[workers]) * ms
    if all(c is not None for c in child_cpu[workers]):
        cpu_w = statistics.median(child_cpu[workers])  # type: ignore[type-var]
        total_w = cpu_w + statistics.median(parent_cpu[workers])
        cores = min(workers, os.cpu_count() or 1)
        out["children_cpu_ms_per_device"] = cpu_w * ms
        out["total_cpu_ms_per_device"] = total_w * ms
        # Wall time on an otherwise idle machine is at least total CPU / cores and at least one
        # worker's share: the speed-up these CPU costs allow (derived, not measured).
        out["idle_machine_speedup_bound"] = cpu_one / max(total_w / cores, cpu_w / workers)
    return out


def bench_round(cohort: int, workers: int, seed: int) -> dict:
    """One 1-worker and one ``workers`` CKKS round, and the plaintext round, same cohort."""
    n_values = SIZES["ml100k"][0] * SIZES["ml100k"][1]
    rng = np.random.default_rng(seed)
    updates = clipped_updates(rng, cohort, n_values)
    noise = rng.normal(0.0, 1.0, n_values)  # sigma = 1 x clip, a typical DP-FedAvg multiplier
    ids = np.arange(cohort)
    exact = updates.astype(np.float64).sum(axis=0) + noise

    t0 = time.perf_counter()
    plain = PlaintextAggregation(n_values).aggregate(updates, ids, 0, noise)
    plain_s = time.perf_counter() - t0
    out: dict = {
        "devices": cohort,
        "n_values": n_values,
        "plaintext_s": plain_s,
        "plaintext_upload_bytes": plain.upload_bytes,
    }
    for w in sorted({1, workers}):
        with CkksSecureAggregation(n_values, workers=w) as agg:
            agg.aggregate(updates[:w], ids[:w] + cohort, -1)  # warm-up: starts the workers
            t0 = time.perf_counter()
            res = agg.aggregate(updates, ids, 0, noise)
            wall = time.perf_counter() - t0
        if res.n_accepted != cohort:
            raise RuntimeError(f"only {res.n_accepted} of {cohort} devices were accepted")
        err = float(np.max(np.abs(res.total - exact)))
        rms_err = float(np.sqrt(np.mean((res.total - exact) ** 2)))
        value_rms = float(np.sqrt(np.mean(exact**2)))
        out[f"ckks_{w}w"] = {
            "workers": w,
            "total_s": wall,
            "devices_s": res.timings["devices_s"],
            "aggregator_s": res.timings["aggregator_s"],
            "key_holder_s": res.timings["key_holder_s"],
            "upload_bytes": res.upload_bytes,
            "max_abs_error": err,
            "error_vs_bound": err / precision_bound(agg.spec.params, cohort),
            "flooding_std": res.flooding_std,
            "error_bound": res.error_bound,
            "rms_error": rms_err,
            "rms_error_over_flooding_std": rms_err / res.flooding_std,
            "value_rms": value_rms,
            "flooding_over_values": res.flooding_std / value_rms,
        }
    best = out[f"ckks_{workers}w"]["total_s"]
    out["aggregator_s"] = out["ckks_1w"]["aggregator_s"]
    out["aggregator_ms_per_device"] = 1e3 * out["aggregator_s"] / cohort
    out["ckks_over_plaintext"] = best / plain_s
    out["round_speedup"] = out["ckks_1w"]["total_s"] / best
    return out


def _flip_that_parses(ctx: ts.Context, chunk: bytes) -> bytes:
    """``chunk`` with one bit flipped such that it still loads (most flips do)."""
    for offset in range(200, 20_000, 997):
        bad = bytearray(chunk)
        bad[len(bad) - offset] ^= 0x10
        try:
            ts.ckks_vector_from(ctx, bytes(bad))
        except Exception:
            continue
        return bytes(bad)
    raise RuntimeError("no flipped ciphertext parsed")


def bench_garbage(cohort: int, rounds: int, seed: int) -> dict:
    """Rounds one well-formed-garbage device costs, and what a transport flip costs."""
    n_values = SIZES["ml100k"][0] * SIZES["ml100k"][1]
    rng = np.random.default_rng(seed)
    updates = clipped_updates(rng, cohort, n_values)
    q = 0.5
    bad_id = 0
    with CkksSecureAggregation(n_values) as agg:
        device = DeviceEncryptor(agg.public_context, agg.spec)
        ctx = ts.context_from(agg.public_context)
        refused, released, wasted_s, sampled = 0, 0, 0.0, 0
        for r in range(rounds):
            t0 = time.perf_counter()
            msgs = {i: device.encrypt(u, r) for i, u in enumerate(updates)}
            if rng.random() < q:  # the bad device is sampled into this round
                sampled += 1
                _, chunks = decode_frame(msgs[bad_id])
                chunks[0] = _flip_that_parses(ctx, chunks[0])
                msgs[bad_id] = encode_frame(chunks, r)
            try:
                agg.aggregate_messages(msgs, r)
                released += 1
            except Exception:  # AggregateRejectedError: the whole round is lost
                refused += 1
                wasted_s += time.perf_counter() - t0
        # the same flip made in transport (after the device framed it): caught by the digest
        r = rounds
        msgs = {i: device.encrypt(u, r) for i, u in enumerate(updates)}
        frame = bytearray(msgs[bad_id])
        frame[len(frame) // 2] ^= 0x10
        msgs[bad_id] = bytes(frame)
        res = agg.aggregate_messages(msgs, r)
    return {
        "devices": cohort,
        "rounds": rounds,
        "sampling_rate": q,
        "rounds_with_bad_device": sampled,
        "rounds_refused": refused,
        "rounds_released": released,
        "refused_fraction": refused / rounds,
        "wasted_s": wasted_s,
        "transport_flip_accepted": res.n_accepted,
        "transport_flip_rejected": len(res.rejected),
        "transport_flip_reason": next(iter(res.rejected.values()), ""),
    }


def run(args: argparse.Namespace) -> dict:
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    sizes = {name: bench_size(name, args.repeats, args.seed) for name in args.sizes}
    pool = bench_pool(args.pool_devices, args.workers, args.pool_repeats, args.seed + 1)
    rnd = bench_round(args.cohort, args.workers, args.seed + 2)
    garbage = bench_garbage(args.garbage_cohort, args.garbage_rounds, args.seed + 3)
    ratio = min(s["throughput_ratio"] for s in sizes.values())
    expansion = max(s["expansion"] for s in sizes.values())
    usual = max(s["tenseal_usual"]["expansion"] for s in sizes.values())
    p = default_params()
    return {
        "command": "python benchmarks/ckks.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "tenseal": ts.__version__,
            "load_avg_start": load_start,
            "load_avg_end": os.getloadavg()[0],
        },
        "params": {
            "poly_modulus_degree": p.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(p.coeff_mod_bit_sizes),
            "scale_bits": p.global_scale_bits,
            "slots": p.slots,
            "statistical_security": p.statistical_security,
            "max_decryptions": p.max_decryptions,
            "previous": {
                "poly_modulus_degree": PREVIOUS.poly_modulus_degree,
                "coeff_mod_bit_sizes": list(PREVIOUS.coeff_mod_bit_sizes),
                "scale_bits": PREVIOUS.global_scale_bits,
            },
            "tenseal_usual": {
                "poly_modulus_degree": TENSEAL_USUAL.poly_modulus_degree,
                "coeff_mod_bit_sizes": list(TENSEAL_USUAL.coeff_mod_bit_sizes),
                "scale_bits": TENSEAL_USUAL.global_scale_bits,
            },
        },
        "settings": {
            "quick": args.quick,
            "repeats": args.repeats,
            "pool_devices": args.pool_devices,
            "pool_repeats": args.pool_repeats,
            "cohort": args.cohort,
            "garbage_cohort": args.garbage_cohort,
            "garbage_rounds": args.garbage_rounds,
            "workers": args.workers,
            "seed": args.seed,
        },
        "sizes": sizes,
        "pool": pool,
        "round": rnd,
        "garbage": garbage,
        "targets": {
            "throughput_ratio": _target(ratio, TARGET_RATIO, ">="),
            "expansion": _target(expansion, TARGET_EXPANSION, "<="),
            "tenseal_usual_expansion": {"value": usual},
            "pool_speedup": _target(pool["speedup"], TARGET_SPEEDUP, ">="),
        },
        "elapsed_s": time.perf_counter() - t_start,
    }


def _target(value: float, goal: float, op: str) -> dict:
    met = value >= goal if op == ">=" else value <= goal
    return {"value": value, "target": f"{op} {goal:g}", "met": bool(met)}


def _rows(res: dict) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for name, s in res["sizes"].items():
        u = s["tenseal_usual"]
        rows += [
            (f"{name}: values ({s['n_items']} x {s['dim']})", f"{s['n_values']:,}"),
            (f"{name}: device encrypt, median", f"{1e3 * s['encrypt_s']:.1f} ms"),
            (f"{name}: bare TenSEAL, same slots", f"{1e3 * s['bare_tenseal_s']:.1f} ms"),
            (f"{name}: throughput ours / bare", f"{s['throughput_ratio']:.3f}"),
            (f"{name}: slots/s ours", f"{s['slots_per_s']:,.0f}"),
            (f"{name}: upload per device-round", f"{s['upload_bytes'] / 1e6:.3f} MB"),
            (f"{name}: expansion vs float32", f"{s['expansion']:.2f}x"),
            (f"{name}: TenSEAL usual N=8192 expansion", f"{u['expansion']:.2f}x"),
            (f"{name}: TenSEAL usual encrypt", f"{1e3 * u['encrypt_s']:.1f} ms"),
            (
                f"{name}: upload, unflooded 2^40 params",
                f"{s['previous']['upload_bytes'] / 1e6:.3f} MB ({s['previous']['expansion']:.2f}x)",
            ),
        ]
    p, r = res["pool"], res["round"]
    w = p["workers"]
    rows += [
        (f"pool: {p['devices']} devices, 1 worker", f"{p['one_worker_s']:.2f} s"),
        (f"pool: {p['devices']} devices, {w} workers", f"{p['workers_s']:.2f} s"),
        (f"pool: speed-up {w} vs 1 workers (median)", f"{p['speedup']:.2f}x"),
        (f"pool: speed-up {w} vs 1 workers (best of)", f"{p['best_of_speedup']:.2f}x"),
        (
            f"pool: {w} independent processes (ceiling)",
            f"{p['machine_ceiling_speedup']:.2f}x",
        ),
        ("pool: speed-up / ceiling", f"{p['efficiency_vs_ceiling']:.2f}"),
        ("pool: CPU per device, 1 worker", f"{p['cpu_ms_per_device_one_worker']:.1f} ms"),
        (f"pool: parent CPU per device, {w}w", f"{p['parent_cpu_ms_per_device']:.1f} ms"),
    ]
    if "children_cpu_ms_per_device" in p:
        rows += [
            (f"pool: workers CPU per device, {w}w", f"{p['children_cpu_ms_per_device']:.1f} ms"),
            (f"pool: total CPU per device, {w}w", f"{p['total_cpu_ms_per_device']:.1f} ms"),
            ("pool: idle-machine speed-up bound", f"{p['idle_machine_speedup_bound']:.2f}x"),
        ]
    for key in sorted(k for k in r if k.startswith("ckks_") and k.endswith("w")):
        c = r[key]
        rows += [
            (f"round {r['devices']} dev, {c['workers']}w: total", f"{c['total_s']:.2f} s"),
            (f"round {r['devices']} dev, {c['workers']}w: devices", f"{c['devices_s']:.2f} s"),
            (
                f"round {r['devices']} dev, {c['workers']}w: aggregator",
                f"{c['aggregator_s']:.2f} s",
            ),
            (
                f"round {r['devices']} dev, {c['workers']}w: key holder",
                f"{1e3 * c['key_holder_s']:.1f} ms",
            ),
        ]
    c = r[f"ckks_{w}w"]
    rows += [
        ("round: aggregator per device (1w)", f"{r['aggregator_ms_per_device']:.2f} ms"),
        (f"round: plaintext round, {r['devices']} dev", f"{r['plaintext_s']:.3f} s"),
        (f"round: CKKS ({w}w) / plaintext", f"{r['ckks_over_plaintext']:.0f}x"),
        (f"round: speed-up {w} vs 1 workers", f"{r['round_speedup']:.2f}x"),
        (
            "round: upload CKKS / plaintext",
            f"{c['upload_bytes'] / r['plaintext_upload_bytes']:.2f}x",
        ),
        ("round: max |error| / precision bound", f"{c['error_vs_bound']:.3f}"),
        ("round: flooding std (stated)", f"{c['flooding_std']:.3g}"),
        ("round: RMS error / flooding std", f"{c['rms_error_over_flooding_std']:.3f}"),
        ("round: flooding std / RMS of the sum", f"{c['flooding_over_values']:.3g}"),
    ]
    g = res["garbage"]
    rows += [
        (
            f"garbage device: refused / rounds ({g['devices']} dev, q={g['sampling_rate']})",
            f"{g['rounds_refused']} / {g['rounds']} (sampled in {g['rounds_with_bad_device']})",
        ),
        ("garbage device: work wasted", f"{g['wasted_s']:.2f} s"),
        (
            "transport flip: accepted / rejected",
            f"{g['transport_flip_accepted']} / {g['transport_flip_rejected']}",
        ),
    ]
    for name, t in res["targets"].items():
        if "target" in t:
            rows.append(
                (
                    f"target {name} {t['target']}",
                    f"{t['value']:.3f} {'met' if t['met'] else 'MISSED'}",
                )
            )
    m = res["machine"]
    rows.append(
        (
            "machine",
            f"{m['cpus']} CPUs, load {m['load_avg_start']:.1f} -> {m['load_avg_end']:.1f}, "
            f"TenSEAL {m['tenseal']}, {res['elapsed_s']:.0f} s",
        )
    )
    return rows


def print_human(res: dict) -> None:
    rows = _rows(res)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"{k:<{width}}  {v}")
        return
    table = Table(title="CKKS secure aggregation benchmark")
    table.add_column("measure", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    for k, v in rows:
        table.add_row(k, v)
    Console(width=max(110, Console().width)).print(table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: small cohort, few repeats")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument(
        "--sizes", default="ml100k,ml1m", help=f"comma-separated subset of {','.join(SIZES)}"
    )
    ap.add_argument("--repeats", type=int, help="timed encryptions per size (default 10, quick 3)")
    ap.add_argument("--pool-devices", type=int, help="devices per pool run (default 64, quick 16)")
    ap.add_argument(
        "--pool-repeats", type=int, help="pool runs per worker count (default 5, quick 2)"
    )
    ap.add_argument("--cohort", type=int, help="devices in the round (default 1000, quick 20)")
    ap.add_argument(
        "--garbage-cohort", type=int, help="devices per garbage-device round (default 8, quick 3)"
    )
    ap.add_argument(
        "--garbage-rounds", type=int, help="rounds with the garbage device (default 10, quick 4)"
    )
    ap.add_argument("--workers", type=int, default=2, help="worker processes to compare with 1")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    defaults = {
        "repeats": 10,
        "pool_devices": 64,
        "pool_repeats": 5,
        "cohort": 1000,
        "garbage_cohort": 8,
        "garbage_rounds": 10,
    }
    if args.quick:
        defaults = {
            "repeats": 3,
            "pool_devices": 16,
            "pool_repeats": 2,
            "cohort": 20,
            "garbage_cohort": 3,
            "garbage_rounds": 4,
        }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in args.sizes if s not in SIZES]
    if bad or not args.sizes:
        ap.error(f"--sizes must be a subset of {','.join(SIZES)}. Found {bad or args.sizes}.")
    for key in (
        "repeats",
        "pool_devices",
        "pool_repeats",
        "cohort",
        "garbage_cohort",
        "garbage_rounds",
    ):
        if getattr(args, key) < 1:
            ap.error(f"--{key.replace('_', '-')} must be positive. Found {getattr(args, key)}.")
    if args.workers < 2:
        ap.error(f"--workers must be at least 2 (it is compared with 1). Found {args.workers}.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    if args.json:
        print(json.dumps(res, allow_nan=False))
    else:
        print_human(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

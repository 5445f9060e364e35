"""benchmarks/ckks.py --quick --json runs end to end and reports sane, machine-readable figures.

Timing targets are not asserted (they depend on the machine's load); sizes are deterministic
and are.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ckks.py"


def _positive_finite(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_quick_benchmark_json():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout)  # stdout is exactly one JSON object
    assert {"machine", "params", "settings", "sizes", "pool", "round", "garbage", "targets"} <= set(
        res
    )
    assert set(res["sizes"]) == {"ml100k", "ml1m"}
    assert res["settings"]["quick"] is True

    for name, n_values in (("ml100k", 1682 * 32), ("ml1m", 3706 * 32)):
        s = res["sizes"][name]
        assert s["n_values"] == n_values and s["plaintext_float32_bytes"] == 4 * n_values
        for key in ("encrypt_s", "bare_tenseal_s", "slots_per_s", "throughput_ratio"):
            assert _positive_finite(s[key]), (name, key, s[key])
        # Sizes are deterministic: our frame vs float32, TenSEAL's usual parameters, and the
        # unflooded design's single 56-bit prime (the second data prime costs ~1.66x).
        assert 12.0 < s["expansion"] <= 13.0
        assert s["tenseal_usual"]["expansion"] > 1.5 * s["expansion"]
        assert 7.0 < s["previous"]["expansion"] <= 8.0
        assert 1.5 < s["previous"]["upload_ratio_now_vs_previous"] < 1.8
        # Our frame is the same ciphertexts plus a small header; zstd makes each ciphertext's
        # size vary by some bytes from one encryption to the next, so compare within 0.3 %.
        assert math.isclose(s["upload_bytes"], s["bare_ciphertext_bytes"], rel_tol=3e-3)

    pool, rnd = res["pool"], res["round"]
    for key in ("speedup", "best_of_speedup", "machine_ceiling_speedup", "one_worker_s"):
        assert _positive_finite(pool[key]), (key, pool[key])
    for key in ("ckks_over_plaintext", "round_speedup", "aggregator_s", "plaintext_s"):
        assert _positive_finite(rnd[key]), (key, rnd[key])
    for key in ("ckks_1w", "ckks_2w"):
        assert rnd[key]["error_vs_bound"] <= 1.0
        # the measured error is the stated flooding, and tiny next to the values
        assert 0.8 < rnd[key]["rms_error_over_flooding_std"] < 1.2
        assert rnd[key]["flooding_over_values"] < 1e-7
        per_device = rnd[key]["upload_bytes"] / rnd["devices"]  # zstd: sizes vary by some bytes
        assert math.isclose(per_device, res["sizes"]["ml100k"]["upload_bytes"], rel_tol=3e-3)
    for name in ("throughput_ratio", "expansion", "pool_speedup"):
        t = res["targets"][name]
        assert _positive_finite(t["value"]) and isinstance(t["met"], bool)
    assert res["targets"]["expansion"]["met"]
    g = res["garbage"]
    assert g["rounds_refused"] == g["rounds_with_bad_device"]  # exactly the rounds it is in
    assert g["rounds_refused"] + g["rounds_released"] == g["rounds"]
    assert (g["transport_flip_accepted"], g["transport_flip_rejected"]) == (g["devices"] - 1, 1)
    assert "digest" in g["transport_flip_reason"]

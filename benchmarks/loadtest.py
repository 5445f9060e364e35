"""Bounded load test of the refinement server over loopback.

Usage: ``python benchmarks/loadtest.py [--run RUN] [--devices 32] [--requests 50] [--json]``

Starts ``ppr serve`` as a subprocess on a free port (for ``--run``, or for a temporary run
directory holding an ML-100K-sized synthetic model: 1,682 items, dim 32, when omitted), then

1. each of ``--devices`` threads plays one device: its own CKKS key, its context and encrypted
   user vector uploaded once, then ``--requests`` refinement (score) requests in a row; the
   latency of a request is the HTTP round trip (the server's scoring included, the device's
   decryption not: that is ``benchmarks/refine.py``'s per-request latency);
2. a burst of malformed requests (garbage contexts, oversized bodies, bad JSON, unknown contexts,
   out-of-range blocks, a context with a secret key), each of which must get a 4xx;
3. the server must still answer ``/healthz`` and a valid score request afterwards.

Reports throughput, p50 / p95 / p99 latency, errors, and the malformed burst's status counts.
The server subprocess is always stopped (terminate, then kill) before the script exits.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

from ppr.model.release import ReleasedModel
from ppr.serving.catalog import clustered_catalog
from ppr.serving.refine import DeviceKey, RefineParams


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def oversized(url: str, method: str, path: str, n_bytes: int) -> int:
    """Send ``n_bytes`` over a raw socket and read the status line: the server answers 413 and
    closes before the body is sent, which ``urllib`` reports as a broken pipe."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {n_bytes}\r\n\r\n"
        try:
            sock.sendall(head.encode())
            for _ in range(n_bytes // 65536):
                sock.sendall(b"\x00" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            line = sock.recv(64).split(b"\r\n", 1)[0].split()
        except ConnectionResetError:
            return 0
    return int(line[1]) if len(line) > 1 else 0


def start_server(run: Path, port: int) -> subprocess.Popen:
    ppr = Path(sys.executable).with_name("ppr")
    proc = subprocess.Popen([str(ppr), "serve", "--run", str(run), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ppr serve exited: {proc.stderr.read().decode()[-500:]}")
        try:
            if call(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                return proc
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("ppr serve did not start within 120 s")


def device(url: str, info: dict, n_requests: int, seed: int, out: list, errors: list) -> None:
    """One device: upload context and vector, then ``n_requests`` score requests."""
    rng = np.random.default_rng(seed)
    key = DeviceKey(RefineParams(dim=info["params"]["dim"]))
    status, body = call(url + "/v1/contexts", "POST", key.public_context())
    if status != 200:
        errors.append(f"context {status}")
        return
    cid = json.loads(body)["context_id"]
    frame, _ = key.encrypt_vector(rng.normal(size=info["params"]["dim"]))
    if call(url + f"/v1/contexts/{cid}/vector", "PUT", frame)[0] != 200:
        errors.append("vector")
        return
    blocks = json.dumps({"blocks": list(range(min(info["n_blocks"], 8)))}).encode()
    for _ in range(n_requests):
        t0 = time.perf_counter()
        status, body = call(url + f"/v1/contexts/{cid}/score", "POST", blocks)
        out.append(time.perf_counter() - t0)
        if status != 200 or not body:
            errors.append(f"score {status}")


def malformed_burst(url: str, info: dict) -> Counter:
    """Malformed / oversized / wrong-parameter requests: their status codes."""
    dim = info["params"]["dim"]
    key = DeviceKey(RefineParams(dim=dim))
    secret_ctx = key._ctx.serialize(save_secret_key=True)
    cid = json.loads(call(url + "/v1/contexts", "POST", key.public_context())[1])["context_id"]
    cid2 = json.loads(call(url + "/v1/contexts", "POST", key.public_context())[1])["context_id"]
    call(url + f"/v1/contexts/{cid2}/vector", "PUT", key.encrypt_vector(np.ones(dim))[0])
    other = DeviceKey(RefineParams(dim=info["params"]["dim"] + 1)).encrypt_vector(
        np.ones(info["params"]["dim"] + 1))[0]  # fmt: skip
    cases = [
        ("POST", "/v1/contexts", b"garbage"),
        ("POST", "/v1/contexts", secret_ctx),
        ("PUT", f"/v1/contexts/{cid}/vector", b"not a frame"),
        ("PUT", f"/v1/contexts/{cid}/vector", other),
        ("POST", f"/v1/contexts/{cid}/score", b'{"blocks": [0]}'),  # no vector yet: 409
        ("POST", f"/v1/contexts/{cid}/score", b"{not json"),
        ("POST", f"/v1/contexts/{cid2}/score", b'{"blocks": [99999]}'),
        ("POST", f"/v1/contexts/{cid2}/score", b'{"blocks": [0, 0]}'),
        ("POST", "/v1/contexts/unknown/score", b'{"blocks": [0]}'),
        ("POST", f"/v1/contexts/{cid}/score", b"[" * 100_000),
    ]
    codes: Counter = Counter()
    for _ in range(10):
        for method, path, body in cases:
            codes[call(url + path, method, body)[0]] += 1
        codes[oversized(url, "POST", "/v1/contexts", 1 << 20)] += 1
        codes[oversized(url, "PUT", f"/v1/contexts/{cid}/vector", 64 << 20)] += 1
    return codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--devices", type=int, default=32)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            q = clustered_catalog(np.random.default_rng(0), 1682, dim=32).q
            ReleasedModel(q, np.arange(1682), 3.0, 30.0, "loadtest@1").save(tmp)
            run = Path(tmp)
        port = free_port()
        proc = start_server(run, port)
        try:
            res = load(f"http://127.0.0.1:{port}", args.devices, args.requests)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    res["date"] = time.strftime("%Y-%m-%d")
    print(json.dumps(res, indent=2 if args.json else None))


def load(url: str, n_devices: int, n_requests: int) -> dict:
    info = json.loads(call(url + "/v1/info")[1])
    lat: list[float] = []
    errors: list[str] = []
    threads = [threading.Thread(target=device, args=(url, info, n_requests, s, lat, errors))
               for s in range(n_devices)]  # fmt: skip
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=1200)
    wall = time.perf_counter() - t0
    codes = malformed_burst(url, info)
    health = call(url + "/healthz")[0]
    after: list[float] = []
    device(url, info, 3, 999, after, errors)
    ms = np.array(lat) * 1e3
    return {
        "devices": n_devices, "requests_per_device": n_requests, "requests": len(lat),
        "n_items": info["n_items"], "dim": info["params"]["dim"],
        "blocks_per_request": min(info["n_blocks"], 8),
        "wall_s_incl_uploads": wall, "throughput_rps": len(lat) / wall,
        "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)), "errors": len(errors),
        "error_kinds": dict(Counter(errors)),
        "malformed_status_counts": {str(k): v for k, v in sorted(codes.items())},
        "malformed_all_4xx": all(400 <= k < 500 for k in codes),
        "healthz_after_burst": health, "valid_requests_after_burst_ok": len(after) == 3,
    }  # fmt: skip


if __name__ == "__main__":
    main()

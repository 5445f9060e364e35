"""The refinement server over a real socket (uvicorn in a thread): the hybrid client works over
HTTP, bad requests get a 4xx with a reason, and the server keeps serving."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import uvicorn

from ppr.serving.catalog import clustered_catalog
from ppr.serving.http import RefinementService, create_app
from ppr.serving.hybrid import HttpTransport, HybridRecommender
from ppr.serving.recommender import recommender_for_budget
from ppr.serving.refine import DeviceKey, RefinementScorer


@pytest.fixture(scope="module")
def catalog_q() -> np.ndarray:
    return clustered_catalog(np.random.default_rng(11), 2500, dim=8, n_clusters=32).q


@pytest.fixture(scope="module")
def server(catalog_q: np.ndarray) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    service = RefinementService(RefinementScorer(catalog_q, "http-test@1"), max_sessions=4)
    config = uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="error")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def _call(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_hybrid_over_http(server: str, catalog_q: np.ndarray) -> None:
    local = recommender_for_budget(catalog_q, 3.0, 30.0)
    hybrid = HybridRecommender(local, HttpTransport(server), version="http-test@1")
    items = np.array([3, 17, 40, 99])
    ids, _ = hybrid.recommend(items, k=10)
    exact = catalog_q.astype(np.float64) @ local.recalculate_user(items)
    exact[items] = -np.inf
    assert set(ids.tolist()) == set(np.argsort(-exact)[:10].tolist())
    stats = hybrid.last_stats
    assert stats.bytes_down > 0 and stats.vector_bytes > 0 and stats.context_bytes < 200


def test_bad_requests_get_4xx_and_server_keeps_serving(server: str) -> None:
    status, body = _call(server + "/v1/contexts", "POST", b"not a context")
    assert status == 400 and "deserialize" in json.loads(body)["error"]
    status, body = _call(server + "/v1/contexts", "POST", b"x" * (65 * 1024))
    assert status == 413
    key = DeviceKey(RefinementScorer(np.ones((4, 8), np.float32), "x").params)
    status, body = _call(server + "/v1/contexts", "POST", key._ctx.serialize(save_secret_key=True))
    assert status == 422 and "secret key" in json.loads(body)["error"]
    status, body = _call(server + "/v1/contexts/nope/score", "POST", b'{"blocks": [0]}')
    assert status == 404
    status, body = _call(server + "/v1/contexts", "POST", key.public_context())
    cid = json.loads(body)["context_id"]
    status, body = _call(server + f"/v1/contexts/{cid}/score", "POST", b'{"blocks": [0]}')
    assert status == 409  # no vector yet
    status, _ = _call(server + f"/v1/contexts/{cid}/vector", "PUT", b"\x00" * 100)
    assert status == 400
    status, _ = _call(
        server + f"/v1/contexts/{cid}/vector", "PUT", key.encrypt_vector(np.ones(8))[0]
    )
    assert status == 200
    for bad in (b"{", b'{"blocks": "0"}', b'{"blocks": [0, 0]}', b'{"blocks": [true]}'):
        assert _call(server + f"/v1/contexts/{cid}/score", "POST", bad)[0] == 400
    assert _call(server + f"/v1/contexts/{cid}/score", "POST", b'{"blocks": [7]}')[0] == 422
    status, body = _call(server + f"/v1/contexts/{cid}/score", "POST", b'{"blocks": [0, 1]}')
    assert status == 200 and len(body) > 1000
    status, body = _call(server + f"/v1/contexts/{cid}/score", "POST", b'{"items": [5, 0, 7]}')
    assert status == 200 and len(body) > 1000
    assert _call(server + f"/v1/contexts/{cid}/score", "POST", b'{"items": [-1]}')[0] == 422
    two = b'{"blocks": [0], "items": [1]}'
    assert _call(server + f"/v1/contexts/{cid}/score", "POST", two)[0] == 400
    status, body = _call(server + "/v1/blocks/0")
    assert status == 200 and len(body) == 2048 * 8 * 4
    assert _call(server + "/v1/blocks/99")[0] == 404
    assert _call(server + "/v1/blocks/x")[0] == 400
    status, body = _call(server + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_server_logs_no_payload(server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ppr.serving.http")
    marker = b"PAYLOAD-MARKER-7f3a"
    assert _call(server + "/v1/contexts", "POST", marker * 10)[0] == 400
    assert _call(server + "/v1/contexts/x/score", "POST", b'{"items": [' + marker + b"]}")[0] == 400
    assert "-> 400" in caplog.text  # the refusal is logged: endpoint, status, reason
    assert marker.decode() not in caplog.text

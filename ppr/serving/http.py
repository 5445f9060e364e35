"""The refinement server: an ASGI app (Starlette, served by uvicorn) around
:class:`RefinementService`.

Endpoints (bodies are bytes; answers JSON unless noted):

* ``GET /healthz`` -> ``{"status": "ok", "version"}``;
* ``GET /v1/info`` -> the model version, catalog size, block count, ``q_scale`` and CKKS
  parameters the device must use (:meth:`ppr.serving.refine.RefinementScorer.info`);
* ``POST /v1/contexts`` (a parameter-only CKKS context) -> ``{"context_id"}``;
* ``PUT /v1/contexts/{id}/vector`` (a frame of ``dim`` ciphertexts) -> ``{"ok": true}``;
* ``POST /v1/contexts/{id}/score`` (JSON ``{"blocks": [int, ...]}`` or ``{"items": [int, ...]}``)
  -> a frame of ciphertexts (``application/octet-stream``), one per block / per ``slots`` items;
* ``GET /v1/blocks/{b}`` -> block ``b``'s float32 rows (the public model, streamed by devices).

Invariants: a request that is malformed (400), names an unknown context (404) or one without a
vector (409), is too large (413: bodies are read up to a per-endpoint limit and refused beyond
it, before parsing) or carries other parameters / a secret key (422) gets a 4xx answer with a
one-line reason, and the server keeps serving. The server never holds a secret key (contexts
holding one are refused; it makes none). It logs no payload: only the endpoint, the status and
the reason. Sessions are kept in memory, at most ``max_sessions`` (least recently used evicted).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ppr.model.release import load_model
from ppr.serving.refine import RefineError, RefinementScorer

logger = logging.getLogger("ppr.serving.http")

#: Largest body accepted per kind, in bytes (a context is ~90 bytes; a ciphertext ~66 kB).
MAX_CONTEXT_BYTES = 64 * 1024
MAX_REQUEST_BYTES = 256 * 1024
#: Largest explicit item list, in ciphertexts of ``slots`` items.
MAX_ITEM_CIPHERTEXTS = 8
CT_BYTES_LIMIT = 96 * 1024


class RefinementService:
    """Sessions (context id -> loaded context and encrypted user vector) over a scorer."""

    def __init__(self, scorer: RefinementScorer, max_sessions: int = 256) -> None:
        self.scorer, self.max_sessions = scorer, int(max_sessions)
        self._sessions: OrderedDict[str, list] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def max_vector_bytes(self) -> int:
        return self.scorer.params.dim * CT_BYTES_LIMIT + 4096

    def info(self) -> dict:
        return self.scorer.info()

    def _session(self, cid: str) -> list:
        with self._lock:
            if cid not in self._sessions:
                raise RefineError(f"unknown context id {cid[:40]!r}", 404)
            self._sessions.move_to_end(cid)
            return self._sessions[cid]

    def upload_context(self, raw: bytes) -> str:
        if len(raw) > MAX_CONTEXT_BYTES:
            raise RefineError(f"context of {len(raw)} bytes exceeds {MAX_CONTEXT_BYTES}", 413)
        ctx = self.scorer.load_context(raw)
        cid = secrets.token_hex(16)
        with self._lock:
            self._sessions[cid] = [ctx, None]
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return cid

    def upload_vector(self, cid: str, frame: bytes) -> None:
        if len(frame) > self.max_vector_bytes:
            raise RefineError(f"vector of {len(frame)} bytes exceeds {self.max_vector_bytes}", 413)
        session = self._session(cid)
        session[1] = self.scorer.load_vector(session[0], frame)

    def score(self, cid: str, request: object) -> bytes:
        """Scores of ``{"blocks": [...]}`` or ``{"items": [...]}`` (distinct integers; at most
        ``MAX_ITEM_CIPHERTEXTS`` ciphertexts of items)."""
        if (
            not isinstance(request, dict)
            or len(request) != 1
            or not {"blocks", "items"} & set(request)
        ):
            raise RefineError('score request must be JSON {"blocks": [...]} or {"items": [...]}')
        ((kind, ids),) = request.items()
        if not isinstance(ids, list) or not all(
            isinstance(b, int) and not isinstance(b, bool) for b in ids
        ):
            raise RefineError(f"`{kind}` must be a list of integers")
        if len(set(ids)) != len(ids):
            raise RefineError(f"`{kind}` must be distinct")
        if kind == "items" and len(ids) > MAX_ITEM_CIPHERTEXTS * self.scorer.params.slots:
            raise RefineError(f"at most {MAX_ITEM_CIPHERTEXTS} ciphertexts of items", 413)
        vectors = self._session(cid)[1]
        if vectors is None:
            raise RefineError("no encrypted user vector uploaded for this context", 409)
        if kind == "items":
            return self.scorer.score_items(vectors, np.asarray(ids, np.int64))
        return self.scorer.score(vectors, ids)


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RefineError(f"body of {declared} bytes exceeds {limit}", 413)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RefineError(f"body exceeds {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _error(request: Request, exc: Exception) -> Response:
    status = exc.status if isinstance(exc, RefineError) else 400
    reason = " ".join(str(exc).split())[:300]
    logger.info("%s %s -> %d: %s", request.method, request.url.path, status, reason)
    return JSONResponse({"error": reason}, status_code=status)


def create_app(service: RefinementService) -> Starlette:
    """The ASGI app serving ``service`` (module docstring)."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": service.scorer.version})

    async def info(request: Request) -> Response:
        return JSONResponse(service.info())

    async def contexts(request: Request) -> Response:
        raw = await _body(request, MAX_CONTEXT_BYTES)
        cid = await run_in_threadpool(service.upload_context, raw)
        return JSONResponse({"context_id": cid})

    async def vector(request: Request) -> Response:
        raw = await _body(request, service.max_vector_bytes)
        await run_in_threadpool(service.upload_vector, request.path_params["cid"], raw)
        return JSONResponse({"ok": True})

    async def score(request: Request) -> Response:
        raw = await _body(request, MAX_REQUEST_BYTES)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise RefineError("score request is not JSON") from None
        out = await run_in_threadpool(service.score, request.path_params["cid"], body)
        return Response(out, media_type="application/octet-stream")

    async def block(request: Request) -> Response:
        try:
            b = int(request.path_params["block"])
        except ValueError:
            raise RefineError("block id must be an integer") from None
        out = await run_in_threadpool(service.scorer.block_rows, b)
        return Response(out, media_type="application/octet-stream")

    routes = [
        Route("/healthz", health, methods=["GET"]),
        Route("/v1/info", info, methods=["GET"]),
        Route("/v1/contexts", contexts, methods=["POST"]),
        Route("/v1/contexts/{cid}/vector", vector, methods=["PUT"]),
        Route("/v1/contexts/{cid}/score", score, methods=["POST"]),
        Route("/v1/blocks/{block}", block, methods=["GET"]),
    ]
    handlers = {RefineError: _error, ValueError: _error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.version = service.scorer.version
    return app


def service_for_run(run_dir: str | Path, max_sessions: int = 256) -> RefinementService:
    """The refinement service of a run directory's released model."""
    model = load_model(run_dir)
    return RefinementService(RefinementScorer(model.item_factors, model.version), max_sessions)

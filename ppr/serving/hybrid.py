"""Hybrid serving: local candidates on the device, refined scores from the server on ciphertext.

:class:`HybridRecommender` has the interface of :class:`~ppr.serving.recommender.Recommender`
(``recalculate_user``, ``recommend``, ``explain``). For one request it

1. takes the local top-``n_candidates`` (compressed and/or dimension-truncated matrix, local
   index) and the user vector ``p_u`` *in the server's model space*: the local solve when the
   device stores the server's dimension, else :class:`ServerSpaceUser` (``Q^T Q`` and the full
   rows of the user's own items, kept from one streaming download of the public model);
2. decides what to have scored:

   * ``catalog`` mode (the catalog fits in ``catalog_blocks`` ciphertexts, e.g. ML-100K's 1,682
     items in one): every block of the public partition; the request names nothing
     user-specific;
   * ``items`` mode (larger catalogs): the real candidates hidden among the candidates of
     ``n_personas`` *personas*: fake users the device draws once (a random popular item and its
     local neighbours as a fake history) and keeps, so decoys look like real candidate sets.
     One pseudonym (CKKS key and context id) per user vector: a new vector means a new key, so
     the requests the server can link by context id are all identical (:class:`PersonaRequester`);

3. uploads its parameter-only context and its encrypted user vector (:mod:`ppr.serving.refine`),
   asks for the scores, decrypts, and ranks every scored item by the server's full-precision
   score (local ones only fill up if fewer than ``k`` remain), never returning one of the user's
   items nor of ``exclude``.

What leaves the device (invariant, tested): the context parameters, ciphertexts, and block ids
or a list of item ids in which the real candidates are mixed with the personas' candidates. No
item of the user's history and no event is ever sent (candidates exclude own items).

Every message crosses a :class:`~ppr.crypto.channel.Channel` (in process) or HTTP (body bytes
counted into the same kind of channel), so :attr:`HybridRecommender.last_stats` holds real
sizes: ``bytes_up`` / ``bytes_down`` of the request, ``context_bytes`` (the context upload, once
per pseudonym), ``vector_bytes`` (the encrypted user vector, once per vector) and
``stream_bytes`` (the one-time download of the public model, dimension-truncated devices only).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ppr.crypto.channel import Channel
from ppr.model.release import load_model
from ppr.serving.errors import ServingError
from ppr.serving.index import check_item_ids
from ppr.serving.recommender import Explanation, PriorRecommender, Recommender
from ppr.serving.refine import BlockPartition, DeviceKey, RefineError, RefineParams

KIND_CONTEXT, KIND_VECTOR, KIND_REQUEST, KIND_SCORES = "context", "vector", "request", "scores"
KIND_STREAM = "model_stream"
UP_KINDS = (KIND_CONTEXT, KIND_VECTOR, KIND_REQUEST)
#: Personas drawn per decoy slot: a larger pool lets decoys match the real candidates closely.
POOL_FACTOR = 4


class Transport(Protocol):
    """How the device reaches a refinement service (in process or over HTTP)."""

    channel: Channel

    def info(self) -> dict: ...
    def upload_context(self, raw: bytes) -> str: ...
    def upload_vector(self, cid: str, frame: bytes) -> None: ...
    def score(self, cid: str, request: dict) -> bytes: ...
    def fetch_block(self, block: int) -> bytes: ...


@dataclass(frozen=True)
class RequestStats:
    """One refinement request: bytes that crossed (``bytes_up`` includes any context / vector
    upload of this request), wall-clock latency (encryption, transfer, server, decryption), and
    the one-time uploads / downloads reported apart."""

    bytes_up: int
    bytes_down: int
    latency_s: float
    context_bytes: int
    vector_bytes: int
    stream_bytes: int
    n_scored: int
    new_pseudonym: bool


class InProcessTransport:
    """A :class:`~ppr.serving.http.RefinementService` called directly; messages still cross a
    byte-counting channel (``"device"`` <-> ``"server"``)."""

    def __init__(self, service, channel: Channel | None = None) -> None:
        self.service, self.channel = service, channel or Channel()
        self._n = 0

    def _send(self, kind: str, payload: bytes, up: bool = True) -> bytes:
        self._n += 1
        a, b = ("device", "server") if up else ("server", "device")
        return self.channel.send(a, b, kind, payload, self._n)

    def info(self) -> dict:
        return self.service.info()

    def upload_context(self, raw: bytes) -> str:
        return self.service.upload_context(self._send(KIND_CONTEXT, raw))

    def upload_vector(self, cid: str, frame: bytes) -> None:
        self.service.upload_vector(cid, self._send(KIND_VECTOR, frame))

    def score(self, cid: str, request: dict) -> bytes:
        body = self._send(KIND_REQUEST, json.dumps(request).encode())
        return self._send(KIND_SCORES, self.service.score(cid, json.loads(body)), up=False)

    def fetch_block(self, block: int) -> bytes:
        return self._send(KIND_STREAM, self.service.scorer.block_rows(block), up=False)


class HttpTransport:
    """The refinement service over HTTP, with the standard library's ``urllib`` (the device side
    needs no extra dependency); request and response bodies are counted into ``channel``."""

    def __init__(self, url: str, channel: Channel | None = None, timeout_s: float = 120.0) -> None:
        self.url, self.channel, self.timeout = url.rstrip("/"), channel or Channel(), timeout_s
        self._n = 0

    def _call(
        self, method: str, path: str, body: bytes | None, up: str = "", down: str = ""
    ) -> bytes:
        """One HTTP exchange; the body sent is counted as ``up``, the answer as ``down``."""
        self._n += 1
        if body is not None:
            self.channel.send("device", "server", up, body, self._n)
        req = urllib.request.Request(self.url + path, data=body, method=method)
        req.add_header("Content-Type", "application/octet-stream")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                out = resp.read()
        except urllib.error.HTTPError as exc:
            reason = exc.read().decode("utf-8", "replace")[:300]
            raise RefineError(f"server {exc.code}: {reason}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServingError(f"refinement server {self.url} unreachable ({exc})") from None
        if down:
            self.channel.send("server", "device", down, out, self._n)
        return out

    def info(self) -> dict:
        return json.loads(self._call("GET", "/v1/info", None))

    def upload_context(self, raw: bytes) -> str:
        return json.loads(self._call("POST", "/v1/contexts", raw, KIND_CONTEXT))["context_id"]

    def upload_vector(self, cid: str, frame: bytes) -> None:
        self._call("PUT", f"/v1/contexts/{cid}/vector", frame, KIND_VECTOR)

    def score(self, cid: str, request: dict) -> bytes:
        body = json.dumps(request).encode()
        return self._call("POST", f"/v1/contexts/{cid}/score", body, KIND_REQUEST, KIND_SCORES)

    def fetch_block(self, block: int) -> bytes:
        return self._call("GET", f"/v1/blocks/{int(block)}", None, down=KIND_STREAM)


class ServerSpaceUser:
    """The user vector in the server's model space (dimension ``D``) for a device that stores a
    smaller model: ``p = (G + alpha Q_u^T Q_u + reg I)^-1 (1 + alpha) sum_{j in u} q_j`` with
    ``G = Q^T Q`` and the full rows ``q_j`` of the user's own items, both taken from one
    streaming download of the public model (every device downloads the same bytes, so the
    download reveals nothing; only ``D^2`` + ``D`` per own item floats are kept)."""

    def __init__(self, gram: np.ndarray, rows: dict[int, np.ndarray], alpha: float, reg: float):
        self.gram, self.rows, self.alpha, self.reg = gram, rows, float(alpha), float(reg)

    @classmethod
    def stream(
        cls, transport: Transport, partition: BlockPartition, dim: int, keep: np.ndarray,
        alpha: float, reg: float,
    ) -> ServerSpaceUser:  # fmt: skip
        """Stream every block once; keep ``Q^T Q`` and the rows of ``keep``."""
        gram = np.zeros((dim, dim))
        wanted, rows = set(np.asarray(keep).tolist()), {}
        for b in range(partition.n_blocks):
            block = np.frombuffer(transport.fetch_block(b), "<f4").reshape(-1, dim)
            gram += block.T.astype(np.float64) @ block
            for slot, item in enumerate(partition.items(b).tolist()):
                if item in wanted:
                    rows[item] = block[slot].astype(np.float64)
        return cls(gram, rows, alpha, reg)

    def has(self, own: np.ndarray) -> bool:
        return all(int(j) in self.rows for j in own)

    def solve(self, own: np.ndarray) -> np.ndarray:
        if not self.has(own):
            raise ServingError("full rows of some own items are missing: stream the model again")
        q_u = np.array([self.rows[int(j)] for j in own]).reshape(-1, self.gram.shape[0])
        a = self.gram + self.alpha * (q_u.T @ q_u) + self.reg * np.eye(self.gram.shape[0])
        return np.linalg.solve(a, (1.0 + self.alpha) * q_u.sum(axis=0))


class PersonaRequester:
    """The candidate-privacy policy of ``items`` mode (module docstring, step 2). ``fixed``:
    personas are drawn once per device (``False``: redrawn per request, the naive scheme);
    randomness from the OS unless ``seed`` is given (reproducible experiments only)."""

    def __init__(
        self, local: Recommender, n_candidates: int = 200, n_personas: int = 9,
        fixed: bool = True, seed: int | None = None,
    ) -> None:  # fmt: skip
        self.local, self.n, self.n_personas = local, int(n_candidates), int(n_personas)
        self.fixed = bool(fixed)
        #: ``seed``: reproducible experiment mode (tests, benchmarks); the default is OS entropy.
        self._rng = np.random.default_rng(secrets.randbits(128) if seed is None else seed)
        self._personas: list[np.ndarray] | None = None
        norms = np.empty(local.n_items)
        for s in range(0, local.n_items, 65536):
            rows = local.items.decode(slice(s, s + 65536), dtype=np.float32)
            norms[s : s + rows.shape[0]] = np.linalg.norm(rows, axis=1)
        self._seed_p = norms / norms.sum()
        self._rank = np.argsort(np.argsort(norms, kind="stable"), kind="stable")

    def _persona(self) -> np.ndarray:
        """Fake candidates: the local top-``n`` of a fake history (a random item, drawn by its
        norm, a public proxy of popularity, and its 10..40 nearest local neighbours)."""
        seed = int(self._rng.choice(self.local.n_items, p=self._seed_p))
        size = int(self._rng.integers(10, 41))
        q_seed = self.local.items.decode(np.array([seed]), dtype=np.float64)[0]
        history, _ = self.local.index.query(q_seed, size, exclude=np.array([], np.int64))
        return self.local.recommend(np.unique(np.append(history, seed)), k=self.n)[0]

    def request(self, candidates: np.ndarray, own: np.ndarray | None = None) -> np.ndarray:
        """Sorted ids: the real candidates and, for each, ``n_personas`` decoys from the
        personas' candidates, the unused ones nearest to it in norm rank (a public proxy of
        popularity), so decoys match the real candidates' popularity profile."""
        if self._personas is None or not self.fixed:
            self._personas = [self._persona() for _ in range(POOL_FACTOR * self.n_personas)]
        real = np.asarray(candidates)[: self.n]
        hidden = real if own is None else np.concatenate([real, np.asarray(own).ravel()])
        pool = np.setdiff1d(np.concatenate(self._personas), hidden)  # never an own item
        rank = self._rank[pool]
        order = np.argsort(rank, kind="stable")
        pool, rank = pool[order], rank[order]
        used = np.zeros(pool.size, bool)
        for r in self._rank[real]:
            dist = np.abs(rank - r).astype(np.float64)
            dist[used] = np.inf
            near = np.argsort(dist, kind="stable")[: self.n_personas]
            used[near[np.isfinite(dist[near])]] = True
        return np.unique(np.concatenate([real, pool[used]]))


class HybridRecommender:
    """Local candidates, refined on ciphertext by the server (module docstring)."""

    def __init__(
        self,
        local: Recommender,
        transport: Transport,
        n_candidates: int = 200,
        n_personas: int = 9,
        catalog_blocks: int = 8,
        version: str | None = None,
        bias: np.ndarray | None = None,
    ) -> None:
        """``bias``: the public per-item offset of the released model (its DP popularity prior
        times its blend weight), added by the device to the decrypted scores."""
        info = transport.info()
        if version is not None and info["version"] != version:
            raise ServingError(f"server serves model {info['version']!r}, device has {version!r}")
        if info["n_items"] != local.n_items:
            raise ServingError("server and device models differ in catalog size")
        self.local, self.transport, self.n_candidates = local, transport, int(n_candidates)
        self.params = RefineParams(dim=int(info["params"]["dim"]))
        self.partition = BlockPartition(local.n_items, self.params.slots, info["version"])
        self.q_scale = float(info["q_scale"])
        self.mode = "catalog" if self.partition.n_blocks <= catalog_blocks else "items"
        self.bias = None if bias is None else np.asarray(bias, np.float64).ravel()
        if self.bias is not None and self.bias.shape != (local.n_items,):
            raise ServingError(f"the prior must hold {local.n_items} numbers")
        #: Local ranking of the candidates (and of the personas' decoys): the final ranking's
        #: own terms, ``p . q_hat + bias``, so the prior's items are among them when it has any.
        self.ranker: Recommender | PriorRecommender = (
            local if self.bias is None else PriorRecommender(local, self.bias)
        )
        self.requester = PersonaRequester(self.ranker, n_candidates, n_personas)
        self.server_user: ServerSpaceUser | None = None
        self._key: DeviceKey | None = None
        self._cid: str | None = None
        self._digest: bytes | None = None
        self._p_scale = 1.0
        self.last_stats: RequestStats | None = None
        self.history: list[RequestStats] = []

    @property
    def n_items(self) -> int:
        return self.local.n_items

    def recalculate_user(self, item_ids: np.ndarray) -> np.ndarray:
        """``p_u`` in the server's model space (the local solve when the dimensions agree)."""
        own = check_item_ids(item_ids, self.n_items)
        if self.params.dim == self.local.index.dim:
            return self.local.recalculate_user(own)
        if self.server_user is None or not self.server_user.has(own):
            self.server_user = ServerSpaceUser.stream(
                self.transport, self.partition, self.params.dim, own,
                self.local.alpha, self.local.reg,
            )  # fmt: skip
        return self.server_user.solve(own)

    def explain(self, user_items: np.ndarray, item: int) -> Explanation:
        return self.local.explain(user_items, item)

    def _ensure_session(self, p: np.ndarray) -> bool:
        """A context and the current encrypted vector on the server; in ``items`` mode a new
        vector gets a new key and context (a new pseudonym). Returns whether one was made."""
        digest = hashlib.sha256(np.asarray(p, np.float64).tobytes()).digest()
        new = self._key is None or (self.mode == "items" and digest != self._digest)
        if new:
            self._key = DeviceKey(self.params)
            self._cid = self.transport.upload_context(self._key.public_context())
        if new or digest != self._digest:
            frame, self._p_scale = self._key.encrypt_vector(p)
            self.transport.upload_vector(self._cid, frame)
            self._digest = digest
        return new

    def refined_scores(
        self, p: np.ndarray, candidates: np.ndarray, own: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(item ids, real-unit server scores)`` of every item the request had scored."""
        t0 = time.perf_counter()
        if self.mode == "catalog":
            blocks = list(range(self.partition.n_blocks))
            request: dict = {"blocks": blocks}
            ids = np.concatenate([self.partition.items(b) for b in blocks])
        else:
            ids = self.requester.request(candidates, own)
            request = {"items": ids.tolist()}
        before = self.transport.channel.totals()["by_kind"]
        new = self._ensure_session(p)
        frame = self.transport.score(self._cid, request)
        n_ct = -(-ids.size // self.params.slots)
        scores = self._key.decrypt_scores(frame, n_ct).ravel()[: ids.size]
        self._record(before, time.perf_counter() - t0, ids.size, new)
        real = scores * self._p_scale * self.q_scale
        return ids, real if self.bias is None else real + self.bias[ids]

    def _record(self, before: dict, latency: float, n_scored: int, new: bool) -> None:
        after = self.transport.channel.totals()["by_kind"]
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        self.last_stats = RequestStats(
            bytes_up=sum(delta.get(k, 0) for k in UP_KINDS),
            bytes_down=delta.get(KIND_SCORES, 0),
            latency_s=latency,
            context_bytes=delta.get(KIND_CONTEXT, 0),
            vector_bytes=delta.get(KIND_VECTOR, 0),
            stream_bytes=delta.get(KIND_STREAM, 0),
            n_scored=n_scored,
            new_pseudonym=new,
        )
        self.history.append(self.last_stats)

    def recommend(
        self, user_items: np.ndarray, k: int = 10, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(ids, scores)`` by the server's scores (local ones fill up if fewer than
        ``k`` were scored); never one of ``user_items`` nor of ``exclude``."""
        own = check_item_ids(user_items, self.n_items)
        hidden = own if exclude is None else np.concatenate([own, np.asarray(exclude).ravel()])
        before = self.transport.channel.totals()["by_kind"].get(KIND_STREAM, 0)
        p = self.recalculate_user(own)
        streamed = self.transport.channel.totals()["by_kind"].get(KIND_STREAM, 0) - before
        cand, cand_scores = self.ranker.recommend(
            own, k=max(int(k), self.n_candidates), exclude=exclude
        )
        ids, scores = self.refined_scores(p, cand, own)
        if streamed:
            self.last_stats = self.history[-1] = _with_stream(self.last_stats, streamed)
        keep = ~np.isin(ids, hidden)
        ids, scores = ids[keep], scores[keep]
        order = np.lexsort((ids, -scores))[: int(k)]
        ids, scores = ids[order], scores[order]
        if ids.size < k:  # tiny catalogs only: fill up with local candidates
            extra = ~np.isin(cand, ids)
            ids = np.concatenate([ids, cand[extra][: k - ids.size]])
            scores = np.concatenate([scores, cand_scores[extra][: k - scores.size]])
        return ids, scores


def _with_stream(stats: RequestStats, streamed: int) -> RequestStats:
    return RequestStats(**{**stats.__dict__, "stream_bytes": stats.stream_bytes + streamed})


def in_process_service(run_dir: Path):
    """A :class:`~ppr.serving.http.RefinementService` for the model of ``run_dir``."""
    from ppr.serving.http import service_for_run  # lazily: the device side needs no starlette

    return service_for_run(run_dir)


def connect(
    run_dir: Path,
    local: Recommender,
    server_url: str | None = None,
    n_candidates: int = 200,
    n_personas: int = 9,
) -> HybridRecommender:
    """The hybrid recommender for ``local`` (built from ``run_dir``'s model): an in-process
    server built from ``run_dir`` when ``server_url`` is ``None``, an HTTP client otherwise."""
    model = load_model(run_dir)
    if server_url is None:
        transport: Transport = InProcessTransport(in_process_service(Path(run_dir)))
    else:
        transport = HttpTransport(server_url)
    return HybridRecommender(
        local, transport, n_candidates, n_personas, version=model.version, bias=model.bias()
    )


# --- what the server can infer: the attacker --------------------------------------------------


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half (Mann-Whitney)."""
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if pos.size == 0 or neg.size == 0:
        return 0.5
    both = np.concatenate([pos, neg])
    order = np.argsort(both, kind="stable")
    ranks = np.empty(both.size)
    _, first, counts = np.unique(both[order], return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


@dataclass(frozen=True)
class ObservedRequest:
    """What the server sees of one ``items`` request (pseudonym, item ids; ``device`` only for
    the linked-pseudonyms variant) and, to score the attack, the real candidates."""

    device: int
    pseudonym: int
    items: np.ndarray
    real: np.ndarray


def observe_requests(
    local: Recommender,
    histories: list[list[np.ndarray]],
    make_requester: Callable[[], PersonaRequester],
    rekey: bool = True,
) -> list[ObservedRequest]:
    """Run the request policy of each device over its growing ``histories`` (one item array per
    request); a new pseudonym per user vector when ``rekey`` (as :class:`HybridRecommender`
    does), else one per device (the naive scheme)."""
    out, pseudonym = [], 0
    for device, device_histories in enumerate(histories):
        requester, last = make_requester(), None
        for items in device_histories:
            cand, _ = local.recommend(items, k=requester.n)
            digest = hashlib.sha256(local.recalculate_user(items).tobytes()).digest()
            pseudonym += int(last is None or (rekey and digest != last))
            last = digest
            sent = requester.request(cand, items)
            out.append(ObservedRequest(device, pseudonym, sent, cand))
    return out


def _coherence(q: np.ndarray, items: np.ndarray, top: int = 10) -> np.ndarray:
    """Per requested item: mean cosine similarity to its ``top`` nearest requested items."""
    rows = q[items].astype(np.float64)
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    sims = rows @ rows.T
    np.fill_diagonal(sims, -np.inf)
    return np.sort(sims, axis=1)[:, -top:].mean(axis=1)


def attack_aucs(
    observed: list[ObservedRequest], q: np.ndarray, popularity: np.ndarray
) -> dict[str, float]:
    """The server's attacks on real-vs-decoy items, AUCs over all requested items:

    * ``popularity``: an item scores its popularity (e.g. training counts);
    * ``coherence``: its mean cosine similarity to its 10 nearest requested items (real
      candidates are one user's top-N, so they cluster);
    * ``intersection``: how many requests of its pseudonym name it (linked by the context id);
    * ``intersection_linked``: the same over all requests of the device (pseudonyms linked, e.g.
      by network address: outside this scheme's protection, reported for transparency).

    Ties are broken by popularity in the intersection attacks."""
    pop = np.asarray(popularity, np.float64)
    tie = 0.5 * pop / (pop.max() + 1.0)
    by_pseudonym: dict[int, np.ndarray] = {}
    by_device: dict[int, np.ndarray] = {}
    for r in observed:
        for key, store in ((r.pseudonym, by_pseudonym), (r.device, by_device)):
            store.setdefault(key, np.zeros(pop.size))[r.items] += 1
    scores: dict[str, tuple[list, list]] = {
        k: ([], []) for k in ("popularity", "coherence", "intersection", "intersection_linked")
    }
    for r in observed:
        real = np.isin(r.items, r.real)
        for name, s in (
            ("popularity", pop[r.items]),
            ("coherence", _coherence(q, r.items)),
            ("intersection", by_pseudonym[r.pseudonym][r.items] + tie[r.items]),
            ("intersection_linked", by_device[r.device][r.items] + tie[r.items]),
        ):
            scores[name][0].append(s[real])
            scores[name][1].append(s[~real])
    return {k: auc(np.concatenate(p), np.concatenate(n)) for k, (p, n) in scores.items()}

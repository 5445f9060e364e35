"""Hybrid serving: local candidates re-ranked by server scores computed on ciphertext."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ppr.crypto.channel import Channel
from ppr.model.release import ReleasedModel
from ppr.serving.catalog import Catalog, clustered_catalog, sample_user_items
from ppr.serving.hybrid import (
    KIND_CONTEXT,
    KIND_REQUEST,
    HybridRecommender,
    InProcessTransport,
    PersonaRequester,
    attack_aucs,
    auc,
    connect,
    in_process_service,
    observe_requests,
)
from ppr.serving.recommender import recommender_for_budget
from ppr.serving.refine import BlockPartition


class RecordingChannel(Channel):
    """The byte-counting channel, keeping a copy of every payload (to inspect what left)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, bytes]] = []

    def send(self, sender, receiver, kind, payload, round_idx):
        self.sent.append((sender, kind, bytes(payload)))
        return super().send(sender, receiver, kind, payload, round_idx)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, catalog: Catalog) -> Path:
    model = ReleasedModel(
        item_factors=catalog.q, item_ids=np.arange(catalog.n_items), alpha=3.0, reg=30.0,
        version="hybrid-test@1",
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("hybrid_run")
    model.save(folder)
    return folder


def test_hybrid_recovers_full_precision_ranking(run_dir: Path, catalog, users) -> None:
    local = recommender_for_budget(catalog.q, 3.0, 30.0, device_budget_mb=0.08)
    assert local.items.format == "int8"  # the budget binds
    hybrid = connect(run_dir, local)
    for items in users[:5]:
        ids, scores = hybrid.recommend(items, k=20)
        assert not np.isin(ids, items).any()  # seen items never recommended
        p = local.recalculate_user(items)
        exact = catalog.q.astype(np.float64) @ p
        exact[items] = -np.inf
        want = np.argsort(-exact, kind="stable")[:20]
        assert set(ids.tolist()) == set(want.tolist())
        assert np.allclose(scores, exact[ids], atol=1e-3 * np.abs(exact[want]).max())
    stats = hybrid.history
    assert stats[0].context_bytes > 0 and stats[0].vector_bytes > 0
    assert stats[1].context_bytes == 0 and stats[1].bytes_down > 0 and stats[1].latency_s > 0
    exclude = np.array([int(ids[0])])
    ids2, _ = hybrid.recommend(users[4], k=20, exclude=exclude)
    assert exclude[0] not in ids2 and not np.isin(ids2, users[4]).any()


@pytest.mark.parametrize("catalog_blocks", [8, 1])  # 2 blocks: catalog mode, then items mode
def test_no_item_id_of_the_history_leaves_the_device(run_dir, catalog, users, catalog_blocks):
    """Invariant: the device sends the context parameters (no key), ciphertexts, and a request
    that is ``{"blocks": [...]}`` (ids of the public partition) or ``{"items": [...]}`` holding
    no item of the user's history, the real candidates, and at least as many persona items."""
    local = recommender_for_budget(catalog.q, 3.0, 30.0, device_budget_mb=0.08)
    channel = RecordingChannel()
    transport = InProcessTransport(in_process_service(run_dir), channel)
    hybrid = HybridRecommender(
        local, transport, n_candidates=50, n_personas=4, catalog_blocks=catalog_blocks,
        version="hybrid-test@1",
    )  # fmt: skip
    items = users[0]
    ids, _ = hybrid.recommend(items, k=10)
    up = [(kind, body) for who, kind, body in channel.sent if who == "device"]
    assert {kind for kind, _ in up} == {KIND_CONTEXT, "vector", KIND_REQUEST}
    n_blocks = BlockPartition(catalog.n_items, 2048, "hybrid-test@1").n_blocks
    for kind, body in up:
        if kind == KIND_REQUEST:
            msg = json.loads(body)
            if catalog_blocks == 8:
                assert msg == {"blocks": list(range(n_blocks))}  # nothing user-specific
            else:
                sent = np.array(msg["items"])
                assert set(msg) == {"items"} and not np.isin(sent, items).any()
                real = local.recommend(items, k=50)[0]
                assert np.isin(real, sent).all() and sent.size > real.size
        if kind == KIND_CONTEXT:
            assert not transport.service.scorer.load_context(body).is_private()
    assert not np.isin(ids, items).any()


def test_items_mode_candidates_rank_with_the_prior(run_dir, catalog, users) -> None:
    """With a released prior the device picks its candidates (and its decoys) by the final
    ranking's own terms, ``p . q_hat + bias``: items the prior lifts into the top-k are among
    the candidates, so the hybrid answer is the exact top-k of ``p . q + bias``."""
    local = recommender_for_budget(catalog.q, 3.0, 30.0, device_budget_mb=0.08)
    items = users[0]
    p = local.recalculate_user(items)
    model_part = catalog.q.astype(np.float64) @ p
    bias = np.zeros(catalog.n_items)
    lifted = np.random.default_rng(0).choice(catalog.n_items, 40, replace=False)
    bias[lifted] = 2.0 * np.abs(model_part).max()  # these outrank every item the model prefers
    transport = InProcessTransport(in_process_service(run_dir))
    hybrid = HybridRecommender(
        local, transport, n_candidates=50, n_personas=4, catalog_blocks=1,
        version="hybrid-test@1", bias=bias,
    )  # fmt: skip
    assert hybrid.mode == "items"
    ids, scores = hybrid.recommend(items, k=20)
    exact = model_part + bias
    exact[items] = -np.inf
    want = np.argsort(-exact, kind="stable")[:20]
    assert set(ids.tolist()) == set(want.tolist())
    assert np.allclose(scores, exact[ids], atol=1e-3 * np.abs(model_part).max())


def test_dimension_truncated_device_gets_full_model_ranking(run_dir, catalog, users) -> None:
    """A device storing only an 8-dimensional PCA of the 16-dimensional model: the hybrid solves
    ``p_u`` in the server's space (streamed Q^T Q and own rows) and ranks by the full model."""
    q = catalog.q.astype(np.float64)
    _, vecs = np.linalg.eigh(q.T @ q)
    local = recommender_for_budget((q @ vecs[:, -8:]).astype(np.float32), 3.0, 30.0)
    hybrid = connect(run_dir, local)
    items = users[1]
    ids, _ = hybrid.recommend(items, k=20)
    full = recommender_for_budget(catalog.q, 3.0, 30.0)
    want, _ = full.recommend(items, k=20)
    assert set(ids.tolist()) == set(want.tolist())
    assert hybrid.history[0].stream_bytes == catalog.q.nbytes
    hybrid.recommend(items, k=20)
    assert hybrid.history[1].stream_bytes == 0 and hybrid.history[1].vector_bytes == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_attacker_auc_with_fixed_personas(seed: int) -> None:
    """The server's attacks (popularity, coherence, intersection of a pseudonym's requests) on
    real-vs-decoy items: AUC <= 0.6 with fixed popularity-matched personas and one pseudonym per
    user vector; the intersection attack does bite in the naive scheme (personas redrawn per
    request, one pseudonym). Catalog of 20k items: ``items`` mode (more than 8 blocks)."""
    rng = np.random.default_rng(seed)
    cat = clustered_catalog(rng, 20_000, dim=8, n_clusters=128)
    local = recommender_for_budget(cat.q, 3.0, 30.0)
    users = sample_user_items(rng, cat, 6, items_per_user=(10, 40))
    others = sample_user_items(rng, cat, 1000, items_per_user=(10, 40))
    popularity = np.bincount(np.concatenate(others + users), minlength=cat.n_items)
    histories = [[u[: u.size - 1], u] for u in users]
    make = lambda: PersonaRequester(local, 100, 9, seed=int(rng.integers(2**31)))  # noqa: E731
    aucs = attack_aucs(observe_requests(local, histories, make), cat.q, popularity)
    assert max(aucs["popularity"], aucs["coherence"], aucs["intersection"]) <= 0.6, aucs
    naive = observe_requests(
        local, [[u[: u.size - j] for j in (4, 3, 2, 1, 0)] for u in users[:3]],
        lambda: PersonaRequester(local, 100, 9, fixed=False, seed=seed), rekey=False,
    )  # fmt: skip
    broken = attack_aucs(naive, cat.q, popularity)["intersection"]
    assert broken >= 0.65 and broken >= aucs["intersection"] + 0.05


def test_auc() -> None:
    assert auc(np.array([2.0, 3.0]), np.array([1.0])) == 1.0
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert auc(np.array([0.0]), np.array([1.0, 2.0])) == 0.0

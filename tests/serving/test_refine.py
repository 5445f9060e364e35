"""Refinement on ciphertext: the server never holds a secret key, and decrypted scores equal the
plaintext scores within the stated bound (``ppr.serving.refine.score_error_bound``)."""

from __future__ import annotations

import numpy as np
import pytest

from ppr.serving.refine import (
    BlockPartition,
    DeviceKey,
    RefineError,
    RefinementScorer,
    RefineParams,
    score_error_bound,
)


@pytest.mark.parametrize("dim", [8, 32])
def test_decrypted_scores_within_bound(dim: int) -> None:
    rng = np.random.default_rng(dim)
    q = (rng.normal(size=(3000, dim)) * rng.uniform(0.1, 3.0, size=(3000, 1))).astype(np.float32)
    server = RefinementScorer(q, "v1")
    key = DeviceKey(server.params)
    ctx = server.load_context(key.public_context())
    p = rng.normal(size=dim) * 5.0
    frame, p_scale = key.encrypt_vector(p)
    scores = key.decrypt_scores(server.score(server.load_vector(ctx, frame), [0, 1]), 2)
    for b in (0, 1):
        ids = server.partition.items(b)
        qn = q[ids].astype(np.float64) / server.q_scale
        err = np.abs(scores[b, : ids.size] - qn @ (p / p_scale))
        assert np.all(err <= score_error_bound(server.params, qn))
        assert np.all(scores[b, ids.size :] == pytest.approx(0.0, abs=1e-3))  # padding slots
    # in real units the ranking of the block is the plaintext one (ties aside)
    real = scores[0, : server.partition.items(0).size] * p_scale * server.q_scale
    exact = q[server.partition.items(0)].astype(np.float64) @ p
    assert np.argmax(real) == np.argmax(exact)


def test_server_context_holds_no_secret_key() -> None:
    server = RefinementScorer(np.ones((10, 4), np.float32), "v")
    key = DeviceKey(server.params)
    ctx = server.load_context(key.public_context())
    assert not ctx.is_private() and not ctx.has_secret_key()
    frame, _ = key.encrypt_vector(np.arange(4.0))
    vec = server.load_vector(ctx, frame)
    with pytest.raises(ValueError, match="secret"):
        vec[0].decrypt()
    assert len(key.public_context()) < 200  # parameters only: no key of any kind
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(key)


def test_context_with_secret_key_or_other_parameters_is_refused() -> None:
    server = RefinementScorer(np.ones((10, 4), np.float32), "v")
    key = DeviceKey(server.params)
    with_secret = key._ctx.serialize(save_secret_key=True)
    with pytest.raises(RefineError, match="secret key") as exc:
        server.load_context(with_secret)
    assert exc.value.status == 422
    other = DeviceKey(RefineParams(dim=4, poly_modulus_degree=8192))
    with pytest.raises(RefineError, match="parameters"):
        server.load_context(other.public_context())
    with pytest.raises(RefineError, match="deserialize"):
        server.load_context(b"garbage")


def test_vector_and_blocks_are_checked() -> None:
    server = RefinementScorer(np.ones((10, 4), np.float32), "v")
    key = DeviceKey(server.params)
    ctx = server.load_context(key.public_context())
    wrong_dim = DeviceKey(RefineParams(dim=5)).encrypt_vector(np.ones(5))[0]
    with pytest.raises(RefineError, match="expected 4"):
        server.load_vector(ctx, wrong_dim)
    vec = server.load_vector(ctx, key.encrypt_vector(np.ones(4))[0])
    with pytest.raises(RefineError, match="block ids"):
        server.score(vec, [1])


def test_partition_is_public_and_covers_the_catalog() -> None:
    a, b = BlockPartition(5000, 2048, "m@1"), BlockPartition(5000, 2048, "m@1")
    assert np.array_equal(a.order, b.order) and a.n_blocks == 3
    assert np.array_equal(np.sort(np.concatenate([a.items(i) for i in range(3)])), np.arange(5000))
    assert not np.array_equal(a.order, BlockPartition(5000, 2048, "m@2").order)

"""Clipping: every norm <= C afterwards, updates inside the ball untouched, outer-product form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppr.errors import ConfigError
from ppr.privacy import (
    clip_updates,
    clipped_outer_product_sum,
    outer_product_clip_factors,
)

# float32 rounding: a rescaled vector's recomputed norm can exceed C by a few ulps.
ULP_SLACK = 1 + 8 * np.finfo(np.float32).eps


def _updates(seed: int, n: int = 64, size: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.geomspace(1e-3, 1e3, n)  # both sides of C = 1
    u = rng.normal(size=(n, size)) / np.sqrt(size) * scales[:, None]
    u[0] = 0.0  # the zero update
    return u.astype(np.float32)


@pytest.mark.parametrize("clip_norm", [0.5, 1.0, 7.3])
def test_dense_clip_bounds_norm_and_leaves_small_updates_untouched(clip_norm: float) -> None:
    u = _updates(0)
    clipped, norms = clip_updates(jnp.asarray(u), clip_norm)
    clipped = np.asarray(clipped)
    np.testing.assert_allclose(np.asarray(norms), np.linalg.norm(u, axis=1), rtol=1e-5)
    after = np.linalg.norm(clipped.astype(np.float64), axis=1)
    assert np.all(after <= clip_norm * ULP_SLACK)
    inside = np.asarray(norms) <= clip_norm
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(clipped[inside], u[inside])  # bit for bit
    np.testing.assert_allclose(after[~inside], clip_norm, rtol=1e-5)
    # direction preserved
    cos = np.sum(clipped[~inside] * u[~inside], axis=1) / (
        after[~inside] * np.asarray(norms)[~inside]
    )
    np.testing.assert_allclose(cos, 1.0, rtol=1e-5)


def test_dense_clip_is_jittable_with_traced_clip_norm() -> None:
    u = jnp.asarray(_updates(1))
    eager, _ = clip_updates(u, 2.0)
    jitted, _ = jax.jit(clip_updates)(u, 2.0)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-6, atol=0)


@pytest.mark.parametrize("bad", [-1, 0, -1.0, float("inf")])
def test_clip_norm_validation(bad: float) -> None:
    with pytest.raises(ConfigError, match="`clip_norm` must be positive"):
        clip_updates(jnp.ones((2, 3)), bad)
    with pytest.raises(ConfigError, match="`clip_norm` must be positive"):
        outer_product_clip_factors(jnp.ones(2), jnp.ones(2), bad)


def test_clip_norm_message_is_exact() -> None:
    with pytest.raises(ConfigError) as info:
        clip_updates(jnp.ones((2, 3)), -1)
    assert str(info.value) == "`clip_norm` must be positive. Found -1."


def test_outer_product_clip_matches_dense_clip_of_materialized_updates() -> None:
    rng = np.random.default_rng(2)
    n, n_items, dim, clip_norm = 40, 120, 8, 1.0
    scales = np.geomspace(1e-2, 1e2, n)[:, None]
    e = (rng.normal(size=(n, n_items)) * scales / np.sqrt(n_items)).astype(np.float32)
    p = rng.normal(size=(n, dim)).astype(np.float32)
    total, factors = clipped_outer_product_sum(jnp.asarray(e), jnp.asarray(p), clip_norm)

    dense = np.einsum("ni,nd->nid", e, p).reshape(n, -1)
    clipped_dense, norms = clip_updates(jnp.asarray(dense), clip_norm)
    expected = np.asarray(clipped_dense).reshape(n, n_items, dim).sum(axis=0)
    np.testing.assert_allclose(np.asarray(total), expected, rtol=1e-4, atol=1e-5)

    factors = np.asarray(factors)
    frob = np.linalg.norm(e, axis=1) * np.linalg.norm(p, axis=1)
    np.testing.assert_allclose(frob, np.asarray(norms), rtol=1e-4)  # ‖e pᵀ‖_F = ‖e‖‖p‖
    assert np.all(factors * frob <= clip_norm * ULP_SLACK)
    inside = frob <= clip_norm
    assert inside.any() and (~inside).any()
    assert np.all(factors[inside] == 1.0)
    # every materialized clipped device update is inside the ball
    per_device = factors[:, None] * dense
    assert np.all(np.linalg.norm(per_device.astype(np.float64), axis=1) <= clip_norm * 1.0001)

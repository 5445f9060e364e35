"""Per-device L2 clipping: the sensitivity bound every DP guarantee in ppr rests on.

Invariants (up to float rounding, a relative error of a few ulps of the dtype):

* after clipping, every device's whole update has L2 (Frobenius) norm ``<= clip_norm``;
* an update already inside the ball (norm ``<= clip_norm``) is returned bit-for-bit unchanged
  (its factor is exactly 1.0);
* the factor is ``min(1, C / norm)``; a zero update has factor 1.

Two forms. Dense updates of shape ``(n_devices, size)`` are clipped row by row. The matrix
factorization update of device u after one local step is the outer product ΔQ_u = e_u p_uᵀ, whose
Frobenius norm is ``‖e_u‖·‖p_u‖``; its clip factor needs only those two norms, and the clipped
cohort sum ``Σ_u f_u e_u p_uᵀ = Eᵀ diag(f) P`` is one matrix product (never materialize ΔQ_u).

All functions are pure ``jax.numpy`` and ``jit``-friendly; ``clip_norm`` is validated when it is a
concrete number (it is skipped for a traced value).
"""

from __future__ import annotations

import jax.numpy as jnp

from ppr.privacy._checks import check_positive


def clip_factors(norms: jnp.ndarray, clip_norm: float) -> jnp.ndarray:
    """``min(1, C / norm)`` elementwise; exactly 1.0 where ``norm <= C`` (including norm 0)."""
    check_positive("clip_norm", clip_norm)
    norms = jnp.asarray(norms)
    safe = jnp.where(norms > clip_norm, norms, 1.0)
    return jnp.where(norms > clip_norm, clip_norm / safe, 1.0).astype(norms.dtype)


def clip_updates(updates: jnp.ndarray, clip_norm: float) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Clip each row of ``updates`` (shape ``(n, size)``) to L2 norm ``<= clip_norm``.

    Returns ``(clipped, norms)`` where ``norms`` are the norms *before* clipping (shape ``(n,)``).
    """
    check_positive("clip_norm", clip_norm)
    updates = jnp.asarray(updates)
    if updates.ndim != 2:
        raise ValueError(f"`updates` must have shape (n_devices, size). Found {updates.shape}.")
    norms = jnp.linalg.norm(updates, axis=1)
    factors = clip_factors(norms, clip_norm)
    return updates * factors[:, None], norms


def outer_product_clip_factors(
    e_norms: jnp.ndarray, p_norms: jnp.ndarray, clip_norm: float
) -> jnp.ndarray:
    """Clip factors of the outer-product updates ``e_u p_uᵀ``: ``min(1, C / (‖e_u‖·‖p_u‖))``."""
    check_positive("clip_norm", clip_norm)
    return clip_factors(jnp.asarray(e_norms) * jnp.asarray(p_norms), clip_norm)


def clipped_outer_product_sum(
    errors: jnp.ndarray, user_vectors: jnp.ndarray, clip_norm: float
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Clipped cohort sum ``Σ_u f_u e_u p_uᵀ`` as one matrix product ``Eᵀ diag(f) P``.

    ``errors`` is ``(n, n_items)`` (rows e_u), ``user_vectors`` is ``(n, dim)`` (rows p_u).
    Returns ``(sum of shape (n_items, dim), factors of shape (n,))``.
    """
    errors = jnp.asarray(errors)
    user_vectors = jnp.asarray(user_vectors)
    factors = outer_product_clip_factors(
        jnp.linalg.norm(errors, axis=1), jnp.linalg.norm(user_vectors, axis=1), clip_norm
    )
    return errors.T @ (user_vectors * factors[:, None]), factors

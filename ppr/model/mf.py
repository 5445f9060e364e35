"""Implicit matrix factorization with a weighted loss, split between devices and a server.

Loss of user ``u`` (positives r_ui = 1, everything else 0)::

    L_u(p_u, Q) = sum_i c_ui (r_ui - p_u . q_i)^2 + lambda ||p_u||^2,   c_ui = 1 + alpha r_ui

*User solve* (on the device, closed form; ``p_u`` never leaves it)::

    p_u = (Q^T Q + alpha Q_u^T Q_u + lambda I)^{-1} (1 + alpha) Q_u^T 1

``Q^T Q`` is shared by the round's devices (computed once per round); ``Q_u`` are the rows of the
device's own items, gathered from padded item lists.

*Device update* of the item matrix: with ``p_u`` fixed, ``local_steps`` gradient steps of size
``local_lr`` on ``L_u / 2`` move ``Q`` by ``v_K p_u^T`` where::

    v_0 = 0,  v_{k+1} = v_k + local_lr * c_u * (r_u - Q p_u - ||p_u||^2 v_k)

so the update is *always an outer product* ``Delta Q_u = v_K p_u^T`` (``v_1 = local_lr e_u`` with
the residual ``e_u = c_u * (r_u - Q p_u)``). Hence ``||Delta Q_u||_F = ||v_K|| ||p_u||`` and the
clipped round sum ``sum_u f_u v_u p_u^T = (f * V)^T P`` is one matrix product: no dense per-device
matrix is formed unless a device must really send one (encryption: :func:`dense_updates`).

With one local step (the default) even ``V`` is not formed: ``v_u = -Q p_u + (sparse part on the
device's own items)``, so the round sum is ``-Q (P^T F P) + scatter(...)`` and the norms come from
``p^T (Q^T Q) p`` (see :func:`_bucket_update_one_step`): O(L d + d^2) per device, exact.
Stability of the local iteration needs ``local_lr (1 + alpha) ||p_u||^2 < 2``.

Cohorts are vectorized: devices are grouped into buckets of similar item-list length, each bucket
padded to a fixed shape (``pack_buckets``), and one jitted function handles a bucket; there is no
Python loop over devices. Padding rows have ``valid = 0`` and contribute nothing.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppr.data.split import UserItems
from ppr.privacy.clipping import clip_factors


class MFHyper(NamedTuple):
    """Hyper-parameters of the weighted implicit loss (``alpha`` confidence, ``reg`` = lambda)."""

    alpha: float
    reg: float
    local_steps: int = 1
    local_lr: float = 1.0


class DeviceBatch(NamedTuple):
    """One padded bucket of devices: ``items[b, :]`` the device's item ids (padding -> 0 with
    ``mask`` 0), ``valid[b]`` 1 for a real device, ``users[b]`` its user index (-1 for padding)."""

    items: np.ndarray
    mask: np.ndarray
    valid: np.ndarray
    users: np.ndarray


class BatchUpdate(NamedTuple):
    """Result of a bucket: the clipped sum of updates, per-device norms (before clipping), the
    clip factors, and what is needed to rebuild each device's dense update ``v_u p_u^T``.

    With one local step ``v`` is ``None`` and ``v_u = -Q p_u + sum_{i in u} obs[u, l] e_i``
    (``obs`` on the device's padded item list); with more steps ``v`` is dense ``(B, n_items)``.
    """

    total: jax.Array  # (n_items, dim): sum_u f_u v_u p_u^T over valid devices
    norms: jax.Array  # (B,) ||Delta Q_u||_F before clipping
    factors: jax.Array  # (B,) clip factor min(1, C / norm), 0 for padding
    p: jax.Array  # (B, dim)
    obs: jax.Array  # (B, L) observed-item part of v (one local step); zeros otherwise
    v: jax.Array | None = None  # (B, n_items) dense v (local_steps > 1)


def init_item_factors(key: jax.Array, n_items: int, dim: int, scale: float) -> jax.Array:
    """Gaussian initial item matrix with std ``scale / sqrt(dim)`` so that p.q starts O(scale)."""
    return scale * jax.random.normal(key, (n_items, dim), dtype=jnp.float32) / np.sqrt(dim)


def _bucket_len(n: int) -> int:
    n = max(int(n), 1)
    return 8 if n <= 8 else int(2 ** np.ceil(np.log2(n)))


def _bucket_rows(n: int) -> int:
    """Rows of a bucket: 16, 24, 32, 48, 64, 96, ... (powers of two and their 1.5x midpoints), so
    padding wastes at most a third while a run still compiles few shapes."""
    if n <= 16:
        return 16
    lo = int(2 ** np.floor(np.log2(n)))
    return lo if n == lo else (lo * 3 // 2 if n <= lo * 3 // 2 else 2 * lo)


def pack_buckets(items: UserItems, users: np.ndarray, max_rows: int = 4096) -> list[DeviceBatch]:
    """Group ``users`` by item-count bucket (powers of two) and pad each group to a fixed shape.

    Shapes are powers of two, so a run compiles a handful of kernels whatever the round. Users with
    no items are still returned (their update is zero); order inside a bucket follows ``users``.
    """
    users = np.asarray(users, dtype=np.int64)
    counts = items.counts()[users]
    lens = np.array([_bucket_len(c) for c in counts]) if users.size else np.zeros(0, int)
    out: list[DeviceBatch] = []
    for length in np.unique(lens):
        members = users[lens == length]
        for start in range(0, members.size, max_rows):
            group = members[start : start + max_rows]
            rows = _bucket_rows(group.size)
            it = np.zeros((rows, length), dtype=np.int32)
            mk = np.zeros((rows, length), dtype=np.float32)
            starts, ends = items.indptr[group], items.indptr[group + 1]
            n = (ends - starts).astype(np.int64)
            r = np.repeat(np.arange(group.size), n)
            c = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
            src = np.repeat(starts, n) + c
            it[r, c] = items.indices[src]
            mk[r, c] = 1.0
            valid = np.zeros(rows, dtype=np.float32)
            valid[: group.size] = 1.0
            uu = np.full(rows, -1, dtype=np.int64)
            uu[: group.size] = group
            out.append(DeviceBatch(it, mk, valid, uu))
    return out


@jax.jit
def gram(q: jax.Array) -> jax.Array:
    """``Q^T Q``, shared by every device of a round."""
    return q.T @ q


#: Relative accuracy (A-norm) of the user solve: PCG runs enough iterations to guarantee it.
SOLVE_TOLERANCE = 1e-6


def pcg_iterations(alpha: float, tol: float = SOLVE_TOLERANCE) -> int:
    """Iterations of the preconditioned CG user solve that guarantee ``tol`` (A-norm, relative).

    The device's system is ``A_u = M + alpha Q_u^T Q_u`` with ``M = Q^T Q + lambda I`` shared by
    the round. Since ``Q^T Q`` contains the rows ``Q_u``,
    ``0 <= M^{-1/2} Q_u^T Q_u M^{-1/2} <= I``, so the ``M``-preconditioned system has condition
    number ``kappa <= 1 + alpha`` *whatever the data*, and CG's error contracts by
    ``rho = (sqrt(kappa) - 1) / (sqrt(kappa) + 1)`` per iteration:
    ``||x_K - x*||_A <= 2 rho^K ||x_0 - x*||_A`` (alpha = 3: 14 iterations for 1e-6).
    """
    kappa = 1.0 + max(float(alpha), 0.0)
    if kappa <= 1.0 + 1e-12:
        return 1
    rho = (math.sqrt(kappa) - 1.0) / (math.sqrt(kappa) + 1.0)
    return max(1, math.ceil(math.log(2.0 / tol) / -math.log(rho)))


@jax.jit
def preconditioner(g: jax.Array, reg) -> jax.Array:
    """``M^{-1} = (Q^T Q + lambda I)^{-1}``, shared by every device of a round."""
    eye = jnp.eye(g.shape[0], dtype=g.dtype)
    return jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(g + reg * eye), True), eye)


def _solve(
    q: jax.Array,
    g: jax.Array,
    m_inv: jax.Array,
    items: jax.Array,
    mask: jax.Array,
    alpha,
    reg,
    iters: int,
) -> jax.Array:
    """Closed-form user vectors ``(Q^T Q + alpha Q_u^T Q_u + lambda I)^{-1} (1 + alpha) Q_u^T 1``,
    solved by CG preconditioned with the shared ``M^{-1}`` (:func:`preconditioner`: one ``d x d``
    Cholesky per round instead of one per device; see :func:`pcg_iterations` for the bound)."""
    d = q.shape[1]
    qg = q[items] * mask[..., None]  # (B, L, d)
    eye = jnp.eye(d, dtype=q.dtype)
    a = g[None] + alpha * jnp.einsum("bld,ble->bde", qg, qg) + reg * eye[None]
    b = (1.0 + alpha) * qg.sum(axis=1)
    tiny = jnp.asarray(1e-30, q.dtype)

    def body(_, carry):
        x, r, z, p, rz = carry
        ap = jnp.einsum("bij,bj->bi", a, p)
        step = rz / jnp.maximum(jnp.sum(p * ap, axis=1), tiny)
        x = x + step[:, None] * p
        r = r - step[:, None] * ap
        z = r @ m_inv
        rz_new = jnp.sum(r * z, axis=1)
        p = z + (rz_new / jnp.maximum(rz, tiny))[:, None] * p
        return x, r, z, p, rz_new

    x0 = b @ m_inv  # exact when the device holds no item
    r0 = b - jnp.einsum("bij,bj->bi", a, x0)
    z0 = r0 @ m_inv
    carry = (x0, r0, z0, z0, jnp.sum(r0 * z0, axis=1))
    for i in range(iters):  # unrolled: XLA fuses the small batched ops (a while loop does not)
        carry = body(i, carry)
    return carry[0]


@partial(jax.jit, static_argnames=("iters",))
def _solve_bucket(q, g, m_inv, items, mask, alpha, reg, iters):
    return _solve(q, g, m_inv, items, mask, alpha, reg, iters)


def solve_user_factors(
    q: jax.Array, items: UserItems, users: np.ndarray, hyper: MFHyper
) -> np.ndarray:
    """Closed-form user vectors of ``users`` (rows in the order of ``users``), as each device
    would compute them from the global ``q`` and its own items."""
    users = np.asarray(users, dtype=np.int64)
    g = gram(q)
    m_inv = preconditioner(g, hyper.reg)
    out = np.zeros((users.size, q.shape[1]), dtype=np.float32)
    pos = {int(u): i for i, u in enumerate(users)}
    for batch in pack_buckets(items, users):
        p = np.asarray(
            _solve_bucket(
                q,
                g,
                m_inv,
                batch.items,
                batch.mask,
                hyper.alpha,
                hyper.reg,
                pcg_iterations(hyper.alpha),
            )
        )
        n = int(batch.valid.sum())
        idx = np.fromiter((pos[int(u)] for u in batch.users[:n]), dtype=np.int64, count=n)
        out[idx] = p[:n]
    return out


@partial(jax.jit, static_argnames=("iters",))
def _bucket_update_one_step(q, g, m_inv, items, mask, valid, alpha, reg, clip_norm, iters):
    """One local step, without any ``(B, n_items)`` array: ``v_u = c_u * (r_u - Q p_u)`` splits into
    the dense part ``-Q p_u`` and a part on the device's own items, ``(1 + alpha)(1 - q_i.p_u) +
    q_i.p_u`` (the residual weighted by ``c = 1 + alpha``, minus the dense part already counted).
    Hence ``||v_u||^2 = p^T G p + sum_{i in u} (obs_i^2 - 2 obs_i q_i.p)`` and the round sum is
    ``-Q (P^T F P) + scatter_i(obs_ui f_u p_u)``: cost O(L d + d^2) per device, exact."""
    p = _solve(q, g, m_inv, items, mask, alpha, reg, iters)  # (B, d)
    qg = q[items]  # (B, L, d)
    pred = jnp.einsum("bld,bd->bl", qg, p)  # q_i . p_u on own items
    obs = ((1.0 + alpha) * (1.0 - pred) + pred) * mask  # v_u[i] - (-q_i.p_u)
    dense_sq = jnp.einsum("bd,de,be->b", p, g, p)  # ||Q p_u||^2
    v_sq = dense_sq + jnp.sum(obs * obs - 2.0 * obs * pred, axis=1)
    norms = jnp.sqrt(jnp.maximum(v_sq, 0.0)) * jnp.linalg.norm(p, axis=1)
    factors = clip_factors(norms, clip_norm) * valid
    fp = p * factors[:, None]
    total = -(q @ (p.T @ fp))
    contrib = obs[..., None] * fp[:, None, :]  # (B, L, d)
    total = total.at[items.reshape(-1)].add(contrib.reshape(-1, p.shape[1]))
    return BatchUpdate(total, norms, factors, p, obs, None)


@partial(jax.jit, static_argnames=("local_steps", "iters"))
def _bucket_update(
    q, g, m_inv, items, mask, valid, alpha, reg, clip_norm, local_lr, local_steps, iters
):
    n_items = q.shape[0]
    p = _solve(q, g, m_inv, items, mask, alpha, reg, iters)  # (B, d)
    rows = jnp.broadcast_to(jnp.arange(items.shape[0])[:, None], items.shape)
    r = jnp.zeros((items.shape[0], n_items), q.dtype).at[rows, items].max(mask)
    c = 1.0 + alpha * r
    base = r - p @ q.T  # r_u - Q p_u
    pp = jnp.sum(p * p, axis=1, keepdims=True)

    def step(v, _):
        return v + local_lr * c * (base - pp * v), None

    v, _ = jax.lax.scan(step, jnp.zeros_like(base), None, length=local_steps)
    norms = jnp.linalg.norm(v, axis=1) * jnp.sqrt(pp[:, 0])
    factors = clip_factors(norms, clip_norm) * valid
    total = (v * factors[:, None]).T @ p
    return BatchUpdate(total, norms, factors, p, jnp.zeros_like(mask), v)


def batch_update(
    q: jax.Array,
    g: jax.Array,
    batch: DeviceBatch,
    hyper: MFHyper,
    clip_norm: float = float("inf"),
    valid: np.ndarray | None = None,
    m_inv: jax.Array | None = None,
) -> BatchUpdate:
    """Updates of one bucket of devices, each clipped to Frobenius norm ``clip_norm`` (inf: none).

    ``valid`` overrides ``batch.valid`` (e.g. to drop devices that dropped out this round);
    ``m_inv`` is the round's :func:`preconditioner` (computed here when not given).
    With ``local_steps == 1`` the update is the residual direction ``v = e_u`` (``local_lr`` only
    matters with more steps; the server's learning rate sets the step), computed without dense
    ``(B, n_items)`` arrays."""
    valid = batch.valid if valid is None else valid
    m_inv = preconditioner(g, hyper.reg) if m_inv is None else m_inv
    iters = pcg_iterations(hyper.alpha)
    if hyper.local_steps == 1:
        return _bucket_update_one_step(
            q, g, m_inv, batch.items, batch.mask, valid, hyper.alpha, hyper.reg, clip_norm, iters
        )
    return _bucket_update(
        q,
        g,
        m_inv,
        batch.items,
        batch.mask,
        valid,
        hyper.alpha,
        hyper.reg,
        clip_norm,
        hyper.local_lr,
        hyper.local_steps,
        iters,
    )


def dense_updates(upd: BatchUpdate, q: jax.Array, items: jax.Array) -> jax.Array:
    """Each device's clipped update as a flat vector ``f_u vec(v_u p_u^T)``: shape (B, n_items*dim).

    Only needed when devices must send a dense update (CKKS, distributed noise)."""
    if upd.v is not None:
        return _dense(upd.v, upd.factors, upd.p)
    return _dense_one_step(q, items, upd.obs, upd.factors, upd.p)


@jax.jit
def _dense(v, factors, p):
    dense = (v * factors[:, None])[:, :, None] * p[:, None, :]
    return dense.reshape(dense.shape[0], -1)


@jax.jit
def _dense_one_step(q, items, obs, factors, p):
    b = items.shape[0]
    v = -(p @ q.T)
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], items.shape)
    v = v.at[rows, items].add(obs)
    return _dense(v, factors, p)

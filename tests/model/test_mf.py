"""ppr.model.mf against dense numpy references (float64), on small random problems.

Tolerances: the JAX kernels run in float32; results are compared with ``rtol=1e-4`` and an
absolute floor ``1e-5`` times the scale of the compared quantity.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from data_testutils import random_user_items

from ppr.data.split import UserItems
from ppr.model.mf import (
    MFHyper,
    _bucket_update,
    _bucket_update_one_step,
    batch_update,
    dense_updates,
    gram,
    init_item_factors,
    pack_buckets,
    pcg_iterations,
    preconditioner,
    solve_user_factors,
)

N_USERS, N_ITEMS, DIM = 40, 60, 5
HYPER = MFHyper(alpha=3.0, reg=2.0)


def close(a, b, rtol: float = 1e-4) -> None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.max(np.abs(b))), 1e-12)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-5 * scale)


@pytest.fixture(scope="module")
def items() -> UserItems:
    rng = np.random.default_rng(0)
    # lengths 0..40 so several buckets (8, 16, 32, 64) and an empty user appear
    lens = rng.integers(0, 41, N_USERS)
    lens[0] = 0
    return random_user_items(rng, lens, N_ITEMS)


@pytest.fixture(scope="module")
def q() -> jax.Array:
    return init_item_factors(jax.random.PRNGKey(1), N_ITEMS, DIM, 1.0)


def ref_p(q: np.ndarray, row: np.ndarray, hyper: MFHyper) -> np.ndarray:
    q = np.asarray(q, np.float64)
    qu = q[row]
    a = q.T @ q + hyper.alpha * qu.T @ qu + hyper.reg * np.eye(q.shape[1])
    return np.linalg.solve(a, (1 + hyper.alpha) * qu.T @ np.ones(row.size))


def ref_v(
    q: np.ndarray, row: np.ndarray, p: np.ndarray, hyper: MFHyper, steps: int = 1, lr: float = 1.0
) -> np.ndarray:
    q = np.asarray(q, np.float64)
    r = np.zeros(q.shape[0])
    r[row] = 1.0
    c = 1.0 + hyper.alpha * r
    v = np.zeros_like(r)
    for _ in range(steps):
        v = v + lr * c * (r - q @ p - (p @ p) * v)
    return v


def test_solve_user_factors_closed_form(items, q):
    users = np.arange(N_USERS)[::-1].copy()  # output follows the order of `users`
    p = solve_user_factors(q, items, users, HYPER)
    ref = np.stack([ref_p(q, items.row(int(u)), HYPER) for u in users])
    close(p, ref)
    assert np.all(p[users == 0] == 0)  # no items -> zero right-hand side


def test_pack_buckets_each_user_once_padding_invalid(items):
    users = np.array([3, 1, 0, 7, 12, 25, 39, 5, 8])
    batches = pack_buckets(items, users)
    seen = []
    for b in batches:
        n = int(b.valid.sum())
        assert np.all(b.valid[:n] == 1) and np.all(b.valid[n:] == 0)
        assert np.all(b.users[n:] == -1) and np.all(b.mask[n:] == 0)
        for r in range(n):
            u = int(b.users[r])
            seen.append(u)
            got = b.items[r][b.mask[r] > 0]
            np.testing.assert_array_equal(np.sort(got), items.row(u))
            assert b.items.shape[1] >= items.row(u).size
    assert sorted(seen) == sorted(users.tolist())


@pytest.mark.parametrize("clip", [np.inf, 0.5])
def test_cohort_update_one_step_matches_dense_reference(items, q, clip):
    users = np.arange(N_USERS)
    g = gram(q)
    total = np.zeros((N_ITEMS, DIM))
    norms_all = []
    for b in pack_buckets(items, users):
        upd = batch_update(q, g, b, HYPER, jnp.float32(clip))
        assert upd.v is None
        n = int(b.valid.sum())
        dense = np.asarray(dense_updates(upd, q, b.items))
        ref_dense, ref_norms, ref_f = [], [], []
        for r in range(n):
            row = items.row(int(b.users[r]))
            p = ref_p(q, row, HYPER)
            v = ref_v(q, row, p, HYPER)
            delta = np.outer(v, p)
            norm = np.linalg.norm(delta)
            f = min(1.0, clip / max(norm, 1e-12))
            ref_dense.append((f * delta).ravel())
            ref_norms.append(norm)
            ref_f.append(f)
            total += f * delta
        close(np.asarray(upd.norms)[:n], ref_norms)
        close(np.asarray(upd.factors)[:n], ref_f)
        assert np.all(np.asarray(upd.factors)[n:] == 0)  # padding contributes nothing
        close(dense[:n], np.stack(ref_dense))
        assert np.all(dense[n:] == 0)
        # clipped dense updates have norm <= C (float32 slack 1e-5)
        assert np.all(np.linalg.norm(dense[:n], axis=1) <= clip * (1 + 1e-5))
        norms_all.extend(ref_norms)
        # the structured total of the bucket equals the sum of its dense rows
        close(np.asarray(upd.total).ravel(), dense[:n].sum(axis=0))
    if np.isfinite(clip):
        assert max(norms_all) > clip  # the test really exercised clipping
    g_total = sum(
        np.asarray(batch_update(q, g, b, HYPER, jnp.float32(clip)).total, np.float64)
        for b in pack_buckets(items, users)
    )
    close(g_total, total)


def test_valid_override_drops_devices(items, q):
    g = gram(q)
    b = pack_buckets(items, np.array([2, 3, 4]))[0]
    valid = b.valid.copy()
    valid[0] = 0.0
    upd = batch_update(q, g, b, HYPER, jnp.float32(1.0), valid=valid)
    assert float(upd.factors[0]) == 0.0
    dense = np.asarray(dense_updates(upd, q, b.items))
    close(np.asarray(upd.total).ravel(), dense[1:].sum(axis=0))


def test_local_steps_paths_consistent(items, q):
    g = gram(q)
    clip = jnp.float32(0.7)
    for b in pack_buckets(items, np.arange(N_USERS)):
        it = pcg_iterations(HYPER.alpha)
        m_inv = preconditioner(g, HYPER.reg)
        one = _bucket_update_one_step(
            q, g, m_inv, b.items, b.mask, b.valid, HYPER.alpha, HYPER.reg, clip, it
        )
        dense1 = _bucket_update(
            q, g, m_inv, b.items, b.mask, b.valid, HYPER.alpha, HYPER.reg, clip, 1.0, 1, it
        )
        close(dense1.total, one.total)
        close(dense1.norms, one.norms)
        close(dense_updates(dense1, q, b.items), dense_updates(one, q, b.items))


def test_local_steps_three_matches_reference(items, q):
    hyper = MFHyper(alpha=1.0, reg=2.0, local_steps=3, local_lr=0.05)
    g = gram(q)
    b = pack_buckets(items, np.arange(1, 9))[0]
    upd = batch_update(q, g, b, hyper, jnp.float32(np.inf))
    assert upd.v is not None
    n = int(b.valid.sum())
    dense = np.asarray(dense_updates(upd, q, b.items))[:n]
    for r in range(n):
        row = items.row(int(b.users[r]))
        p = ref_p(q, row, hyper)
        v = ref_v(q, row, p, hyper, steps=3, lr=0.05)
        close(dense[r], np.outer(v, p).ravel())


def test_pcg_iterations_bound():
    """The documented iteration counts: kappa <= 1 + alpha, rho = (sqrt k - 1)/(sqrt k + 1)."""
    assert pcg_iterations(0.0) == 1
    assert pcg_iterations(3.0) == 14  # rho = 1/3: 3^-14 * 2 < 1e-6 <= 3^-13 * 2
    assert pcg_iterations(10.0) > pcg_iterations(3.0)


@pytest.mark.parametrize("alpha", [0.5, 3.0, 40.0])
def test_pcg_solve_matches_cholesky_on_ill_conditioned_items(alpha):
    """Heavy users and large item norms: the PCG solve stays within its bound of the exact one."""
    rng = np.random.default_rng(3)
    n_items, d = 300, 16
    qn = (rng.normal(size=(n_items, d)) * rng.lognormal(0, 1.5, size=(n_items, 1))).astype(
        np.float32
    )
    heavy = UserItems.from_pairs(np.zeros(250, np.int64), np.arange(250), 1, n_items)
    hyper = MFHyper(alpha=alpha, reg=0.5)
    p = solve_user_factors(jnp.asarray(qn), heavy, np.array([0]), hyper)[0]
    q64 = qn.astype(np.float64)
    qu = q64[:250]
    a = q64.T @ q64 + alpha * qu.T @ qu + 0.5 * np.eye(d)
    exact = np.linalg.solve(a, (1 + alpha) * qu.sum(axis=0))
    err = np.sqrt((p - exact) @ a @ (p - exact)) / np.sqrt(exact @ a @ exact)
    assert err < 1e-4, err  # 1e-6 in exact arithmetic; float32 rounding dominates

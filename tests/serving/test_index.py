"""Indexes: exact equals brute force, Annoy recall, seen items never returned, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from ppr.serving.budget import build_for_budget, plan_device
from ppr.serving.codecs import FORMATS, encode
from ppr.serving.errors import BudgetError, ServingError
from ppr.serving.index import AnnoyIndex, ExactIndex, LocalIndex
from ppr.serving.recommender import ExactRecommender


def _brute(q_hat: np.ndarray, p: np.ndarray, k: int, exclude: np.ndarray) -> np.ndarray:
    s = q_hat.astype(np.float64) @ p.astype(np.float64)
    s[exclude] = -np.inf
    return np.sort(s)[::-1][:k]


def _vectors(catalog, users) -> list[np.ndarray]:
    rec = ExactRecommender(ExactIndex.build(catalog.q), alpha=3.0, reg=30.0)
    return [rec.recalculate_user(u) for u in users]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("prune", [False, True])
def test_exact_equals_brute_force(catalog, users, fmt: str, prune: bool) -> None:
    index = ExactIndex.build(catalog.q, fmt, prune=prune)
    q_hat = index.items.decode(dtype=np.float64)
    for p, own in zip(_vectors(catalog, users), users, strict=True):
        ids, scores = index.query(p, 20, exclude=own)
        want = _brute(q_hat, p, 20, own)
        np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(q_hat[ids] @ p, want, rtol=1e-5, atol=1e-6)
        assert np.all(np.diff(scores) <= 0)


def test_annoy_recall_on_structured_catalog(catalog, users) -> None:
    """On ALS-like factors Annoy's MIPS needs search_k of a few times the catalog (3000 items).
    See benchmarks/serving.py."""
    exact = ExactIndex.build(catalog.q)
    ann = AnnoyIndex.build(catalog.q, n_trees=5, search_k=8000, seed=1, n_jobs=1)
    hits = []
    for p, own in zip(_vectors(catalog, users), users, strict=True):
        want = set(exact.query(p, 20, own)[0].tolist())
        got = set(ann.query(p, 20, own)[0].tolist())
        hits.append(len(want & got) / 20)
    assert np.mean(hits) >= 0.95


def test_seen_items_never_returned(catalog) -> None:
    """Property over random users (own lists up to most of the catalog) and k."""
    rng = np.random.default_rng(3)
    small = catalog.q[:400]
    indexes = [
        ExactIndex.build(small, "int8"),
        ExactIndex.build(small, "float16", prune=True),
        AnnoyIndex.build(small, n_trees=4, search_k=50, seed=2, n_jobs=1),
    ]
    for _ in range(60):
        own = rng.choice(400, size=int(rng.integers(0, 399)), replace=False)
        p = rng.normal(size=small.shape[1])
        k = int(rng.integers(1, 60))
        for index in indexes:
            ids, scores = index.query(p, k, exclude=own)
            assert ids.size == min(k, 400 - own.size) == np.unique(ids).size
            assert not np.isin(ids, own).any()
            assert np.all(np.isfinite(scores))


@pytest.mark.parametrize("kind", ["exact", "exact-pruned", "annoy"])
def test_save_load_mmap_identical(tmp_path, catalog, users, kind: str) -> None:
    if kind == "annoy":
        index: LocalIndex = AnnoyIndex.build(catalog.q, "int8", 5, 500, seed=3, n_jobs=1)
    else:
        index = ExactIndex.build(catalog.q, "float16", prune=kind == "exact-pruned")
    index.save(tmp_path / "ix")
    loaded = LocalIndex.load(tmp_path / "ix", mmap=True)
    assert type(loaded) is type(index) and loaded.nbytes == index.nbytes
    assert isinstance(loaded.items.codes, np.memmap)
    for p, own in zip(_vectors(catalog, users), users, strict=True):
        a, b = index.query(p, 15, own), loaded.query(p, 15, own)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_budget_picks_and_refuses() -> None:
    q = np.random.default_rng(4).normal(size=(20_000, 32)).astype(np.float32)
    assert plan_device(20_000, 32, 64).format == "float32"
    plan = plan_device(1_000_000, 32, 64)  # 128 MB float32 does not fit, float16 + order neither
    assert (plan.format, plan.index) == ("float16", "exact")
    assert plan_device(1_500_000, 32, 64).format == "int8"
    index = build_for_budget(q, device_budget_mb=1.5)
    assert index.format == "float16" and index.nbytes <= 1.5 * 2**20
    small = build_for_budget(q[:2000], device_budget_mb=64, annoy_from_items=0)
    assert isinstance(small, AnnoyIndex) and small.format == "float32"
    assert small.nbytes <= 64 * 2**20
    with pytest.raises(BudgetError, match=r"device_budget_mb=0\.1 MB"):
        build_for_budget(q, device_budget_mb=0.1)


def test_bad_queries_are_refused(catalog) -> None:
    index = ExactIndex.build(encode(catalog.q[:50], "int8"))
    with pytest.raises(ServingError, match="outside the catalog"):
        index.query(np.ones(catalog.q.shape[1]), 5, exclude=[50])
    with pytest.raises(ServingError, match="user vector"):
        index.query(np.ones(3), 5)

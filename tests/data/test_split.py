"""Invariants of ppr.data.split.make_split for the three protocols, on small synthetic data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ppr.config import SplitConfig, SyntheticConfig
from ppr.data.split import Split, make_split, positives
from ppr.data.synthetic import generate_synthetic

SYN = SyntheticConfig(n_users=150, n_items=120, n_interactions=4000)
PROTOCOLS = ("random", "leave_last", "held_out_users")


@pytest.fixture(scope="module")
def inter():
    return generate_synthetic(SYN, 1)


def _cfg(protocol: str, **kw) -> SplitConfig:
    return dataclasses.replace(SplitConfig(protocol=protocol), **kw)


def _sets(split: Split, u: int) -> tuple[set, set, set]:
    return set(split.train.row(u)), set(split.validation.row(u)), set(split.test.row(u))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_disjoint_union_and_min_train(inter, protocol):
    cfg = _cfg(protocol, min_train=2, held_out_fraction=0.2)
    split = make_split(inter, cfg, seed=0)
    pos = positives(inter, cfg.positive_threshold)
    assert split.test.nnz > 0
    for u in range(inter.n_users):
        tr, va, te = _sets(split, u)
        assert not (tr & va) and not (tr & te) and not (va & te), u
        truth = set(pos.items[pos.users == u].tolist())
        assert tr | va | te == truth, u  # nothing lost, nothing invented
        if te or va:
            assert len(tr) >= cfg.min_train, u
    # every CSR row is sorted (documented) and the split sizes add up
    assert split.train.nnz + split.validation.nnz + split.test.nnz == pos.users.size


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_deterministic_per_seed(inter, protocol):
    cfg = _cfg(protocol)
    a, b, c = (make_split(inter, cfg, s) for s in (3, 3, 4))
    for part in ("train", "validation", "test"):
        np.testing.assert_array_equal(getattr(a, part).indices, getattr(b, part).indices)
        np.testing.assert_array_equal(getattr(a, part).indptr, getattr(b, part).indptr)
    np.testing.assert_array_equal(a.train_users, b.train_users)
    differs = any(
        not np.array_equal(getattr(a, p).indices, getattr(c, p).indices)
        or not np.array_equal(getattr(a, p).indptr, getattr(c, p).indptr)
        for p in ("train", "validation", "test")
    )
    assert differs, "another seed should give another split"


def test_held_out_users_never_train(inter):
    cfg = _cfg("held_out_users", held_out_fraction=0.3, fold_in_fraction=0.6)
    split = make_split(inter, cfg, seed=0)
    held = np.flatnonzero(~split.train_users)
    assert 0 < held.size < inter.n_users
    # held-out users get no validation items; their "train" is fold-in only
    assert np.all(split.validation.counts()[held] == 0)
    # training users are not evaluated on test under this protocol
    assert np.all(split.test.counts()[split.train_users] == 0)
    assert split.test.counts()[held].sum() > 0
    # the federated fleet built from train_users never contains a held-out user
    from ppr.federated import DeviceFleet
    from ppr.model.mf import MFHyper

    fleet = DeviceFleet(split.train, split.train_users, MFHyper(1.0, 1.0))
    assert not np.isin(fleet.population, held).any()


def test_leave_last_takes_latest(inter):
    cfg = _cfg("leave_last", leave_last_k=2, validation_fraction=0.0)
    split = make_split(inter, cfg, seed=0)
    pos = positives(inter, cfg.positive_threshold)
    checked = 0
    for u in range(inter.n_users):
        te = split.test.row(u)
        if te.size == 0:
            continue
        sel = pos.users == u
        ts = dict(zip(pos.items[sel].tolist(), pos.timestamps[sel].tolist(), strict=True))
        assert te.size == min(2, sel.sum() - 1)
        oldest_test = min(ts[i] for i in te.tolist())
        newest_train = max(ts[i] for i in split.train.row(u).tolist())
        assert oldest_test >= newest_train, u  # ties allowed (random tie-break)
        checked += 1
    assert checked > 100


def test_min_train_moves_items_back(inter):
    big = _cfg("random", min_train=10_000)
    split = make_split(inter, big, seed=0)
    assert split.test.nnz == 0 and split.validation.nnz == 0
    assert split.train.nnz == positives(inter, big.positive_threshold).users.size


def test_user_without_positives_dropped_or_refused():
    from ppr.data.interactions import Interactions
    from ppr.errors import DataError

    users = np.array([10, 10, 20, 20, 30])
    items = np.array([1, 2, 1, 3, 2])
    ratings = np.array([5.0, 4.0, 2.0, 1.0, 4.0], np.float32)  # user 20 has no positive
    inter = Interactions.from_arrays(users, items, ratings, np.arange(5), source="log.csv")
    split = make_split(inter, _cfg("random", validation_fraction=0.0), seed=0)
    holders = split.train.union(split.test).counts()
    assert holders.tolist() == [2, 0, 1]  # the user stays in the index, holds nothing
    with pytest.raises(
        DataError, match=r"log\.csv: 1 user\(s\) have no rating >= 4 \(first: user 20\)"
    ):
        make_split(inter, _cfg("random", users_without_positives="error"), seed=0)

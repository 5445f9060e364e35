"""The serving Device: its plan under the budget, its index built once per model version, its
recommendations (never its own items) and its state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ppr.model.release import ReleasedModel, load_model
from ppr.serving import BudgetError, ServingError
from ppr.serving.device import DeviceSettings, ServingDevice, open_local, plan_local
from ppr.serving.recommender import ExactRecommender


def _model(q: np.ndarray, version: str = "m@1") -> ReleasedModel:
    return ReleasedModel(q, np.arange(q.shape[0]), alpha=3.0, reg=30.0, version=version)


def test_plan_takes_the_most_precise_format_that_fits():
    n, dim = 1_000_000, 32  # float32: 122 MiB, float16: 61 MiB, int8: 34 MiB
    assert plan_local(n, dim, DeviceSettings(budget_mb=256)).format == "float32"
    plan = plan_local(n, dim, DeviceSettings(budget_mb=64))
    assert plan.format == "float16" and plan.nbytes <= plan.budget_bytes
    assert plan_local(n, dim, DeviceSettings(budget_mb=40)).format == "int8"
    with pytest.raises(BudgetError, match="device_budget_mb=10"):
        plan_local(n, dim, DeviceSettings(budget_mb=10))
    with pytest.raises(BudgetError, match="float32"):  # a fixed format that does not fit
        plan_local(n, dim, DeviceSettings(budget_mb=64, format="float32"))
    assert plan_local(3000, 16, DeviceSettings(index="annoy")).index == "annoy"


def test_index_built_once_per_model_version(catalog, tmp_path):
    plan = plan_local(catalog.n_items, 16, DeviceSettings(format="int8"))
    first = open_local(_model(catalog.q), tmp_path, plan)
    folder = tmp_path / "int8-exact"
    meta = json.loads((folder / "model.json").read_text())
    assert meta["model_version"] == "m@1" and first.index.format == "int8"
    stamp = (folder / "items.npy").stat().st_mtime_ns
    again = open_local(_model(catalog.q), tmp_path, plan)  # same version: loaded, mmapped
    assert (folder / "items.npy").stat().st_mtime_ns == stamp
    assert isinstance(again.index.items.codes, np.memmap)
    newer = open_local(_model(2 * catalog.q, "m@2"), tmp_path, plan)  # new version: rebuilt
    assert json.loads((folder / "model.json").read_text())["model_version"] == "m@2"
    np.testing.assert_allclose(
        newer.index.items.decode()[:5], 2 * first.index.items.decode()[:5], rtol=1e-6
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8-exact"]  # no temporary left


@pytest.mark.parametrize("fmt", ["float32", "float16", "int8"])
def test_device_never_recommends_its_own_items(catalog, users, tmp_path, fmt):
    plan = plan_local(catalog.n_items, 16, DeviceSettings(format=fmt))
    rec = open_local(_model(catalog.q), tmp_path, plan)
    for own in users[:20]:
        device = ServingDevice(rec, own, DeviceSettings(k=50))
        ids, scores = device.recommend()
        assert ids.size == 50 and not np.isin(ids, own).any()
        assert np.all(np.diff(scores) <= 0)
        hide = ids[:5]
        again, _ = device.recommend(20, exclude=hide)
        assert not np.isin(again, np.concatenate([own, hide])).any()


def test_device_state_solve_cache_and_new_events(trained_run):
    model = load_model(trained_run)
    plan = plan_local(model.n_items, model.dim, DeviceSettings())
    rec = open_local(model, trained_run / "serving", plan)
    assert isinstance(rec, ExactRecommender)
    device = ServingDevice(rec, [3, 1, 3, 7])
    np.testing.assert_array_equal(device.items, [1, 3, 7])
    p = device.solve()
    assert device.solve() is p  # cached
    np.testing.assert_allclose(p, rec.recalculate_user([1, 3, 7]))
    device.add_items([9])
    assert not np.array_equal(device.solve(), p)
    ids, _ = device.recommend(model.n_items)  # everything but the own items
    assert ids.size == model.n_items - 4 and not np.isin(ids, [1, 3, 7, 9]).any()
    assert device.nbytes >= rec.index.nbytes
    with pytest.raises(ServingError, match="outside the catalog"):
        ServingDevice(rec, [model.n_items])


def test_prior_recommender_adds_the_prior_and_hides_own_items(catalog, users):
    from ppr.serving.index import ExactIndex
    from ppr.serving.recommender import PriorRecommender

    base = ExactRecommender(ExactIndex.build(catalog.q), 3.0, 30.0)
    bias = np.random.default_rng(0).random(catalog.n_items).astype(np.float32)
    rec = PriorRecommender(base, bias)
    for own in users[:10]:
        ids, scores = rec.recommend(own, 20, exclude=[0, 1])
        full = catalog.q @ base.recalculate_user(own).astype(np.float32) + bias
        full[np.concatenate([own, [0, 1]])] = -np.inf
        np.testing.assert_array_equal(np.sort(ids), np.sort(np.argsort(-full)[:20]))
        np.testing.assert_allclose(scores, full[ids], rtol=1e-5, atol=1e-6)
        ex = rec.explain(own, int(ids[0]))
        assert abs(ex.contributions.sum() + bias[ids[0]] - scores[0]) <= 1e-4
    with pytest.raises(ServingError, match="finite"):
        PriorRecommender(base, bias[:-1])

"""Serving a finished run (``ppr.experiments.serving``): opening it, its users, and the serving
modes evaluated through the one recommender interface."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from ppr.errors import PprError
from ppr.experiments.serving import (
    device_for,
    evaluate_serving,
    explain_for_user,
    open_run,
    recommend_for_user,
)


@pytest.fixture(scope="module")
def run(trained_run):
    return open_run(trained_run)


def test_open_run_errors_are_one_line(tmp_path, trained_run):
    with pytest.raises(PprError, match="no such run directory"):
        open_run(tmp_path / "missing")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(trained_run / "config.toml", bare / "config.toml")
    with pytest.raises(PprError, match="no released model"):
        open_run(bare)


def test_users_map_to_their_own_train_items(run):
    u = int(np.flatnonzero(run.train.counts() > 0)[0])
    raw = run.user_ids[u]
    np.testing.assert_array_equal(run.user_items(raw), run.train.row(u))
    np.testing.assert_array_equal(run.user_items(str(raw)), run.train.row(u))
    with pytest.raises(PprError, match="unknown user 'nobody'"):
        run.user_items("nobody")
    with pytest.raises(PprError, match="unknown item"):
        run.item_index("no-such-item")


def test_exact_serving_reproduces_the_runs_own_metrics(run):
    """Full-server scoring through the recommender interface gives the run's evaluation (no
    popularity prior in this run)."""
    summary = json.loads((run.path / "summary.json").read_text())
    res = evaluate_serving(run, "exact")
    assert res["evaluated_users"] == summary["metrics"]["evaluated_users"]
    assert res["recall@20"] == pytest.approx(summary["metrics"]["recall@20"], abs=2e-3)
    assert res["ndcg@20"] == pytest.approx(summary["metrics"]["ndcg@20"], abs=2e-3)
    assert res["latency"]["p95_ms"] >= res["latency"]["p50_ms"] > 0


def test_local_under_a_binding_budget(run):
    """A budget too small for float32 moves the device to float16 / int8; recall stays close."""
    exact = evaluate_serving(run, "exact")
    n, dim = run.model.n_items, run.model.dim
    tight = 1.01 * n * (dim + 4) / 2**20  # int8 fits, float16 does not
    small = replace(run, cfg=run.cfg.replace(**{"serving.device_budget_mb": tight}))
    local = evaluate_serving(small, "local")
    assert local["format"] == "int8" and local["device_bytes"] <= tight * 2**20 + 8 * dim * dim
    assert abs(local["recall@20"] - exact["recall@20"]) <= 0.02
    assert (run.path / "serving" / "int8-exact" / "index.json").is_file()


def test_recommend_and_explain_for_a_user(run):
    u = int(np.argmax(run.train.counts()))
    raw = run.user_ids[u]
    res = recommend_for_user(run, raw, k=7, explain=True)
    own = set(run.model.item_ids[run.train.row(u)].tolist())
    assert len(res["items"]) == 7 and not own & {r["item"] for r in res["items"]}
    for row in res["items"]:
        ex = row["explanation"]
        listed = sum(c["share"] for c in ex["contributions"])
        assert listed + ex["others"] == pytest.approx(row["score"], abs=1e-5)
        assert {c["item"] for c in ex["contributions"]} <= own
    first = res["items"][0]
    one = explain_for_user(run, raw, first["item"], top=0)
    assert len(one["contributions"]) == one["own_items"] == len(own) and one["others"] == 0.0
    assert one["score"] == pytest.approx(first["score"], abs=1e-5)
    assert device_for(run, raw).items.size == len(own)


def test_refine_without_hybrid_or_with_it(run):
    """``--refine`` goes to ``ppr.serving.hybrid`` when it exists; otherwise a one-line error."""
    import importlib.util

    raw = run.user_ids[int(np.argmax(run.train.counts()))]
    if importlib.util.find_spec("ppr.serving.hybrid") is None:
        with pytest.raises(PprError, match="not available"):
            recommend_for_user(run, raw, refine=True)
    else:
        res = recommend_for_user(run, raw, k=5, refine=True)
        assert res["mode"] == "hybrid" and len(res["items"]) == 5


def test_refine_is_refused_for_a_user_who_opted_out_of_it(run):
    """``controls.refine_opt_out_share``: the user's own setting wins over ``--refine``; local
    serving still works for them."""
    cfg = replace(run.cfg, controls=replace(run.cfg.controls, refine_opt_out_share=1.0))
    opted = replace(run, cfg=cfg)
    raw = run.user_ids[int(np.argmax(run.train.counts()))]
    with pytest.raises(PprError, match="opted out of server refinement"):
        recommend_for_user(opted, raw, k=5, refine=True)
    assert len(recommend_for_user(opted, raw, k=5)["items"]) == 5


def test_a_blended_run_is_served_with_its_released_prior(tmp_path):
    """A run that blends its DP popularity prior into scores releases the prior with the model
    (``model.msgpack``): exact, local and hybrid serving then rank as the run's own evaluation."""
    from ppr.config import load_config
    from ppr.experiments.simulate import simulate
    from ppr.model.release import load_model

    over = {
        "aggregation.mode": "plaintext",
        "federated.rounds": 10,
        "baselines.centralized": False,
        "data.synthetic.n_users": 200,
        "data.synthetic.n_items": 120,
        "data.synthetic.n_interactions": 6000,
        "model.dim": 16,
        "privacy.popularity_blend": 0.5,
        "privacy.epsilon": 8.0,
        "privacy.noise_seed": 0,
        "output.runs_dir": str(tmp_path),
    }
    res = simulate(load_config(None, over), write=True)
    model = load_model(res.run_dir)
    assert model.prior is not None and model.prior_blend == 0.5
    assert np.all(model.bias() == np.float32(0.5) * model.prior)
    blended = open_run(res.run_dir)
    want = res.summary.recall(20)
    for mode in ("exact", "local", "hybrid"):
        got = evaluate_serving(blended, mode, max_users=None if mode != "hybrid" else 60)
        if mode != "hybrid":
            assert got["recall@20"] == pytest.approx(want, abs=2e-3), mode
    # hybrid refines with the server's full-precision scores plus the same public prior: its
    # ranking equals the exact one on the users it served
    exact = evaluate_serving(blended, "exact", max_users=60)
    assert got["recall@20"] == pytest.approx(exact["recall@20"], abs=1e-9)
    # the explanation names the prior term: shares + prior == the score the item is ranked by
    raw = blended.user_ids[int(np.argmax(blended.train.counts()))]
    top = recommend_for_user(blended, raw, k=1)["items"][0]
    expl = explain_for_user(blended, raw, top["item"])
    assert expl["prior"] > 0
    assert expl["shares_sum"] + expl["prior"] == pytest.approx(top["score"], abs=1e-5)

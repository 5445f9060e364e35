"""Explanations on a real trained model: exact (the shares add up to the score) and faithful
(leaving out the top contributing own item lowers the score more than leaving out a random one)."""

from __future__ import annotations

import numpy as np
import pytest

from ppr.model.release import load_model
from ppr.serving.codecs import encode
from ppr.serving.index import ExactIndex
from ppr.serving.recommender import ExactRecommender


@pytest.fixture(scope="module")
def trained(trained_run):
    from ppr.experiments.serving import open_run

    return open_run(trained_run)


@pytest.mark.parametrize("fmt", ["float32", "float16", "int8"])
def test_shares_add_up_to_the_score(trained, fmt):
    model = load_model(trained.path)
    index = ExactIndex.build(encode(model.item_factors, fmt))
    rec = ExactRecommender(index, model.alpha, model.reg)
    users = np.flatnonzero(trained.train.counts() >= 2)[:40]
    for u in users:
        own = trained.train.row(int(u))
        ids, scores = rec.recommend(own, 5)
        for i, s in zip(ids, scores, strict=True):
            ex = rec.explain(own, int(i))
            assert ex.own_items.size == own.size
            assert abs(ex.contributions.sum() - ex.score) <= 1e-5
            assert abs(ex.score - float(s)) <= 1e-5 * max(1.0, abs(ex.score))  # = the ranked score


def test_leaving_out_the_top_item_lowers_the_score_most(trained):
    model = load_model(trained.path)
    rec = ExactRecommender(ExactIndex.build(model.item_factors), model.alpha, model.reg)
    rng = np.random.default_rng(0)
    top_drop, random_drop = [], []
    for u in np.flatnonzero(trained.train.counts() >= 4)[:150]:
        own = np.asarray(trained.train.row(int(u)), np.int64)
        item = int(rec.recommend(own, 1)[0][0])
        ex = rec.explain(own, item)
        best = int(ex.own_items[np.argmax(ex.contributions)])
        other = int(rng.choice(own))

        def score_without(j: int, own=own, item=item) -> float:
            p = rec.recalculate_user(own[own != j])
            return float(model.item_factors[item] @ p)

        top_drop.append(ex.score - score_without(best))
        random_drop.append(ex.score - score_without(other))
    top_drop, random_drop = np.asarray(top_drop), np.asarray(random_drop)
    assert top_drop.size >= 100
    assert top_drop.mean() > random_drop.mean()
    assert top_drop.mean() > 0
    assert np.mean(top_drop >= random_drop) > 0.9  # per user too, nearly always

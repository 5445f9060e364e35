"""Serving a finished run: open its directory, build a user's device, evaluate serving modes.

A finished ``ppr simulate`` run directory holds ``config.toml`` and ``model.msgpack``; its data
and split are reproduced from the config (public seed), so a raw user id maps to the user's own
items: the training items of the run's evaluation split (what the device held). Modes, all
behind the recommender interface (``recommend(user_items, k, exclude)``):

* ``exact``: the released matrix in float32, exact scan: what a server holding the full model
  would rank (full-server scoring);
* ``local``: the device's compressed matrix and local index within ``serving.device_budget_mb``
  (:func:`ppr.serving.device.plan_local`), built once per model version under
  ``<run>/serving/<format>-<kind>/`` and memory-mapped;
* ``hybrid``: local candidates refined by the server (:mod:`ppr.serving.hybrid`, when present).

Serving ranks by ``p_u . q_i`` from the released model only: a run's DP popularity prior
(``privacy.popularity_blend``) is not part of the model file, so the run's own metrics of a
blended run differ from served ones. The run's own evaluation
(:func:`ppr.experiments.simulate.evaluate_mf`) ranks through :func:`full_server_recommender`
(with the prior as a :class:`~ppr.serving.recommender.PriorRecommender`) and :func:`rank_metrics`.

Errors are one line (:class:`~ppr.errors.PprError`): a run directory that does not exist, a run
without a model, an unknown user, an unknown item.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppr.config import Config, load_config
from ppr.data.loaders import load_interactions
from ppr.data.split import Split, UserItems, make_split
from ppr.errors import PprError
from ppr.evaluation.metrics import RankingMetrics, evaluate_scores
from ppr.experiments.controls import device_settings
from ppr.model.release import MODEL_FILE, ReleasedModel, load_model
from ppr.serving.device import DeviceSettings, ServingDevice, open_local, plan_local
from ppr.serving.index import ExactIndex
from ppr.serving.recommender import (
    ExactRecommender,
    Explanation,
    PriorRecommender,
    Recommender,
)

MODES = ("exact", "local", "hybrid")
SERVING_DIR = "serving"


@dataclass(frozen=True)
class ServingRun:
    """A finished run opened for serving: its config, model, split and users' raw ids."""

    path: Path
    cfg: Config
    model: ReleasedModel
    split: Split
    user_ids: np.ndarray
    train: UserItems  # what each device holds (train items of the evaluation split)
    target: UserItems  # held-out items of the evaluation split

    def settings(self, **choices: Any) -> DeviceSettings:
        """The run's ``[serving]`` settings with per-user choices applied."""
        return DeviceSettings.from_config(self.cfg.serving, **choices)

    def user_index(self, user: str | int) -> int:
        """The position of raw user id ``user`` (compared as text); one-line error if unknown."""
        key = str(user).strip()
        hits = np.flatnonzero(self.user_ids.astype(str) == key)
        if hits.size == 0:
            raise PprError(
                f"unknown user {key!r}: not in the data of run {self.path} "
                f"({self.user_ids.size} users, e.g. {self.user_ids[0]!s})"
            )
        return int(hits[0])

    def user_items(self, user: str | int) -> np.ndarray:
        """The user's own items (catalog positions); one-line error if the user holds none."""
        items = self.train.row(self.user_index(user))
        if items.size == 0:
            raise PprError(f"user {str(user).strip()!r} holds no items of its own to serve from")
        return np.asarray(items, np.int64)

    def item_index(self, item: str | int) -> int:
        """The catalog position of raw item id ``item``; one-line error if unknown."""
        key = str(item).strip()
        hits = np.flatnonzero(self.model.item_ids.astype(str) == key)
        if hits.size == 0:
            raise PprError(f"unknown item {key!r}: not in the model of run {self.path}")
        return int(hits[0])

    def title(self, i: int) -> str | None:
        """Title of catalog item ``i`` where the data has titles."""
        return self.model.titles[i] if self.model.titles else None


def open_run(path: str | Path) -> ServingRun:
    """Open a finished run directory for serving (module docstring for the errors)."""
    p = Path(path)
    if not p.is_dir():
        raise PprError(f"{p}: no such run directory")
    if not (p / MODEL_FILE).is_file():
        raise PprError(f"{p}: no released model ({MODEL_FILE}) in this run directory")
    if not (p / "config.toml").is_file():
        raise PprError(f"{p}: no config.toml in this run directory")
    cfg = load_config(p / "config.toml")
    model = load_model(p)
    inter = load_interactions(cfg.data, cfg.seed)
    split = make_split(inter, cfg.split, cfg.seed)
    if split.n_items != model.n_items:
        raise PprError(
            f"{p}: the data of its config has {split.n_items} items, the model {model.n_items}"
        )
    train, target = split.for_evaluation(cfg.evaluation.split)
    return ServingRun(p, cfg, model, split, np.asarray(inter.user_ids), train, target)


def exact_recommender(model: ReleasedModel) -> Recommender:
    """Full-server scoring: the released float32 matrix, exact scan (no budget), plus the run's
    released DP popularity prior where the run blended one in (as the run's own evaluation)."""
    return full_server_recommender(model.item_factors, model.alpha, model.reg, model.bias())


def full_server_recommender(
    q: np.ndarray, alpha: float, reg: float, bias: np.ndarray | None = None
) -> Recommender | PriorRecommender:
    """Exact scoring on the float32 matrix ``q`` (plus a public per-item prior ``bias``)."""
    rec = ExactRecommender(ExactIndex.build(np.asarray(q, np.float32), "float32"), alpha, reg)
    return rec if bias is None else PriorRecommender(rec, bias)


def local_recommender(run: ServingRun, settings: DeviceSettings | None = None) -> Recommender:
    """The device's recommender under the budget (built once per model version, mmapped)."""
    settings = settings or run.settings()
    plan = plan_local(run.model.n_items, run.model.dim, settings)
    return open_local(run.model, run.path / SERVING_DIR, plan)


def with_prior(run: ServingRun, rec: Recommender) -> Recommender | PriorRecommender:
    """``rec`` plus the run's released popularity prior (its blend weight), when it has one."""
    bias = run.model.bias()
    return rec if bias is None else PriorRecommender(rec, bias)


def hybrid_recommender(run: ServingRun, local: Recommender, server_url: str | None) -> Any:
    """Local candidates refined by the server (``ppr.serving.hybrid.connect``); a one-line error
    when this build has no hybrid serving."""
    try:
        hybrid = importlib.import_module("ppr.serving.hybrid")
    except ModuleNotFoundError:
        hybrid = None
    if hybrid is None or not hasattr(hybrid, "connect"):
        raise PprError("hybrid serving (server refinement) is not available in this build")
    return hybrid.connect(run.path, local, server_url, n_candidates=run.cfg.serving.candidates)


def recommender_for(run: ServingRun, mode: str, server_url: str | None = None) -> Any:
    """The recommender of serving ``mode`` (``exact``, ``local`` or ``hybrid``)."""
    if mode == "exact":
        return exact_recommender(run.model)
    if mode == "local":
        return with_prior(run, local_recommender(run))
    if mode == "hybrid":
        return hybrid_recommender(run, local_recommender(run), server_url)
    raise PprError(f"unknown serving mode {mode!r}: expected one of {', '.join(MODES)}")


def device_for(run: ServingRun, user: str | int, **choices: Any) -> ServingDevice:
    """The user's device: its own items, its settings, the local recommender under the budget."""
    settings = run.settings(**choices)
    local = with_prior(run, local_recommender(run, settings))
    return ServingDevice(local, run.user_items(user), settings)


def _latency(ms: list[float]) -> dict[str, float]:
    arr = np.asarray(ms, np.float64) if ms else np.zeros(1)
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95))}


def rank_metrics(
    rec: Any, train: UserItems, target: UserItems, k: int, users: np.ndarray | None = None
) -> tuple[RankingMetrics, list[float]]:
    """recall@k / NDCG@k / coverage@k (:mod:`ppr.evaluation.metrics`) of ``rec.recommend`` for
    every user with held-out and own items (or ``users``), and each request's latency in ms.
    The ranked list becomes scores ``k - rank`` (other items below), so the metrics' protocol
    (own items excluded) applies as is."""
    cand = np.flatnonzero((target.counts() > 0) & (train.counts() > 0))
    users = cand if users is None else np.intersect1d(np.asarray(users), cand)
    lat: list[float] = []

    def score(batch: np.ndarray) -> np.ndarray:
        out = np.full((batch.size, train.n_items), -1e30, np.float32)
        for r, u in enumerate(batch):
            t0 = time.perf_counter()
            ids, _ = rec.recommend(train.row(int(u)), k)
            lat.append(1e3 * (time.perf_counter() - t0))
            out[r, ids] = np.arange(ids.size, 0, -1, dtype=np.float32)
        return out

    batch = max(1, min(1024, 2**24 // max(1, train.n_items)))
    return evaluate_scores(score, train, target, k, users=users, batch_size=batch), lat


def evaluate_recommender(
    rec: Any, train: UserItems, target: UserItems, k: int, users: np.ndarray | None = None
) -> dict[str, Any]:
    """:func:`rank_metrics` as a report: recall@k, NDCG@k, users and latency p50 / p95."""
    m, lat = rank_metrics(rec, train, target, k, users)
    return {
        f"recall@{k}": m.recall,
        f"ndcg@{k}": m.ndcg,
        "evaluated_users": m.n_users,
        "latency": _latency(lat),
    }


def request_stats(history: list[Any]) -> dict[str, Any]:
    """Per-request bytes and latency of a hybrid recommender's requests (``history`` of
    :class:`ppr.serving.hybrid.RequestStats`); the one-time context uploads are reported apart."""
    if not history:
        return {"n": 0}
    ctx = np.array([h.context_bytes for h in history], np.float64)
    up = np.array([h.bytes_up for h in history], np.float64) - ctx
    down = np.array([h.bytes_down for h in history], np.float64)
    lat = [1e3 * h.latency_s for h in history]
    return {
        "n": len(history),
        "bytes_up_mean": float(up.mean()),
        "bytes_down_mean": float(down.mean()),
        "context_uploads": int(np.count_nonzero(ctx)),
        "context_bytes_total": int(ctx.sum()),
        "latency": _latency(lat),
    }


def _describe(rec: Any) -> dict[str, Any]:
    local = getattr(rec, "local", rec)
    index = getattr(local, "index", None)
    out: dict[str, Any] = {"device_bytes": int(getattr(local, "nbytes", 0))}
    if index is not None:
        pruned = getattr(index, "order", None) is not None
        out |= {"format": index.format, "index": index.kind + ("-pruned" if pruned else "")}
        out["n_items"] = index.n_items
    history = getattr(rec, "history", None)
    if history is not None:
        out["requests"] = request_stats(list(history))
    return out


def evaluate_serving(
    run: ServingRun, mode: str, server_url: str | None = None, max_users: int | None = None
) -> dict[str, Any]:
    """Metrics, bytes and latency of serving ``mode`` on the run's evaluation split
    (``max_users``: the first that many evaluated users, for quick checks)."""
    rec = recommender_for(run, mode, server_url)
    k = run.cfg.evaluation.k
    users = None
    if max_users is not None:
        cand = np.flatnonzero((run.target.counts() > 0) & (run.train.counts() > 0))
        users = cand[: int(max_users)]
    res = evaluate_recommender(rec, run.train, run.target, k, users)
    out = {"mode": mode, "run": str(run.path), "k": k, "model_version": run.model.version}
    out |= {"evaluated_on": run.cfg.evaluation.split} | res | _describe(rec)
    out["budget_mb"] = run.cfg.serving.device_budget_mb
    close = getattr(rec, "close", None)
    if callable(close):
        close()
    return out


def _item(run: ServingRun, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {"item": run.model.item_ids[i].item()}
    if run.model.titles:
        out["title"] = run.model.titles[i]
    return out


def explanation_dict(run: ServingRun, expl: Explanation, top: int) -> dict[str, Any]:
    """An explanation for display: the ``top`` own items with the largest shares (``top <= 0``:
    all), the rest summed as ``others``; ``listed + others == score`` up to float64 rounding.
    ``prior``: the public popularity term of a blended run (``ranking_score = score + prior``)."""
    n = expl.own_items.size if top <= 0 else min(int(top), expl.own_items.size)
    order = np.argsort(-expl.contributions, kind="stable")
    shares = [
        _item(run, int(expl.own_items[j])) | {"share": float(expl.contributions[j])}
        for j in order[:n]
    ]
    others = float(expl.contributions[order[n:]].sum())
    bias = run.model.bias()
    prior = 0.0 if bias is None else float(bias[expl.item])
    return {
        **_item(run, expl.item),
        "score": expl.score,
        "own_items": int(expl.own_items.size),
        "contributions": shares,
        "others": others,
        "shares_sum": float(expl.contributions.sum()),
        # the run's released DP popularity prior (times its blend weight): the one signal about
        # other users, a population-level private aggregate; ranking score = score + prior
        "prior": prior,
        "ranking_score": expl.score + prior,
    }


def refine_allowed(run: ServingRun, user: str | int) -> bool:
    """Whether the user's own settings (``[controls]`` of the run) allow server refinement."""
    return bool(device_settings(run.cfg, run.split.n_users, run.user_index(user)).refine)


def recommend_for_user(
    run: ServingRun,
    user: str | int,
    k: int | None = None,
    refine: bool = False,
    server_url: str | None = None,
    explain: bool = False,
) -> dict[str, Any]:
    """The user's top-``k`` (``serving.k`` by default) from its device (``refine``: re-ranked by
    the server through hybrid serving), with titles, scores and, with ``explain``, each item's
    top contributing own items (shares of the device's local score)."""
    device = device_for(run, user, refine=refine)
    k = device.settings.k if k is None else int(k)
    if refine and not refine_allowed(run, user):
        raise PprError(
            f"user {str(user).strip()!r} opted out of server refinement "
            "(controls.refine_opt_out_share): serve without --refine"
        )
    if refine:
        hybrid = hybrid_recommender(run, local_recommender(run, device.settings), server_url)
        ids, scores = hybrid.recommend(device.items, k)
        last = hybrid.last_stats
        stats = None if last is None else {f: getattr(last, f) for f in last.__dataclass_fields__}
    else:
        ids, scores = device.recommend(k)
        stats = None
    rows = []
    for i, s in zip(ids.tolist(), scores.tolist(), strict=True):
        row = _item(run, int(i)) | {"score": float(s)}
        if explain:
            top = device.settings.explain_top
            row["explanation"] = explanation_dict(run, device.explain(int(i)), top)
        rows.append(row)
    index = device.recommender.index
    out = {"user": str(user).strip(), "k": k, "mode": "hybrid" if refine else "local"}
    out |= {"format": index.format, "index": index.kind, "own_items": int(device.items.size)}
    out |= {"model_version": run.model.version, "items": rows}
    if stats is not None:
        out["requests"] = stats
    return out


def explain_for_user(
    run: ServingRun, user: str | int, item: str | int, top: int | None = None
) -> dict[str, Any]:
    """Why the user's device scores ``item`` as it does (see :func:`explanation_dict`)."""
    device = device_for(run, user)
    i = run.item_index(item)
    top = device.settings.explain_top if top is None else top
    out = explanation_dict(run, device.explain(i), top)
    return {"user": str(user).strip(), "own_item": bool(np.isin(i, device.items))} | out

"""What a user's transparency page shows, gathered from a finished run directory.

:func:`gather` returns one JSON-safe dict (rendered by :mod:`ppr.reporting.transparency`):

* ``device``: what the device holds and uses: the released model's version, the bytes of its
  stored model and local index, the number of its own items;
* ``messages``: every kind of message that left the device (bytes, count, encrypted or not) and
  the rounds it took part in, from the device's own log (``device_log.json``: device-local state;
  the server side never records which rounds sampled a device);
* ``privacy``: the user-level ε and δ this user spent: the composition of the releases the device
  was *eligible* for (``devices.json``, the trusted side's counts), ε after each release (the
  chart), the run's ε (an upper bound of every user's), whether the noise was secret;
* ``settings``: the user's choices (training, refinement, personal ε cap, deletion);
* ``recommendations``: the current top items with their explanations (shares of the score by
  the user's own items, computed on the device).

Without ``devices.json`` (``output.protected_only``) the user's ε is the run's ε (an upper bound,
labelled so); without ``device_log.json`` the messages are unknown (labelled so). Errors are one
line (:class:`~ppr.errors.PprError`): no run directory, unknown user.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import dp_accounting
import numpy as np

from ppr.errors import PprError
from ppr.experiments.controls import DEVICE_LOG_FILE, UserControls
from ppr.experiments.serving import ServingRun, device_for, open_run, recommend_for_user
from ppr.io import read_json
from ppr.privacy.accounting import epsilon_of
from ppr.privacy.spend import PrivacySpend, spend_from_json

DEVICES_FILE = "devices.json"
MAX_CURVE_POINTS = 12

#: Plain-language names of the message kinds a device sends.
KIND_TEXT = {
    "update": "model update (the change your data makes to the shared item matrix)",
    "popularity": "popularity contribution (up to a few of your items, for the noisy counts)",
    "cohort": "cohort contribution (your group's counts, released only with noise)",
}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _compose(sigs: list, counts: list[int]) -> dp_accounting.DpEvent:
    parts = [
        s if n == 1 else dp_accounting.SelfComposedDpEvent(s, n)
        for s, n in zip(sigs, counts, strict=True)
        if n > 0
    ]
    if not parts:
        return dp_accounting.NoOpDpEvent()
    return parts[0] if len(parts) == 1 else dp_accounting.ComposedDpEvent(parts)


def epsilon_curve(spend: PrivacySpend, index: int) -> list[dict[str, Any]]:
    """ε of device ``index`` after each release, in release order. A device's eligibility only
    ever ends (opt-out, cap, deletion), so its ``c_k`` charges of signature ``k`` are the first
    ``c_k`` releases of that signature. At most :data:`MAX_CURVE_POINTS` points; the last is the
    device's ε by the run's accountant, the others by its coarse (pessimistic, hence upper-bound)
    form, which is several times faster."""
    sigs = list(spend.signatures)
    own = [int(c) for c in spend.device_counts([index])[0]]
    seen, rows = [0] * len(sigs), []
    for r in spend.releases:
        seen[r.signature] += 1
        rows.append((r, [min(a, b) for a, b in zip(seen, own, strict=True)]))
    step = max(1, math.ceil(len(rows) / MAX_CURVE_POINTS))
    picked = rows[::step] if rows[-1:] == rows[::step][-1:] else [*rows[::step], rows[-1]]
    out = []
    for i, (r, counts) in enumerate(picked):
        coarse = i < len(picked) - 1
        event = _compose(sigs, counts)
        eps = epsilon_of(event, float(spend.delta), spend.accountant, coarse=coarse)
        label = f"round {r.round}" if r.round is not None else r.name
        out.append({"release": label, "epsilon": _finite(eps), "upper_bound": coarse})
    return out


def _privacy(run: ServingRun, device: int) -> dict[str, Any]:
    """The user's own ε, δ (and curve) when the trusted side's record is there; else the run's."""
    priv = run.model.privacy
    out: dict[str, Any] = {
        "run_epsilon": _finite(float(priv.get("epsilon", math.inf))),
        "delta": priv.get("delta"),
        "accountant": priv.get("accountant"),
        "noise": priv.get("noise", ""),
        "noise_secret": str(priv.get("noise", "")).startswith("secret"),
        "private": math.isfinite(float(priv.get("epsilon", math.inf))),
    }
    path = run.path / DEVICES_FILE
    if not path.is_file():
        return out | {"epsilon": out["run_epsilon"], "source": "run (upper bound)", "curve": []}
    rec = read_json(path)
    members = np.asarray(rec["members"], np.int64)
    spend = spend_from_json(rec["spend"])
    pos = int(np.searchsorted(members, device))
    if pos >= members.size or members[pos] != device:  # not a training device: nothing charged
        return out | {"epsilon": 0.0, "source": "never eligible", "curve": []}
    eps = spend.device_epsilon(pos)
    counts = spend.device_counts([pos])[0]
    out |= {"epsilon": _finite(eps), "source": "this device's eligible releases"}
    out["releases_eligible"] = int(np.sum(counts))
    out["curve"] = epsilon_curve(spend, pos) if spend.releases else []
    return out


def _device_log(run: ServingRun, device: int) -> dict[str, Any] | None:
    path = run.path / DEVICE_LOG_FILE
    if not path.is_file():
        return None
    return read_json(path)["devices"].get(str(device))


def _messages(entry: dict[str, Any] | None) -> dict[str, Any]:
    if entry is None:
        return {"known": False, "kinds": [], "rounds": [], "received": {}}
    kinds = [
        {"kind": k, "text": KIND_TEXT.get(k, k)} | v
        for k, v in sorted(entry.get("sent", {}).items())
    ]
    return {
        "known": True,
        "kinds": kinds,
        "total_bytes": int(sum(k["bytes"] for k in kinds)),
        "rounds": list(entry.get("rounds", [])),
        "received": dict(entry.get("received", {})),
    }


def _settings(run: ServingRun, device: int, entry: dict[str, Any] | None) -> dict[str, Any]:
    controls = UserControls.from_config(run.cfg, run.user_ids.size)
    s = controls.settings(device)
    after = int(controls.delete_after[device])
    out = {"train": s.train, "refine": s.refine, "epsilon_cap": _finite(s.epsilon_cap)}
    out["delete_after_round"] = after or None
    entry = entry or {}
    out["deleted"] = "deleted_after_round" in entry
    out["stopped"] = entry.get("stopped")
    return out


def _recommendations(run: ServingRun, user: str, deleted: bool) -> dict[str, Any]:
    if deleted:
        return {"available": False, "why": "the data on this device was deleted", "items": []}
    res = recommend_for_user(run, user, explain=True)
    return {"available": True, "items": res["items"], "k": res["k"]}


def gather(run_dir: str | Path, user: str) -> dict[str, Any]:
    """Everything the transparency page of ``user`` (raw id) shows (module docstring)."""
    p = Path(run_dir)
    if not p.is_dir():
        raise PprError(f"{p}: no such run directory")
    run = open_run(p)
    device = run.user_index(user)
    entry = _device_log(run, device)
    settings = _settings(run, device, entry)
    own = int(run.train.row(device).size)
    holds: dict[str, Any] = {"model_version": run.model.version, "n_items": run.model.n_items}
    holds |= {"dim": run.model.dim, "own_items": 0 if settings["deleted"] else own}
    if not settings["deleted"] and own:
        dev = device_for(run, user)
        index = dev.recommender.index
        holds |= {"device_bytes": int(dev.nbytes), "format": index.format, "index": index.kind}
    return {
        "user": str(user).strip(),
        "run": str(p),
        "run_name": run.cfg.name,
        "device": holds,
        "messages": _messages(entry),
        "privacy": _privacy(run, device),
        "settings": settings,
        "recommendations": _recommendations(run, user, settings["deleted"] or own == 0),
    }

"""User controls in a run, and each device's own record of what left it.

Controls (``[controls]`` of the config; the users are chosen from the public ``seed``, so the
choice is a pure function of the config and never of data):

* **opt out of training**: the device is never eligible, so it is never sampled, never charged
  and sends nothing (nothing of it reaches the popularity counts either);
* **opt out of refinement**: ``DeviceSettings.refine = False``; serving reads it with
  :func:`device_settings` and must not send the device's vector to the server;
* **personal ε cap**: before every release (the popularity counts, each round) the devices whose
  own spend would pass their cap if the *planned* event were charged to them are retired
  (:meth:`~ppr.federated.DeviceFleet.retire`): never sampled or charged again. The decision uses
  only data-independent quantities (the planned σ and q, the counts of releases each device was
  eligible for), as "Privacy semantics" in DESIGN.md requires. When a round's realized noise
  differs from the plan (distributed noise with dropouts), :class:`~ppr.experiments.accounting.
  LiveLedger` refuses to release it if a capped device would pass its cap;
* **delete**: after round ``delete_after_round`` the device erases its local data and its log
  and is retired; what it had sent before stays covered by the ε already spent.

:class:`DeviceLog` is *device-local* state: what each device sent (kind, bytes, encrypted or not)
and the rounds it took part in. Which rounds sampled a device is secret on the server side
(publishing it undoes the amplification by sampling); only the device knows it. The simulation
writes the devices' logs to ``device_log.json`` (never with ``output.protected_only``), a file
that stands for the devices' own storage, not for anything the server holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import dp_accounting
import numpy as np

from ppr.config import Config
from ppr.crypto.channel import KIND_UPDATE, Channel
from ppr.experiments.accounting import LiveLedger
from ppr.federated import DeviceFleet, DeviceSettings

DEVICE_LOG_FILE = "device_log.json"
DEVICE_LOG_FORMAT = "ppr.device_log/1"
KIND_POPULARITY = "popularity"
_TAGS = {"opt_out": 1, "refine_opt_out": 2, "epsilon_cap": 3, "delete": 4}


def choose_users(seed: int, n_users: int, share: float, control: str) -> np.ndarray:
    """The ``round(share * n_users)`` users (sorted ids) who use ``control``: a permutation drawn
    from the public ``seed`` and the control's tag only (independent across controls)."""
    n = round(float(share) * int(n_users))
    if n <= 0:
        return np.zeros(0, np.int64)
    rng = np.random.default_rng([int(seed), 0xC0A7, _TAGS[control]])
    return np.sort(rng.permutation(int(n_users))[:n]).astype(np.int64)


@dataclass(frozen=True)
class UserControls:
    """Every user's choices (dense masks over user ids ``0 .. n_users - 1``)."""

    opted_out: np.ndarray
    refine_off: np.ndarray
    cap: np.ndarray  # personal ε cap (inf: none)
    delete_after: np.ndarray  # round after which the user deletes (0: never)

    @classmethod
    def from_config(cls, cfg: Config, n_users: int) -> UserControls:
        c, n = cfg.controls, int(n_users)

        def mask(share: float, control: str) -> np.ndarray:
            m = np.zeros(n, bool)
            m[choose_users(cfg.seed, n, share, control)] = True
            return m

        cap = np.full(n, math.inf)
        cap[mask(c.epsilon_cap_share, "epsilon_cap")] = c.epsilon_cap
        delete = np.where(mask(c.delete_share, "delete"), c.delete_after_round, 0)
        return cls(
            mask(c.opt_out_share, "opt_out"),
            mask(c.refine_opt_out_share, "refine_opt_out"),
            cap,
            delete.astype(np.int64),
        )

    def settings(self, user: int) -> DeviceSettings:
        """The device's :class:`~ppr.federated.DeviceSettings`."""
        u = int(user)
        return DeviceSettings(
            train=not bool(self.opted_out[u]),
            refine=not bool(self.refine_off[u]),
            epsilon_cap=float(self.cap[u]),
        )

    @property
    def any_cap(self) -> bool:
        return bool(np.isfinite(self.cap).any())


def popularity_event(noise_multiplier: float) -> dp_accounting.DpEvent:
    """The planned event of the popularity counts (as :func:`ppr.privacy.private_item_counts`
    charges it)."""
    if noise_multiplier > 0:
        return dp_accounting.GaussianDpEvent(float(noise_multiplier))
    return dp_accounting.NonPrivateDpEvent()


def device_settings(cfg: Config, n_users: int, user: int) -> DeviceSettings:
    """What user ``user`` (dense id) chose in the run of ``cfg`` (for serving: ``refine``)."""
    return UserControls.from_config(cfg, n_users).settings(user)


class DeviceLog:
    """Device-local records, one per device (see the module docstring). ``sent[kind]`` holds
    ``bytes``, ``messages`` and ``encrypted``; ``rounds`` the rounds the device sent an update
    in; ``received`` bytes per kind; a deleted device keeps only when it deleted."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.devices: dict[int, dict[str, Any]] = {}
        for k, v in (state or {}).items():
            self.devices[int(k)] = v

    def _entry(self, dev: int) -> dict[str, Any]:
        return self.devices.setdefault(int(dev), {"sent": {}, "received": {}, "rounds": []})

    def sent(self, dev: int, kind: str, nbytes: int, round_no: int, encrypted: bool) -> None:
        """Device ``dev`` sent ``nbytes`` of ``kind`` in round ``round_no`` (1-based; 0: before
        training)."""
        e = self._entry(dev)
        if "deleted_after_round" in e:
            raise RuntimeError(f"device {dev} deleted its data: it sends nothing more")
        k = e["sent"].setdefault(kind, {"bytes": 0, "messages": 0, "encrypted": encrypted})
        k["bytes"] += int(nbytes)
        k["messages"] += 1
        if kind == KIND_UPDATE and (not e["rounds"] or e["rounds"][-1] != round_no):
            e["rounds"].append(int(round_no))

    def received(self, dev: int, kind: str, nbytes: int) -> None:
        e = self._entry(dev)
        e["received"][kind] = e["received"].get(kind, 0) + int(nbytes)

    def erase(self, dev: int, after_round: int) -> None:
        """The device deleted its data: its log goes too, only the deletion is remembered."""
        self.devices[int(dev)] = {"deleted_after_round": int(after_round)}

    def sent_bytes(self, dev: int) -> int:
        e = self.devices.get(int(dev), {})
        return int(sum(k["bytes"] for k in e.get("sent", {}).values()))

    def state(self) -> dict[str, Any]:
        return {str(k): v for k, v in sorted(self.devices.items())}


class DeviceLogChannel(Channel):
    """The run's :class:`~ppr.crypto.Channel` (same counters, taken over from ``base``) that also
    writes what each ``device/<id>`` sends or receives into the devices' own logs."""

    def __init__(self, base: Channel, log: DeviceLog, encrypted: bool) -> None:
        vars(self).update(vars(base))
        self.log, self.encrypted = log, encrypted

    def send(self, sender: str, receiver: str, kind: str, payload: bytes, round_idx: int) -> bytes:
        out = super().send(sender, receiver, kind, payload, round_idx)
        if sender.startswith("device/"):
            dev = int(sender.split("/", 1)[1])
            self.log.sent(dev, kind, len(out), int(round_idx) + 1, self.encrypted)
        if receiver.startswith("device/"):
            self.log.received(int(receiver.split("/", 1)[1]), kind, len(out))
        return out


class LoggedSum:
    """Wraps a summation without a channel (the structured plaintext path, where the upload is
    computed, not sent): each device that took part logs its plaintext float32 update."""

    def __init__(self, inner: Any, log: DeviceLog) -> None:
        self.inner, self.log = inner, log
        self.n_items, self.dim = inner.n_items, inner.dim

    def aggregate(self, round_idx: int, devices: Any, key: Any, **kw: Any) -> Any:
        out = self.inner.aggregate(round_idx, devices, key, **kw)
        ids = np.setdiff1d(devices.device_ids, np.asarray(out.dropped, np.int64))
        if ids.size:
            each = int(out.upload_bytes) // int(ids.size)
            for dev in ids.tolist():
                self.log.sent(dev, KIND_UPDATE, each, int(round_idx) + 1, False)
        return out

    def close(self) -> None:
        self.inner.close()


def with_device_log(summation: Any, log: DeviceLog, encrypted: bool) -> Any:
    """``summation`` writing into ``log``: its channel replaced by a :class:`DeviceLogChannel`
    (counters kept) when it has one, else wrapped by :class:`LoggedSum`."""
    inner = summation
    while hasattr(inner, "inner"):
        inner = inner.inner
    secure = getattr(inner, "secure", None)
    if secure is None:
        return LoggedSum(summation, log)
    secure.channel = DeviceLogChannel(secure.channel, log, encrypted)
    return summation


class RunControls:
    """The controls of one run, applied to its fleet and ledger before every release."""

    def __init__(
        self,
        cfg: Config,
        n_users: int,
        fleet: DeviceFleet,
        ledger: LiveLedger,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        """``checkpoint``: what a resumed run's checkpoint carries (its ``"controls"`` entry)."""
        self.users = UserControls.from_config(cfg, n_users)
        self.fleet, self.ledger = fleet, ledger
        self.enabled = cfg.controls.device_log
        st = (checkpoint or {}).get("controls", {})
        self.log = DeviceLog(st.get("device_log"))
        self.stopped: dict[int, dict[str, Any]] = {
            int(k): v for k, v in st.get("stopped", {}).items()
        }
        self._rebuild_retired()

    def _rebuild_retired(self) -> None:
        """On resume: the devices retired before the interruption are retired again."""
        if self.stopped:
            self.fleet.retire(np.fromiter(self.stopped, np.int64))

    def state(self) -> dict[str, Any]:
        stopped = {str(k): v for k, v in sorted(self.stopped.items())}
        return {"device_log": self.log.state(), "stopped": stopped}

    def wrap(self, summation: Any, encrypted: bool) -> Any:
        return with_device_log(summation, self.log, encrypted) if self.enabled else summation

    def _retire(self, ids: np.ndarray, reason: str, before: str) -> None:
        for d in ids.tolist():
            self.stopped[int(d)] = {"reason": reason, "before": before}
        self.fleet.retire(ids)

    def before_release(self, event: dp_accounting.DpEvent, name: str) -> np.ndarray:
        """Retire the eligible capped devices whose spend would pass their cap were ``event``
        (planned, data-independent) charged to them; the eligible devices left."""
        pop = self.fleet.population
        caps = self.users.cap[pop]
        for cap in np.unique(caps[np.isfinite(caps)]):
            ids = pop[caps == cap]
            ok = self.ledger.devices_within_cap(event, float(cap), ids)
            if (~ok).any():
                self._retire(ids[~ok], "personal epsilon cap", name)
        self._watch()
        return self.fleet.population

    def _watch(self) -> None:
        """Tell the ledger which capped devices are eligible (checked if a round's realized
        noise differs from the plan)."""
        pop = self.fleet.population
        caps = self.users.cap[pop]
        fin = np.isfinite(caps)
        self.ledger.cap_watch = (pop[fin], caps[fin]) if fin.any() else None

    def delete_due(self, round_no: int) -> None:
        """Users whose deletion round is before ``round_no`` erase their data and are retired."""
        d = self.users.delete_after
        due = np.flatnonzero((d > 0) & (d < int(round_no)))
        due = due[[self.stopped.get(int(u), {}).get("reason") != "deleted" for u in due]]
        for u in due.tolist():
            self.log.erase(u, int(d[u]))
            self.stopped[int(u)] = {"reason": "deleted", "before": f"round {int(d[u]) + 1}"}
        if due.size:
            self.fleet.retire(due)

    def before_round(self, round_no: int) -> None:
        """Before round ``round_no`` (1-based): deletions due, then the caps for one more round
        at the planned noise."""
        self.delete_due(round_no)
        event = self.ledger.round_event(self.ledger.plan.noise_multiplier)
        self.before_release(event, f"round {round_no}")

    def after_round(self, round_no: int, rounds: int) -> None:
        """After round ``round_no`` of ``rounds``: prepare the next one (after the last: only
        the deletions due)."""
        if round_no < rounds:
            self.before_round(round_no + 1)
        else:
            self.delete_due(round_no + 1)

    def device_channel(self, channel: Channel) -> Channel:
        """``channel`` also writing into the devices' own logs (unchanged without the log)."""
        return DeviceLogChannel(channel, self.log, True) if self.enabled else channel

    def popularity_sent(self, counts: np.ndarray, max_items: int) -> None:
        """The popularity counts: each contributing device sent at most ``max_items`` item ids
        (int32) to the curator that adds the noise (not through the CKKS channel)."""
        if not self.enabled:
            return
        for dev in np.flatnonzero(counts).tolist():
            n = min(int(counts[dev]), int(max_items))
            self.log.sent(dev, KIND_POPULARITY, 4 * n, 0, False)

    def device_files(self, logs: list[Any]) -> dict[str, Any]:
        """The device-local files of the run directory (none without ``controls.device_log``);
        deletions due after the last round that ran are applied first."""
        if logs:
            self.delete_due(int(logs[-1].round) + 1)
        return {DEVICE_LOG_FILE: self.report()} if self.enabled else {}

    def report(self) -> dict[str, Any]:
        """``device_log.json``: every device's own record, plus its settings and why it stopped
        taking part (device-local: see the module docstring)."""
        devices = {}
        for d in range(self.users.cap.size):
            s = self.users.settings(d)
            entry = {"settings": {"train": s.train, "refine": s.refine}}
            entry["settings"]["epsilon_cap"] = (
                s.epsilon_cap if math.isfinite(s.epsilon_cap) else None
            )
            entry |= self.log.devices.get(d, {"sent": {}, "received": {}, "rounds": []})
            if d in self.stopped:
                entry["stopped"] = self.stopped[d]
            devices[str(d)] = entry
        return {
            "format": DEVICE_LOG_FORMAT,
            "device_local": True,
            "note": "each entry is what one device itself knows; the server never holds it",
            "devices": devices,
        }

"""A run's directory while it runs: config, per-round checkpoints, resume, and the release boundary.

:class:`RunSession` opens a fresh partial run directory (or reopens an interrupted one), writes the
resolved config, checkpoints after every round (server state, metrics lines, the live ledger and
released one-off outputs such as the popularity prior, so that a resume never releases anything
twice), and on success writes the run's outputs through the release boundary:

* always: ``config.toml`` (public), ``ledger.json`` (what really ran), ``model.msgpack`` (the
  released model) and ``summary.json`` restricted to public and protected fields when
  ``output.protected_only`` is set (see :mod:`ppr.experiments.summary`);
* unless ``output.protected_only``: the diagnostics ``metrics.jsonl`` (per-round exact norms,
  clipped fractions, counts) and ``devices.json`` (the trusted side's per-device spend), and
  ``device_log.json`` (device-local: what each device itself sent, see
  :mod:`ppr.experiments.controls`).

A resume refuses a ``config.toml`` that differs from the config the checkpoint was written under
(the ledger must describe the run that really happened), and a corrupt checkpoint is one line.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from ppr.config import Config, flatten, to_toml
from ppr.errors import ConfigError
from ppr.experiments.rundir import (
    CHECKPOINT,
    Checkpoint,
    RunDir,
    load_checkpoint,
    save_checkpoint,
)
from ppr.experiments.summary import ALL, RELEASED, RunSummary
from ppr.federated import RoundLog
from ppr.io import atomic_write_json, atomic_write_text
from ppr.model.release import ReleasedModel

DIAGNOSTIC_FILES = ("metrics.jsonl", "devices.json", "device_log.json")


def config_changes(written: str, now: str) -> list[str]:
    """Keys whose values differ between two config TOML texts (``key: old -> new``)."""
    a, b = flatten(tomllib.loads(written)), flatten(tomllib.loads(now))
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


class RunSession:
    """See the module docstring. ``extra`` is what the checkpoint carries besides the state."""

    def __init__(self, cfg: Config, rd: RunDir | None, resuming: bool) -> None:
        self.cfg, self.rd, self.resuming = cfg, rd, resuming
        self.config_text = to_toml(cfg)
        self.extra: dict[str, Any] = {}
        self.lines: list[str] = []
        self.resumable = False
        self._ckpt: Checkpoint | None = None

    @classmethod
    def open(
        cls, cfg: Config, run_dir: str | Path | None, write: bool, resume: str | Path | None
    ) -> RunSession:
        if resume is not None:
            s = cls(cfg, RunDir.reopen(resume), True)
            s._read_checkpoint()
            return s
        if not write:
            return cls(cfg, None, False)
        rd = RunDir(Path(run_dir)) if run_dir else RunDir.create(cfg.output.runs_dir, cfg.name)
        s = cls(cfg, rd, False)
        atomic_write_text(rd.file("config.toml"), s.config_text)
        return s

    def _read_checkpoint(self) -> None:
        assert self.rd is not None
        ckpt = load_checkpoint(self.rd.path)
        extra = ckpt.extra
        changes = config_changes(extra.get("config", ""), self.config_text)
        if changes:
            raise ConfigError(
                f"{self.rd.path / 'config.toml'}: differs from the config the checkpoint was "
                f"written under ({'; '.join(changes[:3])}): a resume continues the same run; "
                "start a new run for a new config."
            )
        self.extra, self._ckpt, self.resumable = extra, ckpt, True

    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None or self.rd is None or not self.rd.path.exists():
            return
        if self.resumable:  # rounds are checkpointed: keep them, whatever stopped the run
            exc.add_note(f"the run can be resumed: ppr simulate --resume {self.rd.path}")
        else:
            self.rd.abort()

    def restore(self, template) -> tuple[Any, int, list[RoundLog]]:
        """(state, first round to run, logs of the rounds already done)."""
        if self._ckpt is None:
            return template, 0, []
        self.lines = list(self._ckpt.lines)
        recs = [json.loads(x) for x in self.lines]
        done = [RoundLog(**{f: r[f] for f in RoundLog._fields if f in r}) for r in recs]
        return self._ckpt.state(template), self._ckpt.round_done, done

    def checkpoint(self, state, round_done: int, line: str, extra: dict) -> None:
        self.lines.append(line)
        self.extra.update(extra)
        if self.rd is None:
            return
        atomic_write_text(self.rd.file("metrics.jsonl"), "\n".join(self.lines) + "\n")
        save_checkpoint(
            self.rd.path,
            state,
            round_done,
            len(self.lines),
            {**self.extra, "config": self.config_text},
        )
        self.resumable = True

    @property
    def final_dir(self) -> str | None:
        return str(self.rd.final) if self.rd is not None else None

    def finish(
        self, summary: RunSummary, model: ReleasedModel, ledger, logs,
        device_files: dict[str, Any] | None = None,
    ) -> Path | None:
        """Write the outputs through the release boundary and commit the directory;
        ``device_files`` (the devices' own logs, device-local state) unless protected_only."""
        if self.rd is None:
            return None
        protected_only = self.cfg.output.protected_only
        plan = ledger.plan
        ledger.ledger.save(self.rd.file("ledger.json"), plan.delta, plan.accountant)
        model.save(self.rd.path)
        atomic_write_json(
            self.rd.file("summary.json"), summary.to_dict(RELEASED if protected_only else ALL)
        )
        if protected_only:
            for name in DIAGNOSTIC_FILES:
                self.rd.file(name).unlink(missing_ok=True)
        else:
            atomic_write_json(self.rd.file("devices.json"), ledger.devices_report())
            for name, content in (device_files or {}).items():
                atomic_write_json(self.rd.file(name), content)
        self.rd.file(CHECKPOINT).unlink(missing_ok=True)
        return self.rd.commit()

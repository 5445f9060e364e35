"""Run directories: atomic writes, and a run that appears only when it is complete.

A run is written into ``<runs_dir>/.<name>-<timestamp>.partial/`` and renamed to
``<runs_dir>/<name>-<timestamp>/`` (one ``os.replace``) when it finished, so a run directory
without the ``.partial`` suffix always holds a complete run; a crashed run leaves only the hidden
partial directory, which holds a per-round checkpoint: ``ppr simulate --resume <partial dir>``
continues it (see :func:`ppr.experiments.simulate.resume`). Single files are written with
:mod:`ppr.io` (temporary file in the same folder, fsync, ``os.replace``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from ppr.errors import ConfigError
from ppr.io import atomic_write_bytes, json_safe

__all__ = ["CHECKPOINT", "Checkpoint", "RunDir", "load_checkpoint", "save_checkpoint"]


class RunDir:
    """A run directory being written. ``final`` is where it lands on :meth:`commit`."""

    def __init__(self, final: Path) -> None:
        self.final = Path(final)
        self.path = self.final.parent / f".{self.final.name}.partial"
        try:
            if self.path.exists():
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True)
        except OSError as exc:  # e.g. a regular file where a folder of the path should be
            raise ConfigError(
                f"{self.final.parent}: cannot create the run directory ({exc.strerror})."
            ) from None

    @classmethod
    def reopen(cls, partial: str | Path) -> RunDir:
        """The interrupted run in ``partial`` (a ``.<name>.partial`` directory), kept as it is."""
        partial = Path(partial)
        name = partial.name
        if not (name.startswith(".") and name.endswith(".partial")) or not partial.is_dir():
            raise ConfigError(
                f"{partial}: not an interrupted run (expected a `.<name>.partial` directory)."
            )
        rd = cls.__new__(cls)
        rd.final = partial.parent / name[1 : -len(".partial")]
        rd.path = partial
        return rd

    @classmethod
    def create(cls, runs_dir: str | Path, name: str) -> RunDir:
        """A fresh ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>[-n]`` (never an existing one)."""
        base = Path(runs_dir)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        final = base / f"{name}-{stamp}"
        n = 1
        while final.exists() or (final.parent / f".{final.name}.partial").exists():
            n += 1
            final = base / f"{name}-{stamp}-{n}"
        return cls(final)

    def file(self, name: str) -> Path:
        return self.path / name

    def commit(self) -> Path:
        """Rename the partial directory to its final name (replacing an older copy)."""
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.path, self.final)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


CHECKPOINT = "checkpoint.npz"


def save_checkpoint(path: Path, state, round_done: int, n_lines: int, extra: dict) -> None:
    """Atomically save the server state (its pytree leaves) after ``round_done``, with ``extra``
    (JSON: the config it was written under, the live ledger, released outputs to reuse)."""
    leaves = jax.tree_util.tree_leaves(state)
    buf = io.BytesIO()
    arrays = {f"arr_{i}": np.asarray(x) for i, x in enumerate(leaves)}
    meta = np.frombuffer(json.dumps(json_safe(extra)).encode(), np.uint8)
    np.savez(buf, round=round_done, lines=n_lines, meta=meta, **arrays)
    atomic_write_bytes(Path(path) / CHECKPOINT, buf.getvalue())


class Checkpoint(NamedTuple):
    """What :func:`save_checkpoint` wrote: rounds done, metrics lines, extra JSON, state leaves."""

    round_done: int
    lines: list[str]
    extra: dict
    leaves: list[np.ndarray]

    def state(self, template) -> Any:
        """The saved state in the structure of ``template`` (a fresh ``server.init(q0)`` of the
        same config); a mismatch is a one-line :class:`ConfigError`."""
        treedef = jax.tree_util.tree_structure(template)
        old = jax.tree_util.tree_leaves(template)
        if len(self.leaves) != len(old) or any(
            a.shape != np.shape(b) for a, b in zip(self.leaves, old, strict=True)
        ):
            raise ConfigError(f"{CHECKPOINT}: checkpoint does not match the run's config.")
        return jax.tree_util.tree_unflatten(
            treedef,
            [
                jax.numpy.asarray(a, np.asarray(b).dtype)
                for a, b in zip(self.leaves, old, strict=True)
            ],
        )


def load_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint of an interrupted run; missing or corrupt: a one-line :class:`ConfigError`."""
    ckpt = Path(path) / CHECKPOINT
    if not ckpt.is_file():
        raise ConfigError(f"{path}: no checkpoint ({CHECKPOINT}): the run cannot be resumed.")
    try:
        with np.load(ckpt) as z:
            done, n_lines = int(z["round"]), int(z["lines"])
            extra = json.loads(bytes(z["meta"]).decode())
            leaves = [z[f"arr_{i}"] for i in range(len(z.files) - 3)]
        lines = Path(path, "metrics.jsonl").read_text(encoding="utf-8").splitlines()[:n_lines]
    except Exception as exc:  # zipfile/numpy/json/OS raise many types on a damaged run
        raise ConfigError(f"{ckpt}: corrupt checkpoint ({type(exc).__name__}).") from None
    return Checkpoint(done, lines, extra, leaves)

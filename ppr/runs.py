"""Run directories: atomic writes, and a run that appears only when it is complete.

A run is written into ``<runs_dir>/.<name>-<timestamp>.partial/`` and renamed to
``<runs_dir>/<name>-<timestamp>/`` (one ``os.replace``) when it finished, so a run directory
without the ``.partial`` suffix always holds a complete run; a crashed run leaves only the hidden
partial directory, which holds a per-round checkpoint: ``ppr simulate --resume <partial dir>``
continues it (see :func:`ppr.pipeline.resume_simulation`). Single files are written with
:mod:`ppr.io` (temporary file in the same folder, fsync, ``os.replace``).
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ppr.errors import ConfigError
from ppr.io import atomic_write_bytes, atomic_write_json, atomic_write_text, json_safe

__all__ = [
    "CHECKPOINT",
    "RunDir",
    "atomic_write_json",
    "atomic_write_text",
    "json_safe",
    "load_checkpoint",
    "save_checkpoint",
]


class RunDir:
    """A run directory being written. ``final`` is where it lands on :meth:`commit`."""

    def __init__(self, final: Path) -> None:
        self.final = Path(final)
        self.path = self.final.parent / f".{self.final.name}.partial"
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)

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


def save_checkpoint(path: Path, state, round_done: int, n_lines: int) -> None:
    """Atomically save the server state (item matrix + optimizer state) after ``round_done``."""
    leaves = jax.tree_util.tree_leaves(state)
    buf = io.BytesIO()
    arrays = {f"arr_{i}": np.asarray(x) for i, x in enumerate(leaves)}
    np.savez(buf, round=round_done, lines=n_lines, **arrays)
    atomic_write_bytes(Path(path) / CHECKPOINT, buf.getvalue())


def load_checkpoint(path: Path, template) -> tuple[Any, int, list[str]]:
    """(state, rounds done, metrics lines) of an interrupted run; ``template`` gives the state's
    structure (a fresh ``server.init(q0)`` of the same config)."""
    ckpt = Path(path) / CHECKPOINT
    if not ckpt.is_file():
        raise ConfigError(f"{path}: no checkpoint ({CHECKPOINT}): the run cannot be resumed.")
    with np.load(ckpt) as z:
        done, n_lines = int(z["round"]), int(z["lines"])
        leaves = [z[f"arr_{i}"] for i in range(len(z.files) - 2)]
    treedef = jax.tree_util.tree_structure(template)
    old = jax.tree_util.tree_leaves(template)
    if len(leaves) != len(old) or any(
        a.shape != np.shape(b) for a, b in zip(leaves, old, strict=True)
    ):
        raise ConfigError(f"{ckpt}: checkpoint does not match the run's config.")
    state = jax.tree_util.tree_unflatten(
        treedef,
        [jax.numpy.asarray(a, dtype=np.asarray(b).dtype) for a, b in zip(leaves, old, strict=True)],
    )
    lines = Path(path, "metrics.jsonl").read_text(encoding="utf-8").splitlines()[:n_lines]
    return state, done, lines

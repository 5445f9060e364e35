"""Run directories: atomic writes, and a run that appears only when it is complete.

A run is written into ``<runs_dir>/.<name>-<timestamp>.partial/`` and renamed to
``<runs_dir>/<name>-<timestamp>/`` (one ``os.replace``) when it finished, so a run directory
without the ``.partial`` suffix always holds a complete run; a crashed run leaves only the hidden
partial directory. Single files are written through a temporary file in the same folder and
``os.replace`` (atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats with the strings "inf" / "-inf" / "nan" (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not hasattr(obj, "__len__"):
        return json_safe(obj.item())
    return obj


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


class RunDir:
    """A run directory being written. ``final`` is where it lands on :meth:`commit`."""

    def __init__(self, final: Path) -> None:
        self.final = Path(final)
        self.path = self.final.parent / f".{self.final.name}.partial"
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)

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

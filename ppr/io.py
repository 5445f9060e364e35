"""Atomic writes of result files (text, JSON, CSV, PNG) and JSON-safe conversion.

Invariant: a result file is either absent or complete. Every writer here writes a temporary file in
the destination's directory, flushes and fsyncs it, then ``os.replace``-s it over the destination
(atomic on POSIX and Windows within one file system), so a reader (or a resumed sweep) never sees a
half-written file, even when the process is killed mid-write.

JSON has no infinity or NaN: :func:`json_safe` writes ``inf`` as the string ``"inf"`` (``"-inf"``)
and NaN as ``null``, the convention of every ``ppr`` JSON output.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_text",
    "json_safe",
    "read_json",
]


def json_safe(obj: Any) -> Any:
    """Recursively convert ``obj`` to plain JSON types: ±inf -> ``"inf"``/``"-inf"``, NaN ->
    ``None``, numpy scalars/arrays -> Python numbers/lists, tuples -> lists, paths -> strings."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    item = getattr(obj, "item", None)  # numpy scalar
    if callable(item) and getattr(obj, "shape", None) == ():
        return json_safe(item())
    tolist = getattr(obj, "tolist", None)  # numpy array
    if callable(tolist):
        return json_safe(tolist())
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


#: Mode of written files: what ``open()`` would give under the process umask (read at import).
_FILE_MODE = _file_mode()


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temporary binary file beside ``path``, then move it into place.

    On any error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp creates 0600; results get the usual umask mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``json_safe(obj)`` as indented, strict JSON (no ``Infinity``/``NaN``) atomically."""
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _csv_cell(v: Any) -> Any:
    v = json_safe(v)
    if v is None:
        return ""
    if isinstance(v, list):
        return " ".join(str(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return v


def atomic_write_csv(
    path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> Path:
    """Write ``rows`` as CSV atomically. ``columns`` defaults to the union of the rows' keys in
    first-seen order; a missing value (or NaN/None) is an empty cell, ``inf`` is ``inf`` and a
    list (e.g. the seeds of a point) is space-separated."""
    rows = list(rows)
    if columns is None:
        seen: dict[str, None] = {}
        for r in rows:
            seen.update(dict.fromkeys(r))
        columns = list(seen)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_csv_cell(r.get(c)) for c in columns])
    return atomic_write_text(path, buf.getvalue())

"""Dataset manifests (``datasets/manifest.toml``) and file verification.

The manifest lists the known MovieLens releases: loader, expected counts, per-file checksums
(md5 / sha256 / git blob id, whichever are known) and where to get them. :func:`verify_dataset`
checks the files in a directory against one entry; nothing is downloaded, nothing is written.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import NamedTuple

from ppr.data.interactions import Interactions
from ppr.errors import DataError

DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "datasets" / "manifest.toml"


class FileCheck(NamedTuple):
    """One verification row: ``ok`` is False for a missing file or any checksum/size mismatch."""

    file: str
    ok: bool
    detail: str


def load_manifest(path: Path | None = None) -> dict:
    """The ``datasets`` table of the manifest (name -> entry)."""
    path = Path(path) if path is not None else DEFAULT_MANIFEST
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: dataset manifest not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: invalid manifest ({exc})") from None
    return data.get("datasets", {})


def file_digests(path: Path) -> dict[str, str | int]:
    """``bytes``, ``md5``, ``sha256``, ``git_blob`` (as ``git hash-object``) of a file, one pass."""
    size = path.stat().st_size
    md5, sha256, blob = hashlib.md5(), hashlib.sha256(), hashlib.sha1()
    blob.update(f"blob {size}\0".encode())
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            md5.update(chunk)
            sha256.update(chunk)
            blob.update(chunk)
    return {"bytes": size, "md5": md5.hexdigest(), "sha256": sha256.hexdigest(),
            "git_blob": blob.hexdigest()}  # fmt: skip


def guess_dataset(path: Path, manifest: dict | None = None) -> str:
    """Manifest entry whose files are most present under ``path`` (ties: the folder name)."""
    manifest = load_manifest() if manifest is None else manifest
    folder = path if path.is_dir() else path.parent
    best, best_key = None, (0, False)
    for name, entry in manifest.items():
        present = sum((folder / f["name"]).is_file() for f in entry.get("files", []))
        key = (present, folder.name in (name, entry.get("folder")))
        if present and key > best_key:
            best, best_key = name, key
    if best is None:
        raise DataError(f"{folder}: no known dataset files here; name the dataset explicitly")
    return best


def verify_dataset(
    name: str, path: str | Path, inter: Interactions | None = None, manifest: dict | None = None
) -> list[FileCheck]:
    """Check each manifest file of ``name`` under ``path`` (a directory, or a file in it).

    A present file is ok when every known digest (and size) matches; with no digest known it is
    reported as present. With ``inter`` (the loaded table) a ``(counts)`` row compares users,
    items and ratings with the manifest's expected counts.
    """
    manifest = load_manifest() if manifest is None else manifest
    if name not in manifest:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(manifest))}")
    entry = manifest[name]
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not folder.is_dir():
        raise DataError(f"{folder}: no such directory")
    rows: list[FileCheck] = []
    for spec in entry.get("files", []):
        f = folder / spec["name"]
        if not f.is_file():
            rows.append(FileCheck(spec["name"], False, "missing"))
            continue
        got = file_digests(f)
        keys = [k for k in ("bytes", "md5", "sha256", "git_blob") if k in spec]
        bad = [k for k in keys if str(got[k]) != str(spec[k])]
        if bad:
            detail = "; ".join(f"{k} mismatch (expected {spec[k]}, got {got[k]})" for k in bad)
        elif keys:
            detail = ", ".join(keys) + " ok"
        else:
            detail = f"present ({got['bytes']} bytes; no checksum known)"
        rows.append(FileCheck(spec["name"], not bad, detail))
    if inter is not None and all(k in entry for k in ("users", "items", "ratings")):
        want = (entry["users"], entry["items"], entry["ratings"])
        got_counts = (inter.n_users, inter.n_items, len(inter))
        detail = "{} users, {} items, {} ratings".format(*got_counts)
        if got_counts != want:
            detail += " (expected {} / {} / {})".format(*want)
        rows.append(FileCheck("(counts)", got_counts == want, detail))
    return rows

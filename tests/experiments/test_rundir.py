"""Run directories and atomic writes (ppr.experiments.rundir)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from ppr.experiments.rundir import RunDir
from ppr.io import atomic_write_json, atomic_write_text, json_safe


def test_json_safe_strict():
    obj = {"a": math.inf, "b": [-math.inf, math.nan, 1.5], 3: np.float32(2.0), "n": np.int64(4)}
    out = json_safe(obj)
    # NaN -> null (the documented contract of ppr.io.json_safe, re-exported here)
    assert out == {"a": "inf", "b": ["-inf", None, 1.5], "3": 2.0, "n": 4}
    json.dumps(out, allow_nan=False)  # strict JSON
    assert json_safe(np.float64(np.inf)) == "inf"


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert sorted(os.listdir(p.parent)) == ["f.txt"]
    atomic_write_json(tmp_path / "x.json", {"v": math.inf})
    assert json.loads((tmp_path / "x.json").read_text()) == {"v": "inf"}


def test_atomic_write_failure_leaves_no_temp(tmp_path):
    target = tmp_path / "d"
    (target / "inner").mkdir(parents=True)  # os.replace onto a non-empty directory fails
    with pytest.raises(OSError):
        atomic_write_text(target, "x")
    assert sorted(os.listdir(tmp_path)) == ["d"]  # the temporary file was removed
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "f.json", {"bad": object()})
    assert sorted(os.listdir(tmp_path)) == ["d"]


def test_run_dir_commit_and_abort(tmp_path):
    rd = RunDir.create(tmp_path, "exp")
    assert rd.path.name.startswith(".exp-") and rd.path.name.endswith(".partial")
    assert not rd.final.exists()
    atomic_write_text(rd.file("a.txt"), "x")
    final = rd.commit()
    assert final == rd.final and (final / "a.txt").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == [final.name]

    rd2 = RunDir.create(tmp_path, "exp")  # same second: a fresh, distinct name
    assert rd2.final != final and not rd2.final.exists()
    atomic_write_text(rd2.file("b.txt"), "y")
    rd2.abort()
    assert sorted(os.listdir(tmp_path)) == [final.name]


def test_run_dir_recommit_replaces(tmp_path):
    final = tmp_path / "r"
    a = RunDir(final)
    atomic_write_text(a.file("old.txt"), "1")
    a.commit()
    b = RunDir(final)
    atomic_write_text(b.file("new.txt"), "2")
    b.commit()
    assert sorted(os.listdir(final)) == ["new.txt"]

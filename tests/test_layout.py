"""Structure rules: short functions in the composition root and the trainer, every package
installed, layers enforced by import-linter (the contracts live in pyproject.toml)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 60


def _functions(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node.end_lineno - node.lineno + 1


def test_composition_root_and_trainer_functions_are_short():
    files = [
        *sorted((ROOT / "ppr" / "experiments").glob("*.py")),
        ROOT / "ppr" / "federated" / "trainer.py",
    ]
    long = [(f.name, n, k) for f in files for n, k in _functions(f) if k >= MAX_LINES]
    assert not long, long


def test_every_package_is_installed():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(meta["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ppr").rglob("__init__.py")
    }
    assert found | {"ppr_cli"} == listed
    assert meta["package-dir"] == {"ppr_cli": "cli"}


def test_import_layers_hold():
    # the script beside this interpreter (the README runs .venv/bin/python without activating)
    beside = Path(sys.executable).parent / "lint-imports"
    exe = str(beside) if beside.is_file() else shutil.which("lint-imports")
    assert exe, "import-linter is a dev dependency: pip install -e '.[dev]'"
    r = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]

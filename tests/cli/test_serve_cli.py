"""`ppr serve` through typer's CliRunner: bad input is one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

from ppr_cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


def test_serve_missing_run_dir(tmp_path: Path) -> None:
    res = runner.invoke(app, ["serve", "--run", str(tmp_path / "nope")])
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0 and "does not exist" in res.output


def test_serve_run_without_model(tmp_path: Path) -> None:
    res = runner.invoke(app, ["serve", "--run", str(tmp_path)])
    assert res.exit_code == 2 and "no released model" in res.output


def test_serve_bad_port(tmp_path: Path) -> None:
    res = runner.invoke(app, ["serve", "--run", str(tmp_path), "--port", "70000"])
    assert res.exit_code == 2 and "port" in res.output

"""`ppr data synth` / `ppr data info` through Typer's CliRunner (only the data sub-app)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from ppr_cli.data import app as data_app
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
root = typer.Typer()
root.add_typer(data_app, name="data")
runner = CliRunner()


def run(*args: str):
    return runner.invoke(root, ["data", *args])


def real(sub: str) -> Path:
    d = Path(os.environ.get("PPR_DATA_DIR", "../shared/datasets"))
    p = (d if d.is_absolute() else ROOT / d) / sub
    if not p.exists():
        pytest.skip(f"real MovieLens data not found at {p} (set PPR_DATA_DIR)")
    return p


def test_synth_then_info_json(tmp_path):
    out = tmp_path / "s.csv"
    res = run("synth", str(out), "--users", "50", "--items", "40", "--interactions", "900",
              "--seed", "3", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    made = json.loads(res.stdout)  # exactly one JSON object
    assert made["path"] == str(out) and made["users"] == 50 and out.is_file()
    res = run("info", str(out), "--json")
    assert res.exit_code == 0, res.output
    st = json.loads(res.stdout)
    assert (st["users"], st["items"], st["interactions"]) == (
        50,
        made["items"],
        made["interactions"],
    )
    assert st["ratings"] == made["ratings"]


def test_synth_and_info_tables(tmp_path):
    out = tmp_path / "s.parquet"
    res = run("synth", str(out), "--users", "30", "--items", "20", "--interactions", "300")
    assert res.exit_code == 0 and "wrote" in res.stdout and "user activity" in res.stdout
    res = run("info", str(out), "--source", "parquet")
    assert res.exit_code == 0 and "interactions" in res.stdout and "300" in res.stdout


def test_info_columns_option(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("who,what\na,x\nb,x\nb,y\n")
    res = run("info", str(f), "--source", "csv", "--columns", "user=who,item=what", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["users"] == 2
    res = run("info", str(f), "--columns", "user", "--json")
    assert res.exit_code == 2 and "role=column" in res.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("info", "/nonexistent/x"), "no such file or directory"),
        (("info", ".", "--source", "ml-2m"), "--source must be one of"),
        (("synth", "out.csv", "--users", "0"), "`data.synthetic.n_users` must be"),
        (("synth", "out.xlsx"), "unknown output format"),
    ],
)
def test_errors_one_line_exit_2(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    res = run(*args)
    assert res.exit_code == 2
    assert needle in res.stderr and res.stderr.count("\n") == 1 and res.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing half written


def test_malformed_file_exit_2(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t5\t1\n1\tx\t5\t1\n")
    res = run("info", str(tmp_path))
    assert res.exit_code == 2 and "u.data: line 2" in res.stderr


def test_info_verify_real(tmp_path):
    d = real("ml-100k")
    res = run("info", str(d), "--verify", "--json")
    assert res.exit_code == 0, res.output
    v = json.loads(res.stdout)["verify"]
    assert v["dataset"] == "ml-100k" and v["ok"] and len(v["files"]) == 8


def test_info_verify_failure_exit_1(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t5\t1\n")
    res = run("info", str(tmp_path), "--verify")
    assert res.exit_code == 1 and "FAIL" in res.stdout and "missing" in res.stdout

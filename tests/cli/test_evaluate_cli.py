"""`ppr evaluate` through Typer's CliRunner: the serving modes side by side on the run's split,
and one-line errors (exit 2)."""

from __future__ import annotations

import json
import shutil

from ppr_cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


def evaluate(*args: str):
    return runner.invoke(app, ["evaluate", *args])


def test_exact_and_local_side_by_side(run_dir):
    out = {}
    for mode in ("exact", "local"):
        r = evaluate("--run", str(run_dir), "--serving", mode, "--json")
        assert r.exit_code == 0, r.stderr
        out[mode] = json.loads(r.stdout)
    summary = json.loads((run_dir / "summary.json").read_text())["metrics"]
    for mode, res in out.items():
        assert res["mode"] == mode and res["k"] == 20
        assert 0 < res["recall@20"] <= 1 and 0 < res["ndcg@20"] <= 1
        assert res["evaluated_users"] == summary["evaluated_users"]
        assert res["device_bytes"] > 0 and res["latency"]["p50_ms"] > 0
    assert abs(out["exact"]["recall@20"] - summary["recall@20"]) <= 2e-3
    assert abs(out["local"]["recall@20"] - out["exact"]["recall@20"]) <= 0.005
    table = evaluate("--run", str(run_dir), "--serving", "local")
    assert table.exit_code == 0 and "recall@20" in table.stdout


def test_errors_are_one_line(run_dir, tmp_path):
    bare = tmp_path / "no-model"
    bare.mkdir()
    shutil.copy(run_dir / "config.toml", bare / "config.toml")
    cases = [
        (["--run", str(tmp_path / "nope"), "--serving", "local"], "no such run"),
        (["--run", str(bare), "--serving", "exact"], "no released model"),
        (["--run", str(run_dir), "--serving", "psychic"], "--serving must be one of"),
    ]
    for args, text in cases:
        r = evaluate(*args)
        assert r.exit_code == 2 and r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and text in lines[0], r.stderr


def test_hybrid_reports_request_bytes_and_latency(run_dir):
    r = evaluate("--run", str(run_dir), "--serving", "hybrid", "--max-users", "6", "--json")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["mode"] == "hybrid" and res["evaluated_users"] == 6
    req = res["requests"]
    assert req["n"] == 6 and req["bytes_up_mean"] >= 0 and req["bytes_down_mean"] > 0
    assert req["context_uploads"] >= 1 and req["latency"]["p50_ms"] > 0

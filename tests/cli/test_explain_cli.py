"""`ppr explain` through Typer's CliRunner: shares that add up to the score within 1e-5, and
one-line errors (exit 2)."""

from __future__ import annotations

import json
import shutil

import numpy as np
from ppr_cli.main import app
from typer.testing import CliRunner

from ppr.experiments.serving import open_run

runner = CliRunner()


def explain(*args: str):
    return runner.invoke(app, ["explain", *args])


def test_shares_add_up_to_the_score(run_dir):
    run = open_run(run_dir)
    for u in np.flatnonzero(run.train.counts() > 1)[:5]:
        raw = str(run.user_ids[u])
        r = runner.invoke(app, ["recommend", "--run", str(run_dir), "--user", raw, "--json"])
        for row in json.loads(r.stdout)["items"][:2]:
            e = explain("--run", str(run_dir), "--user", raw, "--item", str(row["item"]), "--json")
            assert e.exit_code == 0, e.stderr
            res = json.loads(e.stdout)
            total = sum(c["share"] for c in res["contributions"]) + res["others"]
            assert abs(total - res["score"]) <= 1e-5
            assert abs(res["score"] - row["score"]) <= 1e-5
            assert res["own_items"] == run.train.row(int(u)).size and not res["own_item"]
            shares = [c["share"] for c in res["contributions"]]
            assert shares == sorted(shares, reverse=True)


def test_all_shares_and_table(run_dir):
    r = explain("--run", str(run_dir), "--user", "3", "--item", "7", "--top", "0", "--json")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert len(res["contributions"]) == res["own_items"] and res["others"] == 0.0
    t = explain("--run", str(run_dir), "--user", "3", "--item", "7")
    assert t.exit_code == 0 and "shares add up to the score" in t.stdout


def test_errors_are_one_line(run_dir, tmp_path):
    cases = [
        (["--run", str(tmp_path / "nope"), "--user", "1", "--item", "1"], "no such run"),
        (["--run", str(run_dir), "--user", "no-one", "--item", "1"], "unknown user"),
        (["--run", str(run_dir), "--user", "1", "--item", "no-item"], "unknown item"),
    ]
    bare = tmp_path / "no-model"
    bare.mkdir()
    shutil.copy(run_dir / "config.toml", bare / "config.toml")
    cases.append((["--run", str(bare), "--user", "1", "--item", "1"], "no released model"))
    for args, text in cases:
        r = explain(*args)
        assert r.exit_code == 2 and r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and text in lines[0], r.stderr

"""`ppr recommend` through Typer's CliRunner: items with titles and scores, never the user's own
items, explanations that add up, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import shutil

import numpy as np
from ppr_cli.main import app
from typer.testing import CliRunner

from ppr.experiments.serving import open_run

runner = CliRunner()


def recommend(*args: str):
    return runner.invoke(app, ["recommend", *args])


def _one_line_error(r, text: str) -> None:
    assert r.exit_code == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], r.stderr


def test_json_never_recommends_seen_items(run_dir):
    run = open_run(run_dir)
    for u in np.flatnonzero(run.train.counts() > 0)[:15]:
        raw = str(run.user_ids[u])
        r = recommend("--run", str(run_dir), "--user", raw, "--k", "12", "--json")
        assert r.exit_code == 0, r.stderr
        res = json.loads(r.stdout)
        seen = set(run.model.item_ids[run.train.row(int(u))].tolist())
        got = [row["item"] for row in res["items"]]
        assert len(got) == 12 == len(set(got)) and not seen & set(got)
        scores = [row["score"] for row in res["items"]]
        assert scores == sorted(scores, reverse=True)
        assert all(row["title"].startswith("Synthetic movie") for row in res["items"])


def test_explain_flag_adds_shares_that_sum_to_the_score(run_dir):
    r = recommend("--run", str(run_dir), "--user", "5", "--k", "3", "--explain", "--json")
    assert r.exit_code == 0, r.stderr
    for row in json.loads(r.stdout)["items"]:
        ex = row["explanation"]
        total = sum(c["share"] for c in ex["contributions"]) + ex["others"]
        assert abs(total - row["score"]) <= 1e-5


def test_table_output(run_dir):
    r = recommend("--run", str(run_dir), "--user", "5", "--explain")
    assert r.exit_code == 0, r.stderr
    assert "Synthetic movie" in r.stdout and "because you have" in r.stdout


def test_errors_are_one_line(run_dir, tmp_path):
    _one_line_error(recommend("--run", str(tmp_path / "nope"), "--user", "1"), "no such run")
    bare = tmp_path / "no-model"
    bare.mkdir()
    shutil.copy(run_dir / "config.toml", bare / "config.toml")
    _one_line_error(recommend("--run", str(bare), "--user", "1"), "no released model")
    _one_line_error(recommend("--run", str(run_dir), "--user", "no-one"), "unknown user")
    r = recommend("--run", str(run_dir), "--user", "1", "--server", "http://127.0.0.1:9")
    _one_line_error(r, "--refine")


def test_refine_goes_through_hybrid_serving(run_dir):
    run = open_run(run_dir)
    u = int(np.argmax(run.train.counts()))
    r = recommend("--run", str(run_dir), "--user", str(run.user_ids[u]), "--refine", "--json")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    seen = set(run.model.item_ids[run.train.row(u)].tolist())
    got = [row["item"] for row in res["items"]]
    assert res["mode"] == "hybrid" and len(got) == 10 and not seen & set(got)
    assert res["requests"]["bytes_up"] > 0 and res["requests"]["bytes_down"] > 0

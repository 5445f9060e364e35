"""`ppr cold-start` through Typer's CliRunner: table, JSON, plot, one-line errors (exit 2)."""

from __future__ import annotations

import json
import shutil

import pytest
from ppr_cli.main import app
from typer.testing import CliRunner

from ppr.config import load_config
from ppr.experiments import simulate

runner = CliRunner()
TINY = {
    "name": "cs",
    "aggregation.mode": "plaintext",
    "privacy.epsilon": 8.0,
    "privacy.noise_seed": 0,
    "privacy.popularity_blend": 0.0,
    "federated.rounds": 2,
    "baselines.centralized": False,
    "data.synthetic.n_users": 200,
    "data.synthetic.n_items": 60,
    "data.synthetic.n_interactions": 6000,
    "model.dim": 8,
    "split.protocol": "held_out_users",
    "split.held_out_fraction": 0.25,
    "cold_start.enabled": True,
    "cold_start.min_cohort_size": 10,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return simulate(load_config(None, TINY | {"output.runs_dir": str(runs)}), write=True).run_dir


def test_table_json_and_plot(run_dir, tmp_path) -> None:
    res = runner.invoke(app, ["cold-start", "--run", str(run_dir)])
    assert res.exit_code == 0, res.output
    for word in ("global", "cohort", "fold-in + prior", "recall@20", "cohorts released", "K/2"):
        assert word in res.output
    png = tmp_path / "cs.png"
    res = runner.invoke(app, ["cold-start", "--run", str(run_dir), "--json", "--plot", str(png)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["k"] == 20 and {r["method"] for r in out["rows"]} >= {"global", "cohort"}
    assert out["info"]["epsilon_cohorts"] == 1.0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_are_one_line(run_dir, tmp_path) -> None:
    res = runner.invoke(app, ["cold-start", "--run", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not a run directory" in res.output
    assert len(res.output.strip().splitlines()) == 1
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "cohorts.json").unlink()
    res = runner.invoke(app, ["cold-start", "--run", str(copy)])
    assert res.exit_code == 2 and "cold_start.enabled" in res.output
    (copy / "cohorts.json").write_text("{not json")
    res = runner.invoke(app, ["cold-start", "--run", str(copy)])
    assert res.exit_code == 2 and "not a cohort release" in res.output

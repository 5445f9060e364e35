"""`ppr tune`: bad input is one line and exit 2 with nothing written; a run writes the chosen
config and prints the privacy statement of the choice."""

from __future__ import annotations

import json

from ppr_cli.main import app
from typer.testing import CliRunner

TUNE = """
name = "tiny"
[data.synthetic]
n_users = 120
n_items = 60
n_interactions = 3000
[model]
dim = 4
[federated]
rounds = 2
sampling_rate = 0.5
[privacy]
noise_seed = 0
[baselines]
centralized = false
[tune]
epsilon = 4.0
grid = {GRID}
"""


def _write(tmp_path, grid):
    p = tmp_path / "tune.toml"
    p.write_text(TUNE.replace("{GRID}", grid))
    return p


def test_bad_grid_is_one_line_exit_2_nothing_written(tmp_path):
    out = tmp_path / "sweep.toml"
    cfg = _write(tmp_path, '{ "seed" = [1, 2] }')
    res = CliRunner().invoke(
        app, ["tune", str(cfg), "--out", str(out), "--dir", str(tmp_path / "d")]
    )
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and "tune.grid" in res.stderr
    assert not out.exists()


def test_unknown_key_is_one_line(tmp_path):
    cfg = _write(tmp_path, '{ "model.dim" = [2] }')
    res = CliRunner().invoke(app, ["tune", str(cfg), "--set", "tune.nope=1"])
    assert res.exit_code == 2 and "tune.nope" in res.stderr and res.stderr.count("\n") == 1


def test_tune_json_writes_the_chosen_config(tmp_path):
    out = tmp_path / "sweep.toml"
    cfg = _write(tmp_path, '{ "model.dim" = [2, 4] }')
    res = CliRunner().invoke(
        app,
        ["tune", str(cfg), "--out", str(out), "--dir", str(tmp_path / "d"), "--json", "-w", "1"],
    )
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["chosen"]["model.dim"] in (2, 4)
    assert obj["privacy"]["included_in_epsilon"] is False
    assert "NOT included" in obj["privacy"]["statement"]
    assert obj["diagnostics"].startswith("the arms' exact validation metrics are non-private")
    assert f"dim = {obj['chosen']['model.dim']}" in out.read_text()

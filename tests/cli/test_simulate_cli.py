"""`ppr simulate` through Typer's CliRunner: --json output and one-line user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ppr_cli.main import app
from typer.testing import CliRunner

from ppr.config import load_config

runner = CliRunner()
SMALL = [
    "--set",
    "data.synthetic.n_users=100",
    "--set",
    "data.synthetic.n_items=80",
    "--set",
    "data.synthetic.n_interactions=3000",
    "--set",
    "model.dim=8",
    "--set",
    "baselines.centralized_iterations=3",
]


def simulate(*args: str):
    return runner.invoke(app, ["simulate", *args])


def test_json_prints_one_object(tmp_path):
    runs = tmp_path / "runs"
    r = simulate(
        "--json",
        *SMALL,
        "--set",
        "federated.rounds=2",
        "--set",
        f"output.runs_dir={json.dumps(str(runs))}",
    )
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    for key in ("recall@20", "ndcg@20"):
        assert 0.0 <= summary["metrics"][key] <= 1.0
        assert key in summary["baselines"]["popularity"]
        assert key in summary["baselines"]["centralized"]
    assert summary["rounds"] == 2
    run_dir = runs / summary["run_dir"].split("/")[-1]
    assert str(run_dir) == summary["run_dir"] and run_dir.is_dir()
    assert (run_dir / "summary.json").is_file()


def test_table_output(tmp_path):
    r = simulate(
        *SMALL,
        "--quiet",
        "--set",
        "federated.rounds=1",
        "--set",
        f"output.runs_dir={json.dumps(str(tmp_path))}",
    )
    assert r.exit_code == 0, r.stderr
    assert "federated MF (CKKS)" in r.stdout and "private popularity" in r.stdout
    # the embedded default is private: its guarantee, accountant and noise mode are printed
    assert "-DP at user level [pld]" in r.stdout and "run directory:" in r.stdout
    assert "noise: secret (OS entropy, never written)" in r.stdout


def test_embedded_default_is_the_shipped_config():
    from ppr.config import EMBEDDED_DEFAULT

    shipped = (Path(__file__).resolve().parents[2] / "configs" / "default.toml").read_text()
    assert EMBEDDED_DEFAULT.read_text() == shipped
    cfg = load_config(EMBEDDED_DEFAULT)
    assert cfg.aggregation.mode == "ckks" and cfg.privacy.epsilon < float("inf")


def _bad_toml(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[federated\nrounds = 2\n")
    return [str(p)]


def _good_toml_missing_data(tmp_path):
    p = tmp_path / "ml.toml"
    p.write_text(f'[data]\nsource = "ml-100k"\npath = "{tmp_path / "no-such-dir"}"\n')
    return [str(p)]


ERRORS = {
    "unknown key": (lambda t: ["--set", "federated.roundz=2"], "roundz"),
    "wrong type": (lambda t: ["--set", 'federated.rounds="many"'], "federated.rounds"),
    "out of range": (lambda t: ["--set", "federated.sampling_rate=1.5"], "sampling_rate"),
    "missing config": (lambda t: [str(t / "absent.toml")], "absent.toml"),
    "missing data": (_good_toml_missing_data, "no-such-dir"),
    "malformed toml": (_bad_toml, "invalid TOML"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_user_errors_exit_2_one_line(tmp_path, case):
    make_args, needle = ERRORS[case]
    runs = tmp_path / "runs"
    r = simulate(
        *make_args(tmp_path), "--json", "--set", f"output.runs_dir={json.dumps(str(runs))}"
    )
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not runs.exists() or list(runs.iterdir()) == []


def test_resume_finishes_an_interrupted_run(tmp_path):
    """An interrupted run (left as a hidden .partial directory) is finished by --resume."""
    from ppr.experiments.simulate import simulate

    cfg = load_config(
        None,
        {
            "federated.rounds": 3,
            "baselines.centralized": False,
            "output.runs_dir": str(tmp_path),
            "name": "cut",
        },
    )

    def boom(done: int, total: int, rec: dict) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(cfg, progress=boom)
    (partial,) = list(tmp_path.iterdir())
    res = runner.invoke(app, ["simulate", "--resume", str(partial), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["run_dir"] == str(tmp_path / partial.name[1 : -len(".partial")])
    assert not partial.exists()
    # a finished run cannot be resumed; --resume takes no other config
    bad = runner.invoke(app, ["simulate", "--resume", out["run_dir"]])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ")
    both = runner.invoke(app, ["simulate", "--resume", str(partial), "--set", "seed=1"])
    assert both.exit_code == 2


@pytest.mark.parametrize(
    ("sets", "expect"),
    [
        (
            ["aggregation.mode='ckks'", "aggregation.poly_modulus_degree=2048"],
            "aggregation.poly_modulus_degree",
        ),
        (["evaluation.k=500"], "`evaluation.k` must be at most the number of items"),
        (["privacy.epsilon=1.0", "data.synthetic.n_users=5"], "20 devices"),
    ],
)
def test_bad_inputs_one_line_exit_2_nothing_left(tmp_path, sets, expect):
    runs = tmp_path / "runs"
    args = [*SMALL, "--quiet", "--set", f"output.runs_dir={json.dumps(str(runs))}"]
    for s in sets:
        args += ["--set", s]
    r = simulate(*args)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert expect in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not runs.exists() or not any(runs.iterdir())


def test_output_dir_under_a_regular_file_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = simulate(
        *SMALL,
        "--quiet",
        "--set",
        "federated.rounds=1",
        "--set",
        f"output.runs_dir={json.dumps(str(blocker / 'runs'))}",
    )
    assert r.exit_code == 2 and "cannot create the run directory" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and blocker.read_text() == "x"


def test_seeded_noise_is_labelled_on_the_cli(tmp_path):
    r = simulate(
        *SMALL,
        "--quiet",
        "--set",
        "federated.rounds=1",
        "--set",
        "privacy.epsilon=4.0",
        "--set",
        "privacy.noise_seed=3",
        "--set",
        f"output.runs_dir={json.dumps(str(tmp_path))}",
    )
    assert r.exit_code == 0, r.stderr
    assert "noise: seeded (privacy.noise_seed = 3)" in r.stdout
    assert "not included in epsilon" in r.stdout and "-DP at user level" in r.stdout

"""`ppr privacy` via CliRunner on a tiny app wrapping only the privacy sub-app."""

import json

import pytest
import typer
from ppr_cli import privacy
from typer.testing import CliRunner

from ppr.privacy import dpfedavg_event, epsilon_of

app = typer.Typer()
app.add_typer(privacy.app, name="privacy")
runner = CliRunner()


def test_epsilon_table() -> None:
    r = runner.invoke(
        app,
        [
            "privacy",
            "epsilon",
            "--noise-multiplier",
            "1.0",
            "--sampling-rate",
            "0.1",
            "--rounds",
            "100",
            "--delta",
            "1e-5",
        ],
    )
    assert r.exit_code == 0, r.stderr
    expected = epsilon_of(dpfedavg_event(1.0, 0.1, 100), 1e-5, "pld")  # the default
    assert "epsilon" in r.stdout and f"{expected:.4f}" in r.stdout


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_epsilon_json(accountant: str) -> None:
    r = runner.invoke(
        app,
        [
            "privacy",
            "epsilon",
            "--noise-multiplier",
            "1.2",
            "--sampling-rate",
            "0.05",
            "--rounds",
            "50",
            "--delta",
            "1e-5",
            "--accountant",
            accountant,
            "--json",
        ],
    )
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 1
    out = json.loads(r.stdout)
    expected = epsilon_of(dpfedavg_event(1.2, 0.05, 50), 1e-5, accountant)
    assert out["epsilon"] == pytest.approx(expected, abs=1e-9)
    assert out["accountant"] == accountant


def test_calibrate_json_and_table() -> None:
    args = [
        "privacy",
        "calibrate",
        "--epsilon",
        "3",
        "--sampling-rate",
        "0.1",
        "--rounds",
        "30",
        "--delta",
        "1e-5",
    ]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    eps = epsilon_of(dpfedavg_event(out["noise_multiplier"], 0.1, 30), 1e-5)
    assert 0.99 * 3 <= eps <= 3 and out["epsilon"] == pytest.approx(eps)
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "noise multiplier" in r.stdout
    assert f"{out['noise_multiplier']:.4f}" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["epsilon", "-s", "1", "-q", "1.5", "-T", "10", "-d", "1e-5"], "`sampling_rate`"),
        (["epsilon", "-s", "1", "-q", "0", "-T", "10", "-d", "1e-5"], "`sampling_rate`"),
        (["epsilon", "-s", "-1", "-q", "0.1", "-T", "10", "-d", "1e-5"], "`noise_multiplier`"),
        (["epsilon", "-s", "1", "-q", "0.1", "-T", "10", "-d", "1"], "`delta`"),
        (["calibrate", "-e", "1", "-q", "0.1", "-T", "10", "-d", "0"], "`delta`"),
        (
            ["calibrate", "-e", "1", "-q", "0.1", "-T", "10", "-d", "1e-5", "-a", "x"],
            "`accountant`",
        ),
    ],
)
def test_bad_values_exit_2_with_one_line(args: list[str], message: str) -> None:
    r = runner.invoke(app, ["privacy", *args])
    assert r.exit_code == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]

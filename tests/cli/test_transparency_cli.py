"""`ppr transparency`: JSON, Markdown and HTML forms; one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest
from ppr_cli.main import app
from transparency_testutils import controlled_run
from typer.testing import CliRunner

from ppr.experiments.serving import open_run

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    _, run_dir = controlled_run(tmp_path_factory.getbasetemp())
    return run_dir, str(open_run(run_dir).user_ids[0])


def _invoke(*args: str):
    return runner.invoke(app, ["transparency", *args])


def test_json_markdown_and_html(run, tmp_path):
    run_dir, user = run
    res = _invoke("--run", str(run_dir), "--user", user, "--json")
    assert res.exit_code == 0, res.output
    page = json.loads(res.stdout)
    assert page["user"] == user and {"device", "messages", "privacy", "settings"} <= set(page)
    res = _invoke("--run", str(run_dir), "--user", user, "--markdown")
    assert res.exit_code == 0 and res.stdout.startswith(f"# Transparency for user {user}")
    assert "## What left your device" in res.stdout
    out = tmp_path / "page.html"
    res = _invoke("--run", str(run_dir), "--user", user, "--html", str(out))
    assert res.exit_code == 0 and out.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "{missing}", "--user", "1"], "no such run directory"),
        (["--run", "{run}", "--user", "nobody"], "unknown user 'nobody'"),
        (["--run", "{run}", "--user", "1", "--json", "--markdown"], "choose one of"),
        (["--run", "{run}", "--user", "1", "--html", "{missing}/p.html"], "no such directory"),
    ],
)
def test_errors_are_one_line_and_exit_2(run, tmp_path, args, message):
    run_dir, _ = run
    fill = {"missing": str(tmp_path / "missing"), "run": str(run_dir)}
    res = _invoke(*[a.format(**fill) for a in args])
    assert res.exit_code == 2
    assert message in res.stderr and res.stderr.count("\n") == 1 and res.stdout == ""

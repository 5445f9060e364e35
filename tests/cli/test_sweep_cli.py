"""`ppr sweep` through Typer's CliRunner on the real `ppr` app (tiny synthetic sweeps)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from data_testutils import TINY_SWEEP_BASE
from ppr_cli.main import app
from typer.testing import CliRunner

runner = CliRunner()

TINY = [
    *TINY_SWEEP_BASE,
    'sweep.epsilons=["inf", 3.0]',
    "sweep.seeds=[0, 1]",
]


def sweep(*args: str, sets: list[str] = TINY):
    argv = ["sweep"]
    for s in sets:
        argv += ["--set", s]
    return runner.invoke(app, [*argv, *args])


def test_json_points_and_files(tmp_path: Path) -> None:
    out = tmp_path / "s"
    r = sweep("--out", str(out), "--workers", "1", "--json")
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 1  # one JSON object, no progress on stdout
    res = json.loads(r.stdout)
    assert res["out_dir"] == str(out) and res["ran"] == 4 and res["skipped"] == 0
    pts = res["points"]
    assert [p["epsilon"] for p in pts] == ["inf", 3.0]
    for p in pts:
        assert p["seeds"] == [0, 1]
        assert 0.0 <= p["recall@10"] <= 1.0 and p["recall@10_std"] >= 0.0
        assert "ndcg@10" in p and "popularity_recall@10" in p
    assert pts[0]["noise_multiplier"] == 0.0 and pts[1]["noise_multiplier"] > 0.0
    for name in ("sweep_config.toml", "points.json", "points.csv", "runs.csv",
                 "recall_vs_epsilon.png"):  # fmt: skip
        assert (out / name).is_file(), name
    assert json.loads((out / "points.json").read_text()) == pts
    # the recall of a point is the mean over the seeds' run summaries
    recalls = [
        json.loads((out / "points" / f"eps-3_seed-{s}" / "summary.json").read_text())["metrics"][
            "recall@10"
        ]
        for s in (0, 1)
    ]
    assert math.isclose(pts[1]["recall@10"], sum(recalls) / 2, rel_tol=1e-12)

    # resume: nothing left to run; without --resume the directory is refused
    r = sweep("--out", str(out), "--resume", "--json", "--no-plot")
    assert r.exit_code == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["ran"] == 0 and again["skipped"] == 4 and again["points"] == pts
    r = sweep("--out", str(out), "--json")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("error:") and "--resume" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_table_and_no_plot(tmp_path: Path) -> None:
    out = tmp_path / "t"
    r = sweep("--out", str(out), "--no-plot", "-q", sets=[*TINY, "sweep.seeds=[0]"])
    assert r.exit_code == 0, r.stderr
    assert "recall@10" in r.stdout and "∞" in r.stdout and "NDCG@10" in r.stdout
    points = json.loads((out / "points.json").read_text())
    assert f"{points[0]['recall@10']:.4f}" in r.stdout
    assert (out / "points.csv").is_file() and not (out / "recall_vs_epsilon.png").exists()


def test_grid_over_another_key(tmp_path: Path) -> None:
    grid = 'sweep.grid={"federated.rounds" = [1, 2]}'
    r = sweep("--out", str(tmp_path / "g"), "--json", "--no-plot",
              sets=[*TINY, "sweep.seeds=[0]", grid])  # fmt: skip
    assert r.exit_code == 0, r.stderr
    pts = json.loads(r.stdout)["points"]
    assert [(p["epsilon"], p["federated.rounds"]) for p in pts] == [
        ("inf", 1), ("inf", 2), (3.0, 1), (3.0, 2)
    ]  # fmt: skip


def test_user_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    r = sweep("--json", sets=[*TINY, 'sweep.grid={"privacy.clipnorm" = [1.0]}'])
    assert r.exit_code == 2 and "privacy.clipnorm" in r.stderr and r.stdout == ""
    r = sweep("--resume")
    assert r.exit_code == 2 and "--out" in r.stderr
    r = sweep("--out", str(tmp_path / "w"), "--workers", "-1")
    assert r.exit_code == 2 and "workers" in r.stderr
    r = runner.invoke(app, ["sweep", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2 and "nope.toml" in r.stderr


def test_resume_with_other_base_config_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "s"
    base = [*TINY, "sweep.seeds=[0]", 'sweep.epsilons=["inf"]']
    r = sweep("--out", str(out), "--json", "--no-plot", sets=base)
    assert r.exit_code == 0, r.stderr
    r = sweep("--out", str(out), "--resume", "--json", sets=[*base, "model.dim=5"])
    assert r.exit_code == 2 and "model.dim" in r.stderr
    # a changed [sweep] section is fine: only the new point runs
    r = sweep("--out", str(out), "--resume", "--json", "--no-plot",
              sets=[*base, 'sweep.epsilons=["inf", 3.0]'])  # fmt: skip
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["ran"] == 1 and res["skipped"] == 1


def test_default_out_dir_under_runs_dir(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sets = [*TINY, "sweep.seeds=[0]", 'sweep.epsilons=["inf"]', f'output.runs_dir="{runs}"',
            'name="tiny"']  # fmt: skip
    r = sweep("--json", "--no-plot", sets=sets)
    assert r.exit_code == 0, r.stderr
    out = Path(json.loads(r.stdout)["out_dir"])
    assert out.parent == runs and out.name.startswith("sweep-tiny-")
    assert (out / "points.json").is_file()

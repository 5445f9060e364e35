"""`ppr.reporting`: grid expansion, resumable sweeps (real tiny runs), aggregation, files, plot."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import statistics
from pathlib import Path

import pytest
from data_testutils import TINY_SWEEP_BASE
from rich.console import Console

from ppr.config import load_config, to_toml
from ppr.errors import ConfigError, PprError
from ppr.experiments.executor import POINT_FILE, _worker_env
from ppr.experiments.grid import expand_grid, point_config
from ppr.experiments.sweep import SweepProgress, run_sweep
from ppr.io import atomic_write, atomic_write_csv, atomic_write_json, json_safe
from ppr.reporting import (
    summarize_runs,
    sweep_table,
)
from ppr.reporting.plots import plot_recall_vs_epsilon

TINY = [
    *TINY_SWEEP_BASE,
    'sweep.epsilons=["inf", 2.0]',
    "sweep.seeds=[0, 1]",
    "privacy.noise_seed=0",
]


def tiny(*extra: str):
    return load_config(None, [*TINY, *extra])


# ---------------------------------------------------------------------------------- grid


def test_expand_grid_order_ids_and_resolved_values() -> None:
    cfg = tiny('sweep.grid={"privacy.clip_norm" = [1, 0.5], "federated.rounds" = [2]}')
    points = expand_grid(cfg)
    assert len(points) == 2 * 2 * 1 * 2
    assert [p.index for p in points] == list(range(8))
    assert len({p.point_id for p in points}) == 8
    # ε outer, grid in key order, seeds inner; the int 1 of a float key resolves to 1.0
    first = points[0]
    assert math.isinf(first.epsilon) and first.seed == 0
    assert first.grid == (("privacy.clip_norm", 1.0), ("federated.rounds", 2))
    assert isinstance(first.grid[0][1], float)
    assert [p.seed for p in points[:4]] == [0, 1, 0, 1]
    assert points[4].epsilon == 2.0
    assert points[2].point_id == "eps-inf_seed-0_privacy.clip_norm-0.5_federated.rounds-2"


def test_point_config_is_independent_of_the_sweep_section() -> None:
    cfg = tiny("baselines.centralized=true")
    p = expand_grid(cfg)[3]
    pc = point_config(cfg, p)
    assert pc.privacy.epsilon == p.epsilon == 2.0 and pc.seed == p.seed == 1
    assert pc.baselines.centralized is False
    # editing the grid (more seeds, other ε, workers) leaves an existing point's config alone
    other = tiny("sweep.epsilons=[2.0, 9.0]", "sweep.seeds=[1, 5]", "sweep.workers=3")
    assert to_toml(point_config(other, p)) == to_toml(pc)
    # ... but a base-config change does not
    assert to_toml(point_config(tiny("model.dim=5"), p)) != to_toml(pc)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ('sweep.grid={"privacy.clipnorm" = [1.0]}', "privacy.clipnorm"),
        ('sweep.grid={"nosuch.key" = [1.0]}', "nosuch"),
        ('sweep.grid={"privacy.clip_norm" = [-1.0]}', "privacy.clip_norm"),
        ('sweep.grid={"model.dim" = [4, 4.5]}', "model.dim"),
        ('sweep.grid={"privacy.epsilon" = [1.0]}', "sweep.epsilons"),
        ('sweep.grid={"seed" = [1]}', "sweep.seeds"),
        ('sweep.grid={"sweep.workers" = [1]}', "sweep.workers"),
        ('sweep.grid={"model.dim" = 4}', "non-empty list"),
        ('sweep.grid={"model.dim" = [4, 4]}', "duplicate"),
        ("sweep.seeds=[0, 0]", "sweep.seeds"),
        ('sweep.epsilons=["inf", 1.0, "inf"]', "sweep.epsilons"),
    ],
)
def test_bad_grid_is_a_config_error_naming_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        expand_grid(tiny(override))


def test_preflight_refuses_an_invalid_combination_before_running(tmp_path: Path) -> None:
    cfg = tiny('sweep.grid={"privacy.clip_norm" = [1.0, "inf"]}')
    with pytest.raises(ConfigError, match=r"eps-2_seed-0_privacy\.clip_norm-inf.*clip_norm"):
        run_sweep(cfg, tmp_path / "s", workers=1)
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------------- pure parts


def test_summarize_runs_mean_std_and_max_spent() -> None:
    runs = [
        {"epsilon": 2.0, "seed": 0, "k": 10, "recall@10": 0.2, "noise_multiplier": 1.5,
         "epsilon_spent": 1.9, "popularity_recall@10": 0.1, "point_id": "a", "run_dir": "x"},
        {"epsilon": 2.0, "seed": 1, "k": 10, "recall@10": 0.4, "noise_multiplier": 1.5,
         "epsilon_spent": 2.0, "popularity_recall@10": 0.3, "point_id": "b", "run_dir": "y"},
        {"epsilon": "inf", "seed": 0, "k": 10, "recall@10": 0.5, "noise_multiplier": 0.0,
         "epsilon_spent": "inf", "popularity_recall@10": None, "point_id": "c", "run_dir": "z"},
    ]  # fmt: skip
    pts = summarize_runs(runs, [], ["recall@10"])
    assert [p["epsilon"] for p in pts] == [2.0, "inf"]
    a, b = pts
    assert a["recall@10"] == pytest.approx(0.3)
    assert a["recall@10_std"] == pytest.approx(statistics.stdev([0.2, 0.4]))
    assert a["seeds"] == [0, 1] and a["n_seeds"] == 2 and a["epsilon_spent"] == 2.0
    assert a["popularity_recall@10"] == pytest.approx(0.2) and "popularity_recall@10_std" not in a
    assert b["recall@10_std"] is None and b["popularity_recall@10"] is None
    assert b["epsilon_spent"] == "inf" and "point_id" not in b and "run_dir" not in b


def test_json_safe_and_csv(tmp_path: Path) -> None:
    import numpy as np

    obj = {"a": math.inf, "b": -math.inf, "c": math.nan, "d": np.float32(0.5), "e": (1, 2),
           "f": np.arange(2), "g": tmp_path}  # fmt: skip
    assert json_safe(obj) == {"a": "inf", "b": "-inf", "c": None, "d": 0.5, "e": [1, 2],
                              "f": [0, 1], "g": str(tmp_path)}  # fmt: skip
    p = atomic_write_json(tmp_path / "x.json", obj)
    assert json.loads(p.read_text())["a"] == "inf"
    rows = [{"x": 1, "seeds": [0, 1]}, {"y": math.inf, "x": None}]
    atomic_write_csv(tmp_path / "x.csv", rows)
    with open(tmp_path / "x.csv", newline="") as f:
        got = list(csv.reader(f))
    assert got == [["x", "seeds", "y"], ["1", "0 1", ""], ["", "", "inf"]]


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")

    def boom(f) -> None:
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["f.txt"]  # no temporary file left


def test_worker_env_limits_threads_and_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/nowhere")
    cores = len(os.sched_getaffinity(0))
    with _worker_env(cores):  # one thread per worker
        assert os.environ["OMP_NUM_THREADS"] == "1"
        # XLA's threading stays the caller's: it changes float32 sums (tests/execution)
        assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/nowhere"
    assert "OMP_NUM_THREADS" not in os.environ
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/nowhere"


# ---------------------------------------------------------------------------------- real sweeps


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sweep") / "s"
    events: list[SweepProgress] = []
    res = run_sweep(tiny(), out, workers=1, progress=events.append)
    return out, res, events


def _summary(out: Path, pid: str) -> dict:
    return json.loads((out / "points" / pid / "summary.json").read_text())


def test_sweep_writes_every_output(swept) -> None:
    out, res, events = swept
    assert res.ran == 4 and res.skipped == 0 and res.out_dir == out
    for name in ("sweep_config.toml", "points.json", "points.csv", "runs.csv",
                 "recall_vs_epsilon.png"):  # fmt: skip
        assert (out / name).is_file(), name
    assert (out / "recall_vs_epsilon.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_config(out / "sweep_config.toml").sweep.seeds == [0, 1]
    assert json.loads((out / "points.json").read_text()) == res.points
    with open(out / "points.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epsilon"] for r in rows] == ["inf", "2.0"] and rows[0]["seeds"] == "0 1"
    with open(out / "runs.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4
    for p in expand_grid(tiny()):
        pdir = out / "points" / p.point_id
        assert {"config.toml", "summary.json", "metrics.jsonl", POINT_FILE} <= set(os.listdir(pdir))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds.count("point") == 4 and "round" in kinds
    assert [e.done for e in events if e.kind == "point"] == [1, 2, 3, 4]


def test_sweep_points_aggregate_the_runs_on_disk(swept) -> None:
    out, res, _ = swept
    assert len(res.points) == 2 and len(res.runs) == 4
    inf, dp = res.points
    assert inf["epsilon"] == "inf" and dp["epsilon"] == 2.0
    for point, eps in ((inf, "inf"), (dp, "2")):
        sums = [_summary(out, f"eps-{eps}_seed-{s}") for s in (0, 1)]
        recalls = [s["metrics"]["recall@10"] for s in sums]
        assert point["recall@10"] == pytest.approx(statistics.mean(recalls))
        assert point["recall@10_std"] == pytest.approx(statistics.stdev(recalls))
        ndcgs = [s["metrics"]["ndcg@10"] for s in sums]
        assert point["ndcg@10"] == pytest.approx(statistics.mean(ndcgs))
        pops = [s["baselines"]["popularity"]["recall@10"] for s in sums]
        assert point["popularity_recall@10"] == pytest.approx(statistics.mean(pops))
        assert point["upload_bytes_per_device"] == pytest.approx(
            statistics.mean(s["communication"]["upload_bytes_per_device"] for s in sums)
        )
        assert point["seeds"] == [0, 1]
        assert all("centralized" not in s["baselines"] for s in sums)
    assert inf["noise_multiplier"] == 0.0 and inf["epsilon_spent"] == "inf"
    assert dp["noise_multiplier"] > 0 and 0 < dp["epsilon_spent"] <= 2.0 + 1e-9
    assert 0.0 <= dp["recall@10"] <= 1.0 and dp["upload_bytes_per_device"] > 0


def test_resume_reruns_only_missing_or_invalid_points(swept, tmp_path: Path) -> None:
    src, res, _ = swept
    out = tmp_path / "s"
    shutil.copytree(src, out)
    points = {p.point_id: p for p in expand_grid(tiny())}
    ids = list(points)
    (out / "points" / ids[1] / POINT_FILE).unlink()  # killed before the result was written
    (out / "points" / ids[2] / POINT_FILE).write_text("{half")  # a corrupted result
    shutil.rmtree(out / "points" / ids[3])  # never started
    kept = (out / "points" / ids[0] / POINT_FILE).read_bytes()

    with pytest.raises(PprError, match="--resume"):
        run_sweep(tiny(), out, workers=1)
    again = run_sweep(tiny(), out, workers=1, resume=True)
    assert again.ran == 3 and again.skipped == 1
    assert (out / "points" / ids[0] / POINT_FILE).read_bytes() == kept
    # runs are deterministic, so the completed sweep reproduces the first one
    for a, b in zip(res.points, again.points, strict=True):
        assert a["recall@10"] == pytest.approx(b["recall@10"], abs=1e-9)

    done = run_sweep(tiny(), out, workers=1, resume=True)
    assert done.ran == 0 and done.skipped == 4

    # a grown grid runs only its new points and reports exactly the current grid
    grown = run_sweep(tiny("sweep.seeds=[0, 1, 2]"), out, workers=1, resume=True, plot=False)
    assert grown.ran == 2 and grown.skipped == 4
    assert [p["seeds"] for p in grown.points] == [[0, 1, 2], [0, 1, 2]]
    shrunk = run_sweep(tiny("sweep.seeds=[1]"), out, workers=1, resume=True)
    assert shrunk.ran == 0 and [p["seeds"] for p in shrunk.points] == [[1], [1]]


def test_resume_with_a_changed_base_config_is_refused(swept, tmp_path: Path) -> None:
    src, _, _ = swept
    out = tmp_path / "s"
    shutil.copytree(src, out)
    with pytest.raises(ConfigError, match=r"differs in: model\.dim"):
        run_sweep(tiny("model.dim=5"), out, workers=1, resume=True)


def test_a_stale_point_result_is_rerun(swept, tmp_path: Path) -> None:
    src, _, _ = swept
    out = tmp_path / "s"
    shutil.copytree(src, out)
    pid = expand_grid(tiny())[0].point_id
    rec = json.loads((out / "points" / pid / POINT_FILE).read_text())
    rec["config"] = rec["config"].replace("dim = 4", "dim = 7", 1)  # saved for another config
    (out / "points" / pid / POINT_FILE).write_text(json.dumps(rec))
    again = run_sweep(tiny(), out, workers=1, resume=True, plot=False)
    assert again.ran == 1 and again.skipped == 3


def test_interrupted_sweep_resumes_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "s"

    def interrupt_after_two(ev: SweepProgress) -> None:
        if ev.kind == "point" and ev.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(tiny(), out, workers=1, progress=interrupt_after_two)
    assert not (out / "points.json").exists()  # reports only for a complete grid
    assert len(list(out.glob(f"points/*/{POINT_FILE}"))) == 2
    res = run_sweep(tiny(), out, workers=1, resume=True, plot=False)
    assert res.ran == 2 and res.skipped == 2 and (out / "points.json").is_file()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_point_stops_the_sweep_with_its_error(tmp_path: Path, workers: int) -> None:
    cfg = tiny('data.source="csv"', f'data.path="{tmp_path / "missing.csv"}"')
    out = tmp_path / "s"
    stale = out / "points" / expand_grid(cfg)[0].point_id / POINT_FILE
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # an invalid result from an earlier attempt
    (out / "sweep_config.toml").write_text(to_toml(cfg))
    with pytest.raises(PprError, match=r"sweep point eps-.*_seed-.: .*missing\.csv"):
        run_sweep(cfg, out, workers=workers, resume=True)
    assert not list(out.glob(f"points/*/{POINT_FILE}"))  # a rerun point has no result until done


def test_parallel_spawned_workers_match_in_process(swept, tmp_path: Path) -> None:
    _, res, _ = swept
    cfg = tiny()
    par = run_sweep(cfg, tmp_path / "p", workers=2, plot=False)
    assert par.ran == 4
    for a, b in zip(res.runs, par.runs, strict=True):
        assert a["point_id"] == b["point_id"]
        assert a["recall@10"] == pytest.approx(b["recall@10"], abs=1e-9)


# ---------------------------------------------------------------------------------- table, plot


def test_table_and_plot_with_a_grid(tmp_path: Path) -> None:
    cfg = tiny('sweep.grid={"privacy.clip_norm" = [0.5, 1.0]}', "sweep.seeds=[0]",
               'sweep.epsilons=["inf", 1.0, 4.0]')  # fmt: skip
    res = run_sweep(cfg, tmp_path / "g", workers=1)
    assert len(res.points) == 6
    assert {p["privacy.clip_norm"] for p in res.points} == {0.5, 1.0}
    console = Console(width=200, record=True)
    console.print(sweep_table(res.points, ["privacy.clip_norm"]))
    text = console.export_text()
    assert "recall@10" in text and "clip_norm" in text and "∞" in text and "±" in text
    first = res.points[0]
    assert f"{first['recall@10']:.4f}" in text
    assert (tmp_path / "g" / "recall_vs_epsilon.png").stat().st_size > 10_000
    # only non-private points still plot (the reference lines)
    only_inf = [p for p in res.points if p["epsilon"] == "inf"]
    png = plot_recall_vs_epsilon(only_inf, tmp_path / "inf.png", ["privacy.clip_norm"])
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_atomic_writes_get_the_umask_mode(tmp_path):
    """mkstemp creates 0600 files; results must get the mode open() would give them."""
    import os

    from ppr.io import atomic_write_text

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    path = atomic_write_text(tmp_path / "r.json", "{}")
    assert os.stat(path).st_mode & 0o777 == os.stat(plain).st_mode & 0o777

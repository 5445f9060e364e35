"""One executor interface, three back-ends: local, processes and ray give the same results.

Ray runs as a real local instance (2 CPUs), started once for the module; it is a CI dependency
(``.ci/run`` installs the ``ray`` extra), so a missing Ray fails this module instead of skipping.
"""

from __future__ import annotations

import logging
import operator
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import ray
from data_testutils import TINY_SWEEP_BASE

from ppr.config import ExecutionConfig, load_config
from ppr.crypto import CkksSecureAggregation, default_params
from ppr.errors import ConfigError
from ppr.execution import (
    WORKER_CRASHED,
    Executor,
    LocalExecutor,
    ProcessExecutor,
    Setup,
    make_executor,
)
from ppr.execution.ray_executor import MISSING, RayExecutor, import_ray
from ppr.experiments.executor import execute_points
from ppr.experiments.factories import encryption_executor
from ppr.experiments.grid import expand_grid, point_config
from ppr.experiments.simulate import simulate

KINDS = ("local", "processes", "ray")


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module (executors join it and leave it running)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


def _executor(kind: str, workers: int = 2) -> Executor:
    if kind == "local":
        return LocalExecutor()
    if kind == "processes":
        return ProcessExecutor(workers)
    return RayExecutor(workers)


# ---------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("kind", KINDS)
def test_map_is_ordered_and_errors_are_the_functions_own(kind: str, ray_instance) -> None:
    one = Setup("one", float, (1.0,))  # the per-worker state: 1.0, built in the worker
    with _executor(kind) as ex:
        assert ex.map(operator.truediv, [1, 2, 4, 8, 5], one) == [1.0, 0.5, 0.25, 0.125, 0.2]
        done = sorted(ex.as_completed(operator.truediv, [2, 0, 4], one))
        assert [d.value for d in done] == [0.5, None, 0.25]
        assert isinstance(done[1].error, ZeroDivisionError)  # the original, not a wrapper
        with pytest.raises(ZeroDivisionError):
            ex.map(operator.truediv, [1, 0], one)


@pytest.mark.parametrize("kind", ["processes", "ray"])
def test_a_worker_that_dies_loses_only_its_item_and_is_replaced(kind: str, ray_instance) -> None:
    """A real crash: the item makes the worker SIGKILL itself (state: the worker's own pid)."""
    pid = Setup("pid", os.getpid)
    with _executor(kind) as ex:
        done = list(ex.as_completed(os.kill, [signal.SIGKILL], pid))
        assert [(d.index, d.lost) for d in done] == [(0, WORKER_CRASHED)]
        pids = ex.map(operator.add, [0, 0, 0, 0], pid)  # replaced: the next call runs
        assert os.getpid() not in pids and len(set(pids)) <= 2


def test_closing_the_stream_early_drops_the_running_items(ray_instance) -> None:
    with RayExecutor(2) as ex:
        stream = ex.as_completed(operator.add, range(10), Setup("zero", int))
        next(stream)
        stream.close()
        assert ex.map(operator.add, [5, 6], Setup("zero", int)) == [5, 6]


def test_make_executor_follows_the_config(ray_instance) -> None:
    assert isinstance(make_executor(ExecutionConfig(executor="processes"), 1), LocalExecutor)
    assert isinstance(make_executor(ExecutionConfig(executor="local"), 4), LocalExecutor)
    with make_executor(ExecutionConfig(executor="processes"), 2) as ex:
        assert isinstance(ex, ProcessExecutor) and ex.workers == 2
    with make_executor(ExecutionConfig(executor="ray"), 2) as ex:
        assert isinstance(ex, RayExecutor) and ex.workers == 2
    cfg = load_config(None, ["execution.executor=ray", "execution.workers=3"])
    with encryption_executor(cfg) as ex:
        assert ex.kind == "ray" and ex.workers == 3
    assert ray.is_initialized()  # joined the module's instance, did not shut it down


def test_a_missing_ray_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the extra
    with pytest.raises(ConfigError) as info:
        import_ray()
    assert str(info.value) == MISSING and "\n" not in MISSING and '".[ray]"' in MISSING


@pytest.mark.parametrize(
    ("override", "needle"),
    [("execution.executor=spark", "execution.executor"), ("execution.workers=-1", "workers"),
     ("execution.batch=-2", "execution.batch")],
)  # fmt: skip
def test_bad_execution_keys_are_one_line_config_errors(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(None, [override])


# ---------------------------------------------------------------------------- same results

TINY = [
    *TINY_SWEEP_BASE,
    "baselines.centralized=false",
    "baselines.popularity=false",
    "sweep.epsilons=[2.0]",
    "sweep.seeds=[0]",
    "privacy.noise_seed=0",  # reproducible noise: the labelled experiment mode
]


def _point(executor: Executor, out: Path) -> tuple[dict, bytes]:
    """The sweep's one point (ε = 2, reproducible noise) run by the sweep's point runner."""
    cfg = load_config(None, TINY)
    (point,) = expand_grid(cfg)
    records: list[dict] = []
    with executor:
        execute_points(
            [(point, point_config(cfg, point), out)], executor, lambda _p, r: records.append(r),
            None,
        )  # fmt: skip
    summary = records[0]["summary"]
    return summary["metrics"], (out / "model.msgpack").read_bytes()


def test_a_private_sweep_point_is_bitwise_identical_on_every_executor(
    tmp_path: Path, ray_instance
) -> None:
    """ε = 2 with reproducible noise: the same metrics and the same released model file, byte
    for byte, whether the point ran in-process, in a worker process or on a Ray actor."""
    local = _point(LocalExecutor(), tmp_path / "local")
    assert _point(ProcessExecutor(1), tmp_path / "processes") == local
    assert _point(RayExecutor(1), tmp_path / "ray") == local


def test_a_ckks_round_is_within_the_precision_bound_on_every_executor(ray_instance) -> None:
    size, n = 300, 10
    rows = np.random.default_rng(0).uniform(-1, 1, (n, size)) / np.sqrt(size)
    exact = rows.sum(axis=0)
    ids = np.arange(n)
    for kind in KINDS:
        agg = CkksSecureAggregation(
            size, default_params(), executor=_executor(kind), batch=3, value_bound=1.0
        )
        with agg:
            res = agg.aggregate_stream([(ids, rows)], n, round_idx=0)
        assert res.n_accepted == n and not res.dropped and not res.rejected, kind
        assert np.max(np.abs(res.total - exact)) <= res.error_bound, kind


def test_a_ckks_run_on_ray_matches_the_local_run(tmp_path: Path, ray_instance) -> None:
    base = [*TINY, "aggregation.mode=ckks", "federated.rounds=1", "evaluation.k=5",
            f"output.runs_dir={tmp_path}"]  # fmt: skip
    runs = {
        kind: simulate(load_config(None, [*base, f"execution.executor={kind}"])).summary
        for kind in ("local", "ray")
    }
    local, on_ray = (runs[k].to_dict() for k in ("local", "ray"))
    sent = [r["communication"]["channel"]["by_kind"] for r in (local, on_ray)]
    assert (
        local["communication"]["channel"]["messages"]
        == on_ray["communication"]["channel"]["messages"]
    )  # every device's update arrived (ciphertext sizes vary slightly: SEAL compresses)
    assert sent[1]["update"] == pytest.approx(sent[0]["update"], rel=0.02)
    for name, value in local["metrics"].items():  # CKKS error ~1e-7: the ranking agrees
        assert on_ray["metrics"][name] == pytest.approx(value, abs=0.02), name

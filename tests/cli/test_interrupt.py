"""Ctrl-C (SIGINT to the whole process group, as a terminal sends it) on a CKKS `ppr simulate`
and on a parallel `ppr sweep`: exit code 130, one line on stderr and no traceback from the parent
or its worker processes, no worker left behind, and either a resumable partial run or nothing
half written; the interrupted sweep resumes with only the missing points.

A real process tree, a real signal; the assertions hold at whatever moment the signal lands.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ppr_cli._common import ctrl_c_checkpoint

from ppr.experiments.executor import POINT_FILE


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # field 4 of stat: the parent pid
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# SIGINT handled as in a terminal even if this test runs with SIGINT ignored (a background job
# inherits it ignored): the command itself restores Python's handler before anything else.
PPR = [
    sys.executable,
    "-c",
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from ppr_cli.main import app; app()",
]
ROOT = Path(__file__).resolve().parents[2]
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def _interrupt(argv: list[str], n_workers: int, after: float) -> tuple[int, str, list[int]]:
    """Run ``argv`` as a terminal's foreground job; once ``n_workers`` child processes are up,
    wait ``after`` seconds and press Ctrl-C. Returns (exit code, stderr, the children seen)."""
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,  # its own group, like a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline and proc.poll() is None:
            workers = [p for p in _children(proc.pid) if _alive(p)]
            if len(workers) >= n_workers:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert len(workers) >= n_workers, "the worker processes never started"
        time.sleep(after)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err, workers


def _check_clean_stop(code: int, err: str, workers: list[int]) -> None:
    assert code == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert err.startswith("interrupted") and err.count("\n") == 1, err  # one line
    time.sleep(1.0)
    assert not [p for p in workers if _alive(p)], "a worker process outlived the run"


@needs_proc
def test_ctrl_c_stops_a_ckks_run_cleanly(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    argv = [*PPR, "simulate", "--quiet"]
    for s in ("aggregation.mode=ckks", "aggregation.workers=2", "federated.rounds=500",
              "data.synthetic.n_users=200", "model.dim=8", f"output.runs_dir={runs}"):  # fmt: skip
        argv += ["--set", s]
    # 3 children: the resource tracker and 2 encryption workers; then 3 s into the rounds.
    code, err, workers = _interrupt(argv, 3, 3.0)
    _check_clean_stop(code, err, workers)
    partial = [p for p in runs.iterdir()] if runs.exists() else []
    # Nothing final was written; a partial run is kept only when it can be resumed.
    assert all(p.name.startswith(".") and p.name.endswith(".partial") for p in partial)
    if partial:
        assert err.rstrip().endswith(f"ppr simulate --resume {partial[0]}")
        assert (partial[0] / "checkpoint.npz").exists()


@needs_proc
def test_ctrl_c_stops_a_parallel_sweep_and_resume_runs_only_the_missing_points(
    tmp_path: Path,
) -> None:
    out = tmp_path / "sweep"
    argv = [*PPR, "sweep", "--out", str(out), "--workers", "2", "-q", "--no-plot"]
    for s in ("data.synthetic.n_users=150", "model.dim=8", "federated.rounds=20",
              'sweep.epsilons=["inf", 4.0]', "sweep.seeds=[0, 1, 2, 3, 4, 5]"):  # fmt: skip
        argv += ["--set", s]
    code, err, workers = _interrupt(argv, 2, 4.0)
    _check_clean_stop(code, err, workers)
    assert f"--out {out} --resume" in err
    done = len(list((out / "points").glob(f"*/{POINT_FILE}")))  # finished, written atomically
    assert done < 12, "the sweep finished before Ctrl-C: nothing was interrupted"

    res = subprocess.run(
        [*argv, "--resume", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout)
    assert summary["skipped"] == done and summary["ran"] == 12 - done


def test_a_ctrl_c_dropped_inside_a_gc_callback_is_raised_at_the_next_check() -> None:
    """Python drops an exception raised in a gc callback (JAX registers one): the checkpoint
    remembers the Ctrl-C and raises it again at the next round's check, and Python's
    "Exception ignored" report of it is held back (it printed a traceback in a CI run). Run as
    from a terminal (Python's own SIGINT handler), whatever the shell running pytest did."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    reports: list[BaseException | None] = []
    hook = sys.unraisablehook
    sys.unraisablehook = lambda info: reports.append(info.exc_value)
    try:
        _ctrl_c_in_a_gc_callback()
        assert reports == []  # held back
        sys.unraisablehook(_Unraisable(ValueError("other")))
        assert len(reports) == 1  # the checkpoint gave the hook back
    finally:
        sys.unraisablehook = hook
        signal.signal(signal.SIGINT, inherited)


class _Unraisable:
    def __init__(self, exc: BaseException) -> None:
        self.exc_value = exc


def _ctrl_c_in_a_gc_callback() -> None:
    before = signal.getsignal(signal.SIGINT)

    def callback(phase: str, _info: dict) -> None:
        if phase == "start":
            gc.callbacks.remove(callback)
            os.kill(os.getpid(), signal.SIGINT)  # handled right here, inside the callback
            for _ in range(10_000):
                pass

    with ctrl_c_checkpoint() as check:
        check()  # nothing pressed yet
        gc.callbacks.append(callback)
        gc.collect()  # the KeyboardInterrupt raised inside the callback is dropped
        assert callback not in gc.callbacks
        with pytest.raises(KeyboardInterrupt):
            check()
    assert signal.getsignal(signal.SIGINT) is before

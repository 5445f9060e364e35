"""Periodic retraining: time windows, warm-started versions, and the ledger across versions.

The property (DESIGN.md, "Privacy semantics"): a user's ε across versions equals the
accountant's composition of the versions they were eligible in (each version's own ledger), and
of nothing else."""

from __future__ import annotations

import dp_accounting
import numpy as np
import pytest
from ppr_cli.main import app
from typer.testing import CliRunner

from ppr.config import load_config
from ppr.data.loaders import load_interactions
from ppr.data.split import positives
from ppr.experiments.periodic import run_periodic, version_split, window_of
from ppr.privacy.accounting import epsilon_of
from ppr.privacy.ledger import load_ledger

TINY = [
    "data.synthetic.n_users=150",
    "data.synthetic.n_items=60",
    "data.synthetic.n_interactions=4000",
    "model.dim=4",
    "federated.rounds=2",
    "federated.sampling_rate=0.5",
    "privacy.epsilon=2.0",
    "privacy.noise_seed=0",
    "baselines.centralized=false",
    "periodic.windows=3",
]


def test_windows_hold_equal_shares_and_keep_ties_together():
    ts = np.repeat(np.arange(12), 10)  # 12 distinct times, 10 events each
    w = window_of(ts, 4)
    assert np.bincount(w).tolist() == [30, 30, 30, 30]
    assert all(len(set(w[ts == t])) == 1 for t in range(12))
    assert (np.diff(w[np.argsort(ts, kind="stable")]) >= 0).all()
    with pytest.raises(Exception, match=r"periodic\.windows"):
        window_of(np.zeros(10, np.int64), 3)


def test_version_split_trains_on_the_past_and_tests_on_new_pairs_of_the_next_window():
    cfg = load_config(None, TINY)
    pos = positives(load_interactions(cfg.data, cfg.seed), cfg.split.positive_threshold)
    w = window_of(pos.timestamps, 3)
    s = version_split(pos, w, 0, "cumulative")
    u, i = s.train.to_pairs()
    assert len(u) == int((w == 0).sum())
    tu, ti = s.test.to_pairs()
    seen = set(zip(u.tolist(), i.tolist(), strict=True))
    assert tu.size and not seen & set(zip(tu.tolist(), ti.tolist(), strict=True))
    s1 = version_split(pos, w, 1, "cumulative")
    assert s1.train.nnz == int((w <= 1).sum())
    assert version_split(pos, w, 1, "window").train.nnz == int((w == 1).sum())


@pytest.mark.parametrize("history", ["window", "cumulative"])
def test_user_epsilon_is_the_composition_of_the_versions_they_were_eligible_in(tmp_path, history):
    cfg = load_config(None, [*TINY, f"periodic.history={history!r}".replace("'", '"')])
    res = run_periodic(cfg, tmp_path / "p")
    pos = positives(load_interactions(cfg.data, cfg.seed), cfg.split.positive_threshold)
    w = window_of(pos.timestamps, 3)
    users = pos.users.astype(np.int64)
    held = [(w == v) if history == "window" else (w <= v) for v in range(2)]
    # eligibility from the data itself: a user is in version v iff it holds a positive there
    eligible = np.stack([np.bincount(users[h], minlength=pos.n_users) > 0 for h in held])
    assert (res.eligible == eligible).all()
    ledgers = [load_ledger(f"{row['run_dir']}/ledger.json") for row in res.versions]
    delta = load_config(f"{res.versions[0]['run_dir']}/config.toml").privacy.delta
    patterns = {tuple(col) for col in eligible.T if col.any()}
    assert len(patterns) >= 2  # users with different histories are checked
    for pattern in patterns:
        u = int(np.flatnonzero((eligible.T == pattern).all(axis=1))[0])
        event = dp_accounting.ComposedDpEvent(
            [ledgers[v].composed() for v in range(2) if pattern[v]]
        )
        assert res.user_epsilon[u] == pytest.approx(epsilon_of(event, delta, "pld"), rel=1e-9)
    assert res.user_epsilon[eligible.all(axis=0)].min() > 2.0  # two versions cost more
    for row in res.versions:
        assert row["epsilon"] <= 2.0 * (1 + 1e-9) and 0.0 <= row["recall@20"] <= 1.0
    assert (tmp_path / "p" / "ledger_versions.json").is_file()


def test_periodic_cli_bad_windows_is_one_line_exit_2(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[data.synthetic]\nn_users = 50\n")
    r = CliRunner().invoke(
        app, ["periodic", str(cfg), "--windows", "1", "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "--windows" in r.stderr
    assert not (tmp_path / "o").exists()


def test_an_interrupted_periodic_run_resumes_to_the_same_versions(tmp_path):
    """Interrupted in version 1 after its first round: ``resume`` reads version 0 back (not
    retrained), continues version 1 from its checkpoint (its released round is not rerun with
    fresh noise) and ends where an uninterrupted run ends (reproducible noise)."""
    cfg = load_config(None, TINY)
    whole = run_periodic(cfg, tmp_path / "whole")
    calls: list[int] = []

    def stop_in_version_1(done: int, total: int, rec: dict) -> None:
        calls.append(done)
        if len(calls) == cfg.federated.rounds + 1:  # version 1's first round is checkpointed
            raise KeyboardInterrupt

    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run_periodic(cfg, out, on_round=stop_in_version_1)
    v0_summary = (out / "versions" / "v0" / "summary.json").stat().st_mtime_ns
    assert (out / "versions" / ".v1.partial" / "checkpoint.npz").is_file()
    assert not (out / "versions.json").exists()  # nothing final half written

    resumed: list[int] = []
    res = run_periodic(cfg, out, resume=True, on_round=lambda d, t, r: resumed.append(d))
    assert resumed == list(range(2, cfg.federated.rounds + 1))  # only version 1's rest ran
    assert (out / "versions" / "v0" / "summary.json").stat().st_mtime_ns == v0_summary
    for a, b in zip(whole.versions, res.versions, strict=True):
        assert {k: v for k, v in a.items() if k != "run_dir"} == {
            k: v for k, v in b.items() if k != "run_dir"
        }
    assert np.array_equal(whole.user_epsilon, res.user_epsilon)
    ledger = load_ledger(out / "versions" / "v1" / "ledger.json")
    assert ledger.composed() == load_ledger(tmp_path / "whole/versions/v1/ledger.json").composed()


def test_periodic_resume_refuses_another_config_and_needs_out(tmp_path):
    cfg = load_config(None, TINY)
    with pytest.raises(Exception, match=r"periodic_config\.toml: missing"):
        run_periodic(cfg, tmp_path / "none", resume=True)
    runner = CliRunner()
    r = runner.invoke(app, ["periodic", "x.toml", "--resume"])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "--out" in r.stderr
    out = tmp_path / "p"
    out.mkdir()
    (out / "periodic_config.toml").write_text("name = 'other'\n")
    conf = tmp_path / "c.toml"
    conf.write_text("[data.synthetic]\nn_users = 50\n")
    r = runner.invoke(app, ["periodic", str(conf), "--out", str(out), "--resume"])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "periodic_config.toml" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["periodic_config.toml"]

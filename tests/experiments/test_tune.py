"""`ppr tune` machinery: the tuning sweep runs on validation, picks the best arm, writes a config
for `ppr sweep`, states (and composes) what the choice costs in privacy, and resumes."""

from __future__ import annotations

import json
import math

import dp_accounting
import pytest

from ppr.config import load_config, to_toml
from ppr.errors import ConfigError
from ppr.experiments.tune import minimal_toml, pick_best, run_tune, tuning_config
from ppr.privacy.accounting import epsilon_of
from ppr.privacy.ledger import load_ledger

TINY = [
    "data.synthetic.n_users=120",
    "data.synthetic.n_items=60",
    "data.synthetic.n_interactions=3000",
    "model.dim=4",
    "federated.rounds=2",
    "federated.sampling_rate=0.5",
    "privacy.noise_seed=0",
    "baselines.centralized=false",
    "sweep.epsilons=[8.0, 2.0]",
    "tune.epsilon=4.0",
    'tune.grid={"federated.rounds" = [1, 3], "privacy.clip_norm" = [1.0]}',
]


def test_tuning_config_is_validation_at_the_target_epsilon():
    cfg = load_config(None, TINY)
    t = tuning_config(cfg)
    assert t.evaluation.split == "validation"
    assert [float(e) for e in t.sweep.epsilons] == [4.0]
    assert t.sweep.grid == cfg.tune.grid
    assert t.tune.grid == {}


@pytest.mark.parametrize(
    "grid, word",
    [
        ("{}", "empty"),
        ('{"privacy.epsilon" = [1.0]}', "privacy.epsilon"),
        ('{"evaluation.split" = ["test"]}', "evaluation.split"),
        ('{"model.dim" = [0]}', "model.dim"),
    ],
)
def test_bad_grids_fail_naming_the_key(grid, word):
    cfg = load_config(None, [*TINY, f"tune.grid={grid}"])
    with pytest.raises(ConfigError, match=word):
        tuning_config(cfg)


def test_pick_best_skips_missing_and_keeps_the_first_of_ties():
    arms = [{"a": 1, "m": math.nan}, {"a": 2, "m": 0.3}, {"a": 3, "m": 0.3}, {"a": 4}]
    assert pick_best(arms, "m")["a"] == 2
    with pytest.raises(ConfigError, match="no tuning arm"):
        pick_best([{"a": 1}], "m")


def test_tune_picks_the_best_validation_arm_writes_config_and_resumes(tmp_path):
    cfg = load_config(None, TINY)
    out = tmp_path / "sweep_tiny.toml"
    res = run_tune(cfg, tmp_path / "tune", out, workers=1)
    assert len(res.arms) == 2 and res.sweep.ran == 2
    best = max(res.arms, key=lambda r: r["recall@20"])
    assert res.chosen == {"federated.rounds": best["federated.rounds"], "privacy.clip_norm": 1.0}
    for run in res.sweep.runs:  # arms ran on validation at the tuning epsilon
        assert load_config(f"{run['run_dir']}/config.toml").evaluation.split == "validation"
        assert run["epsilon"] == 4.0
    chosen = load_config(out)
    assert chosen.evaluation.split == "test"
    assert chosen.federated.rounds == best["federated.rounds"]
    assert [float(e) for e in chosen.sweep.epsilons] == [8.0, 2.0]  # the input's sweep
    assert chosen.tune.grid == {}
    text = out.read_text()
    assert "NOT included" in text and "<- chosen" in text
    # the accounted part: both arms' ledgers composed by the accountant
    events = [load_ledger(f"{r['run_dir']}/ledger.json").composed() for r in res.sweep.runs]
    delta = sum(r["delta"] for r in res.sweep.runs)
    expect = epsilon_of(dp_accounting.ComposedDpEvent(events), delta, "pld")
    assert res.cost["arms_epsilon"] == pytest.approx(expect, rel=1e-9)
    assert res.cost["arms_epsilon"] > 4.0 and res.cost["included_in_epsilon"] is False
    again = run_tune(cfg, tmp_path / "tune", None, workers=1, resume=True)
    assert again.sweep.ran == 0 and again.chosen == res.chosen


def test_minimal_toml_keeps_only_what_differs_and_loads_back(tmp_path):
    cfg = load_config(None, [*TINY, "model.dim=7", "evaluation.split='test'"])
    text = minimal_toml(cfg)
    assert "dim = 7" in text and "[sweep]" in text and 'split = "test"' in text
    assert "[serving]" not in text  # untouched sections are not pinned
    (tmp_path / "c.toml").write_text(text)
    assert to_toml(load_config(tmp_path / "c.toml")) == to_toml(cfg)


def test_a_private_choice_is_accounted_released_once_and_never_redrawn(tmp_path):
    """``tune.selection_epsilon > 0``: the arm is chosen on noisy validation scores; the release
    is saved and read back by a resume (same numbers, even with secret noise), its Gaussian
    event composes with every run's ledger into ``tuning_epsilon``, and a resume at another
    selection ε is refused instead of drawing again."""
    over = [x for x in TINY if not x.startswith("privacy.noise_seed")]
    cfg = load_config(None, [*over, "tune.selection_epsilon=1.0"])  # secret noise
    out = tmp_path / "chosen.toml"
    res = run_tune(cfg, tmp_path / "tune", out, workers=1)
    sel = json.loads((tmp_path / "tune" / "selection.json").read_text())
    assert sel["randomness"].startswith("secret") and len(sel["noisy_means"]) == 2
    assert res.metric == "noisy_recall@20"
    best = max(res.arms, key=lambda r: r["noisy_recall@20"])
    assert res.chosen["federated.rounds"] == best["federated.rounds"]
    cost = res.cost
    assert cost["included_in_epsilon"] is True and "accounted" in cost["statement"]
    events = [load_ledger(f"{r['run_dir']}/ledger.json").composed() for r in res.sweep.runs]
    events.append(dp_accounting.GaussianDpEvent(sel["noise_multiplier"]))
    delta = sum(r["delta"] for r in res.sweep.runs)  # read at the arms' δ
    expect = epsilon_of(dp_accounting.ComposedDpEvent(events), delta, "pld")
    assert cost["tuning_epsilon"] == pytest.approx(expect, rel=1e-9)
    assert cost["tuning_delta"] == cost["arms_delta"]
    assert cost["tuning_epsilon"] > cost["arms_epsilon"]
    # the release alone meets its own target
    assert epsilon_of(events[-1], sel["delta"], "pld") <= 1.0 + 1e-9
    text = out.read_text()
    assert "accounted" in text and "NOT included" not in text
    assert "noisy_recall@20" in text and " recall@20:" not in text  # only DP numbers in it
    again = run_tune(cfg, tmp_path / "tune", None, workers=1, resume=True)
    assert again.sweep.ran == 0 and again.chosen == res.chosen
    assert [a["noisy_recall@20"] for a in again.arms] == [a["noisy_recall@20"] for a in res.arms]
    other = load_config(None, [*over, "tune.selection_epsilon=2.0"])
    with pytest.raises(ConfigError, match=r"selection\.json"):
        run_tune(other, tmp_path / "tune", None, workers=1, resume=True)

"""One small DP run with every user control, shared by the controls, transparency, CLI and browser
tests (imported by name: ``tests/`` is on ``sys.path``). Built once per pytest session under the
session's base temp folder and reused, so its JAX kernels compile once."""

from __future__ import annotations

from pathlib import Path

from ppr.config import Config, load_config
from ppr.experiments.simulate import simulate

TINY = {
    "data.synthetic.n_users": 40,
    "data.synthetic.n_items": 24,
    "data.synthetic.n_interactions": 800,
    "model.dim": 2,
    "federated.rounds": 3,
    "baselines.centralized": False,
    "baselines.popularity": False,
    "aggregation.workers": 1,
}

#: q = 1 keeps the accountant fast (Gaussian rounds); ε = 6 with a cap of 4 binds for capped users.
CONTROLLED = {
    **TINY,
    "name": "controls",
    "federated.rounds": 4,
    "privacy.epsilon": 6.0,
    "privacy.clip_norm": 1.0,
    "privacy.popularity_blend": 0.5,
    "controls.opt_out_share": 0.1,
    "controls.refine_opt_out_share": 0.1,
    "controls.epsilon_cap": 4.0,
    "controls.epsilon_cap_share": 0.3,
    "controls.delete_share": 0.1,
    "controls.delete_after_round": 2,
}


def controlled_run(base: Path) -> tuple[Config, Path]:
    """``(config, run directory)`` of the shared run, simulated on first use under ``base``."""
    folder = Path(base) / "controlled-run"
    cfg = load_config(None, {**CONTROLLED, "output.runs_dir": str(folder)})
    done = sorted(folder.glob("controls-*/summary.json")) if folder.is_dir() else []
    if done:
        return cfg, done[0].parent
    return cfg, Path(simulate(cfg).run_dir)

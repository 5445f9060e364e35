"""The transparency page's content, gathered from a run with every user control."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from transparency_testutils import controlled_run

from ppr.errors import PprError
from ppr.experiments.controls import UserControls
from ppr.experiments.serving import open_run
from ppr.experiments.transparency import gather
from ppr.privacy.spend import spend_from_json
from ppr.reporting.transparency import to_html, to_markdown


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg, run_dir = controlled_run(tmp_path_factory.getbasetemp())
    ids = open_run(run_dir).user_ids
    return cfg, run_dir, UserControls.from_config(cfg, ids.size), ids


def _plain_user(run) -> int:
    _, run_dir, c, _ = run
    members = json.loads((run_dir / "devices.json").read_text())["members"]
    ok = ~c.opted_out & ~c.refine_off & ~np.isfinite(c.cap) & (c.delete_after == 0)
    return int(np.flatnonzero(ok & np.isin(np.arange(ok.size), members))[0])


def test_page_of_a_participating_user(run):
    cfg, run_dir, _, ids = run
    u = _plain_user(run)
    page = gather(run_dir, str(ids[u]))
    rec = json.loads((run_dir / "devices.json").read_text())
    spend = spend_from_json(rec["spend"])
    own = spend.device_epsilon(rec["members"].index(u))
    p = page["privacy"]
    assert math.isclose(p["epsilon"], own) and p["epsilon"] <= p["run_epsilon"] + 1e-9
    delta = json.loads((run_dir / "summary.json").read_text())["privacy"]["delta"]
    assert p["noise_secret"] and p["delta"] == delta > 0
    assert math.isclose(p["curve"][-1]["epsilon"], own, rel_tol=1e-9)
    eps = [c["epsilon"] for c in p["curve"]]
    assert eps == sorted(eps) and len(eps) == 1 + cfg.federated.rounds  # popularity + rounds
    kinds = {k["kind"]: k for k in page["messages"]["kinds"]}
    n, dim = page["device"]["n_items"], page["device"]["dim"]
    assert page["messages"]["rounds"] == [1, 2, 3, 4]  # q = 1: every round
    assert kinds["update"]["bytes"] == 4 * n * dim * 4 and not kinds["update"]["encrypted"]
    assert kinds["popularity"]["messages"] == 1
    recs = page["recommendations"]["items"]
    assert len(recs) == cfg.serving.k
    for r in recs:  # shares shown + others add up to the score
        ex = r["explanation"]
        total = sum(c["share"] for c in ex["contributions"]) + ex["others"]
        assert abs(total - ex["score"]) < 1e-5
        assert math.isclose(ex["ranking_score"], r["score"], abs_tol=1e-4)  # + the prior
    s = page["settings"]
    assert s["train"] and s["refine"] and s["epsilon_cap"] is None and not s["deleted"]
    assert page["device"]["own_items"] > 0 and page["device"]["device_bytes"] > 0


def test_capped_opted_out_and_deleted_users(run):
    cfg, run_dir, c, ids = run
    capped = int(np.flatnonzero(np.isfinite(c.cap) & ~c.opted_out & (c.delete_after == 0))[0])
    page = gather(run_dir, str(ids[capped]))
    assert 0 < page["privacy"]["epsilon"] <= cfg.controls.epsilon_cap
    assert page["settings"]["stopped"]["reason"] == "personal epsilon cap"
    assert len(page["messages"]["rounds"]) < cfg.federated.rounds
    out = int(np.flatnonzero(c.opted_out & (c.delete_after == 0))[0])
    page = gather(run_dir, str(ids[out]))
    assert page["privacy"]["epsilon"] == 0.0 and page["messages"]["kinds"] == []
    assert page["settings"]["train"] is False
    gone = int(np.flatnonzero(c.delete_after > 0)[0])
    page = gather(run_dir, str(ids[gone]))
    assert page["settings"]["deleted"] and not page["recommendations"]["available"]
    assert page["device"]["own_items"] == 0 and page["messages"]["kinds"] == []
    assert "deleted" in to_markdown(page) and "deleted" in to_html(page)


def test_without_trusted_side_files_the_page_says_so(run, tmp_path):
    """``output.protected_only`` runs have neither devices.json nor the device log: the user's ε
    is the run's (an upper bound) and the messages are unknown, both labelled."""
    _, run_dir, _, ids = run
    copy = shutil.copytree(run_dir, tmp_path / "protected")
    (copy / "devices.json").unlink()
    (copy / "device_log.json").unlink()
    page = gather(copy, str(ids[_plain_user(run)]))
    assert page["privacy"]["epsilon"] == page["privacy"]["run_epsilon"]
    assert "upper bound" in page["privacy"]["source"] and not page["messages"]["known"]
    assert "no device log" in to_markdown(page)


def test_html_is_self_contained_and_escaped(run):
    _, run_dir, _, ids = run
    page = gather(run_dir, str(ids[_plain_user(run)]))
    page["run_name"] = "<script>alert(1)</script>"
    doc = to_html(page)
    assert "<script" not in doc and "&lt;script&gt;" in doc
    for external in ("src=", "<link", "url(", "@import", "href="):
        assert external not in doc
    assert doc.count("<svg") == 1 and "<polyline" in doc


def test_unknown_user_and_missing_run_are_one_line_errors(run, tmp_path):
    _, run_dir, _, _ = run
    with pytest.raises(PprError, match="unknown user") as err:
        gather(run_dir, "no-such-user")
    assert "\n" not in str(err.value)
    with pytest.raises(PprError, match="no such run directory"):
        gather(tmp_path / "nope", "1")

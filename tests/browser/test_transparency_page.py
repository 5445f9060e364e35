"""The transparency page rendered by a real browser: Debian's chromium, driven by Playwright.

The test FAILS (never skips) when chromium or Playwright is missing: ``.ci/run`` installs
chromium, Playwright comes with the ``dev`` extra (its own browser download is not used).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from ppr_cli.main import app
from transparency_testutils import controlled_run
from typer.testing import CliRunner

from ppr.experiments.controls import UserControls
from ppr.experiments.serving import open_run
from ppr.reporting.transparency import fmt_eps

CHROMIUM = "/usr/bin/chromium"


def _browser(p):
    exe = shutil.which("chromium") or CHROMIUM
    if not shutil.which(exe):
        pytest.fail("chromium not found: install it (apt-get install -y chromium); .ci/run does")
    return p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])


def test_rendered_page_shows_epsilon_messages_and_explanations(tmp_path_factory, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the dev extra installs it
        pytest.fail("playwright is not installed: pip install -e '.[dev]'")
    cfg, run_dir = controlled_run(tmp_path_factory.getbasetemp())
    ids = open_run(run_dir).user_ids
    c = UserControls.from_config(cfg, ids.size)  # a user who took part and keeps their data
    user = str(ids[np.flatnonzero(~c.opted_out & (c.delete_after == 0))[0]])
    page_file = tmp_path / "page.html"
    res = CliRunner().invoke(app, ["transparency", "--run", str(run_dir), "--user", user,
                                   "--html", str(page_file)])  # fmt: skip
    assert res.exit_code == 0, res.output
    data = CliRunner().invoke(app, ["transparency", "--run", str(run_dir), "--user", user,
                                    "--json"])  # fmt: skip
    page_data = json.loads(data.stdout)
    requests: list[str] = []
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri())
        eps = page.locator("#epsilon").inner_text()
        assert eps == fmt_eps(page_data["privacy"]["epsilon"])
        assert page.get_by_text("How much of your privacy was spent").is_visible()
        table = page.locator("#messages").inner_text()
        for kind in page_data["messages"]["kinds"]:
            assert kind["text"] in table
        assert "model update" in table and "times sent" in table
        rounds = page.locator("#rounds").inner_text()
        assert rounds == ", ".join(map(str, page_data["messages"]["rounds"]))
        items = page.locator("#recommendations li")
        assert items.count() == len(page_data["recommendations"]["items"]) > 0
        first = page_data["recommendations"]["items"][0]
        assert "because you have" in items.first.inner_text()
        assert first["explanation"]["contributions"][0]["title"] in items.first.inner_text()
        box = page.locator("svg").bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100  # the chart drew
        shot = tmp_path / "transparency.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    assert all(u.startswith("file://") for u in requests)  # nothing fetched from anywhere

"""The outputs of investigate: text, JSON (round trip), self-contained HTML, and the CLI command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobs.cli import main
from jobs.investigate import render_html, render_text
from jobs.investigate.result import Investigation
from pipeline.settings import Settings
from tests.support.demo_data import DemoData

pytestmark = [pytest.mark.clickhouse, pytest.mark.slow]


def test_json_round_trips_to_the_same_investigation(account_inv: Investigation, cluster_inv: Investigation) -> None:
    for inv in (account_inv, cluster_inv):
        text = json.dumps(inv.to_dict())
        assert Investigation.from_dict(json.loads(text)) == inv


def test_text_page_shows_the_alert_minute_and_the_harvest(account_inv: Investigation) -> None:
    text = render_text.render(account_inv)
    (page,) = account_inv.pages
    assert page.alerts[0].minute.strftime("%Y-%m-%d %H:%M:00") in text
    assert f"{page.harvest.before_alert:,} tokens" in text and "before the first alert" in text
    for title in ("calls and tokens per day", "API keys", "IP networks", "user agents", "models", "alerts"):
        assert title in text


def test_html_page_holds_every_section_and_nothing_outside_itself(cluster_inv: Investigation) -> None:
    page = render_html.render(cluster_inv)
    assert cluster_inv.cluster is not None
    for heading in ("Summary", f"Campaign {cluster_inv.cluster.cluster_id}", "Links", "Score history",
                    "Harvested output (estimate)", "Calls and tokens per day", "Alerts", "IP networks", "ASNs",
                    "User agents", "Prompt templates shared with other accounts", "Models", "Analyst feedback"):
        assert heading in page, heading
    for p in cluster_inv.pages:
        assert f'id="account-{cluster_inv.pages.index(p)}"' in page and p.account_id in page
    assert page.count("data:image/png;base64,") == len(cluster_inv.pages) + 2  # + members, score history
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)


def test_cli_prints_text_json_and_writes_html(demo_db: DemoData, ch_settings: Settings, attacker: str,
                                               hydra_cluster: str, tmp_path: Path,
                                              restore_default_database: None) -> None:
    env = {"DW_CLICKHOUSE_DSN": ch_settings.effective_clickhouse_dsn, "DW_CLICKHOUSE_DATABASE": demo_db.database,
           "DW_DATA_DIR": str(ch_settings.data_dir)}
    runner = CliRunner()
    done = runner.invoke(main, ["investigate", attacker], env=env)
    assert done.exit_code == 0, done.output
    assert f"== Account {attacker} ==" in done.output
    done = runner.invoke(main, ["investigate", hydra_cluster, "--json", "--html", str(tmp_path / "c.html")], env=env)
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["target_kind"] == "cluster" and data["cluster"]["cluster_id"] == hydra_cluster
    assert Investigation.from_dict(data).cluster is not None
    assert (tmp_path / "c.html").read_text().startswith("<!DOCTYPE html>")
    done = runner.invoke(main, ["investigate", "no-such-account"], env=env)
    assert done.exit_code == 1 and "'no-such-account' is neither an account nor a cluster" in done.output
    done = runner.invoke(main, ["investigate", attacker, "--since", "yesterday-ish"], env=env)
    assert done.exit_code == 2 and "--since" in done.output

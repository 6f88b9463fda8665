"""The outputs of investigate: text, JSON (round trip), self-contained HTML, and the CLI command."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from jobs.ch_options import open_clickhouse
from jobs.cli import main
from jobs.investigate import render_html, render_text
from jobs.investigate.campaign_rule import campaign_threshold
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
    assert f"wrote {tmp_path / 'c.html'}" in done.stderr
    data = json.loads(done.stdout)
    assert data["target_kind"] == "cluster" and data["cluster"]["cluster_id"] == hydra_cluster
    assert Investigation.from_dict(data).cluster is not None
    assert (tmp_path / "c.html").read_text().startswith("<!DOCTYPE html>")
    # a file asked for: "wrote FILE" on stderr, no text page on stdout unless --text
    done = runner.invoke(main, ["investigate", attacker, "--stix", str(tmp_path / "a.json")], env=env)
    assert done.exit_code == 0, done.output
    assert done.stdout == "" and f"wrote {tmp_path / 'a.json'}" in done.stderr
    done = runner.invoke(main, ["investigate", attacker, "--stix", str(tmp_path / "a.json"), "--text"], env=env)
    assert f"== Account {attacker} ==" in done.stdout
    done = runner.invoke(main, ["investigate", "no-such-account"], env=env)
    assert done.exit_code == 1 and "'no-such-account' is neither an account nor a cluster" in done.output
    assert ch_settings.effective_clickhouse_dsn.removeprefix("chdb://") in done.output  # names where it looked
    done = runner.invoke(main, ["investigate", attacker, "--since", "yesterday-ish"], env=env)
    assert done.exit_code == 2 and "--since" in done.output


def test_cluster_below_the_cluster_rules_threshold_is_not_called_a_campaign(cluster_inv: Investigation) -> None:
    assert cluster_inv.cluster is not None and cluster_inv.cluster.campaign_threshold == campaign_threshold()
    assert cluster_inv.cluster.is_campaign  # the hydra fleet scores above the packaged rule's 60
    assert f"== Campaign {cluster_inv.target} ==" in render_text.render(cluster_inv)
    weak = dataclasses.replace(cluster_inv, cluster=dataclasses.replace(
        cluster_inv.cluster, campaign_threshold=cluster_inv.cluster.score + 1))
    text = render_text.render(weak)
    assert "== Campaign" not in text and f"Linked accounts (below the campaign threshold) {weak.target}" in text
    assert "Linked accounts (below the campaign threshold)" in render_html.render(weak)


def test_missing_data_dir_is_named_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(click.ClickException, match=re.escape(str(missing / "clickhouse"))):
        open_clickhouse(None, missing)
    assert not missing.exists()

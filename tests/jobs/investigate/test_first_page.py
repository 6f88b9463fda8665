"""What "before the first alert" means: before the first page that reached someone, counted the same way
by investigate, the cookbook's queries and the report."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from jobs.investigate.collect import investigate
from jobs.investigate.render_text import render
from jobs.report.data import Window, load
from tests.support.demo_data import DemoData

pytestmark = [pytest.mark.clickhouse, pytest.mark.slow]

COOKBOOK = Path(__file__).parents[3] / "docs" / "cookbook.md"


def _cookbook_sql(heading: str) -> str:
    text = COOKBOOK.read_text()
    found = re.search(r"```sql\n(.*?)```", text[text.index(heading):], re.S)
    assert found, heading
    return found.group(1)


def _rows(client: Client, database: str, sql: str, **params: object) -> list[dict[str, object]]:
    before = client.database
    client.database = database  # the cookbook's queries name tables without a database
    try:
        result = client.query(sql, parameters=params)
    finally:
        client.database = before
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def test_cookbook_time_to_detect_agrees_with_investigate(demo_db: DemoData) -> None:
    rows = _rows(demo_db.client, demo_db.database, _cookbook_sql("### Time to detect"),
                 since="1970-01-01 00:00:00", until="2100-01-01 00:00:00")
    assert rows, "no alerted account in the demo run"
    for r in rows:
        harvest = investigate(demo_db.client, demo_db.database, str(r["account_id"])).pages[0].harvest
        assert harvest.first_alert is not None
        assert harvest.first_alert.replace(tzinfo=None) == r["first_alert"].replace(tzinfo=None), r["account_id"]
        assert harvest.before_alert == int(r["output_before_alert"]), r["account_id"]


def test_cookbook_campaign_harvest_agrees_with_investigate(demo_db: DemoData, hydra_cluster: str) -> None:
    rows = {r["cluster_id"]: r for r in _rows(demo_db.client, demo_db.database,
                                             _cookbook_sql("### Output harvested per campaign"))}
    inv = investigate(demo_db.client, demo_db.database, hydra_cluster)
    assert inv.harvest.first_alert is not None
    assert inv.harvest.before_alert == int(rows[hydra_cluster]["harvested_before_first_alert"])
    report = {c["cluster_id"]: c for c in load(demo_db.client, demo_db.database, Window()).campaigns}
    assert int(report[hydra_cluster]["output_before_alert"]) == inv.harvest.before_alert


def test_monitor_and_suppressed_alerts_are_not_the_first_alert(demo_db: DemoData, ch_database: str) -> None:
    # An attacker the report lists (its top accounts by peak score): the report's first alert is checked too.
    listed, attackers = load(demo_db.client, demo_db.database, Window()).top_accounts, set(demo_db.attackers())
    attacker = next(r["account_id"] for r in listed if r["account_id"] in attackers and r["first_alert"])
    before = investigate(demo_db.client, demo_db.database, attacker).pages[0]
    first = before.harvest.first_alert
    assert first is not None and before.harvest.before_alert > 0
    demo_db.copy_into(ch_database)
    # Two alerts ahead of the first page that paged nobody: a monitor-mode rule and a suppressed page.
    earlier = (first - timedelta(minutes=2)).replace(tzinfo=None, microsecond=0)
    demo_db.client.command(f"""
        INSERT INTO `{ch_database}`.alerts
            (alert_id, fired_ts, account_id, rule, severity, score, signals, signal_points, window_start,
             cluster_id, mode, action, suppressed_by)
        VALUES ('qa-monitor', '{earlier}', '{attacker}', 'watch_only', 'info', 50, [], [],
                '{earlier - timedelta(minutes=1)}', '', 'monitor', 'none', ''),
               ('qa-suppressed', '{earlier}', '{attacker}', 'extraction_score_high', 'warning', 70, [], [],
                '{earlier - timedelta(minutes=1)}', '', 'page', 'none', 'allowlist:qa')""")
    page = investigate(demo_db.client, ch_database, attacker).pages[0]
    assert page.harvest.first_alert == first
    assert page.harvest.before_alert == before.harvest.before_alert
    shown = {a.alert_id: (a.mode, a.suppressed_by) for a in page.alerts}
    assert shown["qa-monitor"] == ("monitor", "") and shown["qa-suppressed"] == ("page", "allowlist:qa")
    text = render(investigate(demo_db.client, ch_database, attacker))
    assert "allowlist:qa" in text and "monitor" in text and "fired at" in text
    top = {r["account_id"]: r for r in load(demo_db.client, ch_database, Window()).top_accounts}
    assert attacker in top  # its first alert in the report is the first page too
    assert top[attacker]["first_alert"].replace(tzinfo=None) == first.replace(tzinfo=None)

"""The outbox table: pending rows per (transition, notifier), re-adds skipped, states versioned."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.alerting.outbox import DELIVERED, FAILED, PENDING, Outbox, OutboxRow, notification_id
from pipeline.alerting.transitions import RESOLVED
from pipeline.linking.cluster_outputs import ClusterRows
from pipeline.linking.sink import ClickHouseClusterSink, write_with_retry
from pipeline.sinks.clickhouse import ClickHouseWriter, query_rows
from schemas.migrate import apply_migrations
from tests.support.transitions import T0_MS, transition

pytestmark = pytest.mark.clickhouse

NOW_MS = T0_MS + 3_600_000
NOTIFIERS = ("alertmanager", "webhook")


@pytest.fixture
def outbox_database(ch_client: Client, ch_database: str) -> Iterator[str]:
    """A database migrated with every migration (alert_notifications is m0006's)."""
    apply_migrations(ch_client, ch_database)
    yield ch_database


def make_outbox(client: Client, database: str, notifiers: tuple[str, ...] = NOTIFIERS) -> Outbox:
    return Outbox(ClickHouseWriter(client, database), client, database, notifiers, clock_ms=lambda: NOW_MS)


def table_rows(client: Client, database: str) -> list[dict[str, Any]]:
    return query_rows(client, f"SELECT * FROM `{database}`.alert_notifications FINAL ORDER BY notifier, starts_at")


def test_add_writes_one_pending_row_per_transition_and_notifier(ch_client: Client, outbox_database: str) -> None:
    outbox = make_outbox(ch_client, outbox_database)
    heard: list[list[OutboxRow]] = []
    outbox.listen(lambda rows: heard.append(list(rows)))
    t = transition("org-1", cluster="c-1")
    assert outbox.add([t]) == 2
    rows = table_rows(ch_client, outbox_database)
    assert [r["notifier"] for r in rows] == list(NOTIFIERS)
    for r in rows:
        assert r["delivery"] == PENDING and r["attempts"] == 0 and r["last_error"] == ""
        assert r["alert_key"] == t.alert_key and r["rule"] == t.rule and r["alert_state"] == "firing"
        assert r["account_id"] == "org-1" and r["cluster_id"] == "c-1"
        assert r["labels"] == dict(t.labels) and r["annotations"] == dict(t.annotations)
        assert r["signals"] == list(t.signals) and r["version"] == 0
    assert [len(batch) for batch in heard] == [2]
    assert {r.notification_id for r in heard[0]} == {notification_id(t, n) for n in NOTIFIERS}


def test_re_added_transition_is_skipped_and_never_overrides_a_later_state(ch_client: Client,
                                                                          outbox_database: str) -> None:
    outbox = make_outbox(ch_client, outbox_database)
    t = transition("org-2")
    outbox.add([t])
    (am_row,) = [r for r in outbox.pending("alertmanager")]
    outbox.update([am_row.with_state(DELIVERED, now_ms=NOW_MS + 1)])
    # A restart re-reads the batch: the same transition comes again.
    assert outbox.add([t]) == 0
    states = {r["notifier"]: r["delivery"] for r in table_rows(ch_client, outbox_database)}
    assert states == {"alertmanager": DELIVERED, "webhook": PENDING}
    assert outbox.pending("alertmanager") == []
    assert [r.transition for r in outbox.pending("webhook")] == [t]


def test_rows_read_back_hold_the_transition(ch_client: Client, outbox_database: str) -> None:
    outbox = make_outbox(ch_client, outbox_database, ("pagerduty",))
    firing, resolved = transition("org-3", cluster="c-3"), transition("org-3", cluster="c-3", state=RESOLVED)
    outbox.add([firing, resolved])
    got = outbox.pending("pagerduty")
    assert [r.transition for r in got] == [firing, resolved]
    assert all(r.notification.raised_at_ms == NOW_MS and r.created_ms == NOW_MS for r in got)


def test_firing_lists_alerts_whose_latest_delivered_transition_fires(ch_client: Client,
                                                                     outbox_database: str) -> None:
    outbox = make_outbox(ch_client, outbox_database, ("alertmanager",))
    still = transition("org-4")
    over, over_end = transition("org-5"), transition("org-5", state=RESOLVED)
    again = transition("org-6", starts_at_ms=T0_MS + 3_000_000)
    refused = transition("org-7")
    outbox.add([still, over, over_end, transition("org-6"), transition("org-6", state=RESOLVED), again, refused])
    rows = {(r.transition.labels["account_id"], r.transition.state, r.transition.starts_at_ms): r
            for r in outbox.pending("alertmanager")}
    done = [r.with_state(DELIVERED, now_ms=NOW_MS + 1) for k, r in rows.items() if k[0] != "org-7"]
    outbox.update([*done, rows["org-7", "firing", T0_MS].with_state(FAILED, now_ms=NOW_MS + 1, error="HTTP 400")])
    firing = outbox.firing("alertmanager")
    assert sorted((r.transition.labels["account_id"], r.transition.starts_at_ms) for r in firing) == [
        ("org-4", T0_MS), ("org-6", T0_MS + 3_000_000)]
    assert all(r.delivery == DELIVERED for r in firing)


def test_without_notifiers_add_stores_nothing(ch_client: Client, outbox_database: str) -> None:
    assert make_outbox(ch_client, outbox_database, ()).add([transition("org-8")]) == 0
    assert table_rows(ch_client, outbox_database) == []


def test_cluster_sink_stores_its_transitions_in_the_outbox(ch_client: Client, outbox_database: str) -> None:
    writer = ClickHouseWriter(ch_client, outbox_database)
    outbox = Outbox(writer, ch_client, outbox_database, ("webhook",), clock_ms=lambda: NOW_MS)
    sink = ClickHouseClusterSink(writer, outbox=outbox)
    members = [transition(f"org-c{i}", cluster="c-9", rule="cluster_extraction", action="takedown")
               for i in range(3)]
    assert asyncio.run(write_with_retry(sink, ClusterRows(), None, members))
    assert asyncio.run(write_with_retry(sink, ClusterRows(), None, members))  # a retried write adds nothing
    stored = table_rows(ch_client, outbox_database)
    assert sorted(r["account_id"] for r in stored) == ["org-c0", "org-c1", "org-c2"]
    assert {r["cluster_id"] for r in stored} == {"c-9"}


def operations_sql() -> dict[str, str]:
    """The SQL blocks of docs/operations.md "Alert delivery", by their leading comment."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    block = text.split("## Alert delivery", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    return {part.splitlines()[0].strip("- ").strip(): part for part in block.strip().split("\n\n")}


def test_operations_queries_run_and_re_drive_refused_rows(ch_client: Client, outbox_database: str) -> None:
    outbox = make_outbox(ch_client, outbox_database, ("alertmanager",))
    outbox.add([transition("org-ops-1"), transition("org-ops-2")])
    by_account = {r.transition.labels["account_id"]: r for r in outbox.pending("alertmanager")}
    first, second = by_account["org-ops-1"], by_account["org-ops-2"]
    outbox.update([first.with_state(FAILED, now_ms=NOW_MS + 1, error="HTTP 404 from http://am/api/v2/alerts"),
                   second.with_state(DELIVERED, now_ms=NOW_MS + 1)])
    queries = {k: v.replace("alert_notifications", f"`{outbox_database}`.alert_notifications")
               for k, v in operations_sql().items()}
    assert len(queries) == 5
    by_name = queries
    standing = query_rows(ch_client, by_name["where deliveries stand, per notifier"])
    assert {r["delivery"]: r["n"] for r in standing} == {"failed": 1, "delivered": 1}
    (refused,) = query_rows(ch_client, by_name["refused for good"])
    assert refused["account_id"] == "org-ops-1" and "HTTP 404" in refused["last_error"]
    (firing,) = query_rows(ch_client, by_name["the alerts firing now, as Alertmanager is told (latest transition "
                                              "per alert)"])
    assert firing["account"] == "org-ops-2"
    ch_client.command(by_name["send the refused ones again (then restart the worker)"])
    (again,) = outbox.pending("alertmanager")
    assert again.transition == first.transition and again.attempts == 0 and again.last_error == ""
    assert query_rows(ch_client, by_name["what is waiting, and why"])[0]["account_id"] == "org-ops-1"

"""The delivery task with real receivers on loopback: retries, nothing lost, restarts, re-sends, no secrets."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from pydantic import SecretStr

from jobs.embedded_broker import free_port
from pipeline.alerting.delivery import Delivery, backoff_s
from pipeline.alerting.notifiers import AlertmanagerNotifier, Notifier, PagerDutyNotifier, WebhookNotifier
from pipeline.alerting.notifiers.base import rfc3339
from pipeline.alerting.notifiers.pagerduty import dedup_key
from pipeline.alerting.outbox import DELIVERED, PENDING, Outbox
from pipeline.alerting.transitions import RESOLVED
from pipeline.metrics import WorkerMetrics
from pipeline.sinks.clickhouse import ClickHouseWriter, query_rows
from schemas.tables import ALERT_NOTIFICATIONS
from tests.support.alertmanager import Alertmanager, Receiver, alertmanager_installed, example_config
from tests.support.transitions import transition

pytestmark = pytest.mark.clickhouse

ROUTING_KEY = "pd-routing-key-0123456789abcdef"
DEADLINE_S = 60.0


@pytest.fixture
def database(ch_client: Client, ch_database: str) -> Iterator[str]:
    ch_client.command(f"CREATE DATABASE IF NOT EXISTS `{ch_database}`")
    ch_client.command(ALERT_NOTIFICATIONS.create_sql(ch_database))
    yield ch_database


def outbox_for(client: Client, database: str, notifiers: Sequence[Notifier]) -> Outbox:
    return Outbox(ClickHouseWriter(client, database), client, database, [n.name for n in notifiers])


def rows(client: Client, database: str) -> list[dict[str, Any]]:
    return query_rows(client, f"SELECT * FROM `{database}`.alert_notifications FINAL")


async def until(check: Callable[[], Any], what: str, timeout_s: float = DEADLINE_S) -> Any:
    """Poll ``check`` (run in a thread: it may query ClickHouse) until truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(0.1)


def all_delivered(client: Client, database: str, n: int) -> Callable[[], bool]:
    def check() -> bool:
        found = rows(client, database)
        return len(found) == n and all(r["delivery"] == DELIVERED for r in found)
    return check


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def fast(outbox: Outbox, notifiers: Sequence[Notifier], *, resend_s: float = 60.0, **options: Any) -> Delivery:
    """A Delivery retrying after 0.05, 0.1, 0.2, … at most 0.5 s."""
    return Delivery(outbox, notifiers, resend_s=resend_s, backoff_base_s=0.05, backoff_cap_s=0.5, **options)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(a, 1.0, 10.0) for a in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_pagerduty_down_then_back_nothing_lost_and_key_only_in_requests(
        ch_client: Client, database: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    alerts = [transition("org-pd-1"), transition("org-pd-2", cluster="c-pd"),
              transition("org-pd-1", state=RESOLVED)]

    async def scenario() -> None:
        with Receiver(statuses=[503, 503, 503], default=202) as pd:
            notifier = PagerDutyNotifier(pd.url + "/v2/enqueue", SecretStr(ROUTING_KEY))
            outbox = outbox_for(ch_client, database, [notifier])
            metrics = WorkerMetrics()
            delivery = fast(outbox, [notifier], resend_s=60, metrics=metrics)
            await delivery.start()
            try:
                assert await asyncio.to_thread(outbox.add, alerts) == 3
                await until(all_delivered(ch_client, database, 3), "every PagerDuty row delivered")
            finally:
                await delivery.stop()
            events = [r.body for r in pd.received("/v2/enqueue")]
        delivered = events[3:]
        assert len(events) >= 4  # three refused attempts (503), then the deliveries
        assert all(e["routing_key"] == ROUTING_KEY for e in events)
        order = [(e["dedup_key"], e["event_action"]) for e in delivered]
        key1 = dedup_key(alerts[0])
        assert order.index((key1, "trigger")) < order.index((key1, "resolve"))
        assert (dedup_key(alerts[1]), "trigger") in order
        stored = rows(ch_client, database)
        assert max(r["attempts"] for r in stored) >= 2
        assert all(ROUTING_KEY not in repr(r) for r in stored)
        assert ROUTING_KEY not in caplog.text
        assert "HTTP 503" in caplog.text  # the failures were logged, without the key
        sample = metrics.registry.get_sample_value
        assert sample("distillwatch_notifications_total", {"notifier": "pagerduty", "result": "sent"}) == 3
        assert (sample("distillwatch_notifications_total", {"notifier": "pagerduty", "result": "failed"}) or 0) >= 1
        assert sample("distillwatch_notification_queue", {"notifier": "pagerduty"}) == 0

    run(scenario)


def test_refused_notification_fails_for_good_without_retrying(ch_client: Client, database: str) -> None:
    async def scenario() -> None:
        with Receiver(default=400) as hook:
            notifier = WebhookNotifier(hook.url + "/hook")
            outbox = outbox_for(ch_client, database, [notifier])
            delivery = fast(outbox, [notifier], resend_s=60)
            await delivery.start()
            try:
                await asyncio.to_thread(outbox.add, [transition("org-bad")])
                (row,) = await until(lambda: [r for r in rows(ch_client, database) if r["delivery"] == "failed"],
                                     "the refused row marked failed")
                assert row["attempts"] == 1 and "HTTP 400" in row["last_error"]
                await asyncio.sleep(0.5)  # several backoffs long: a retry would have come
                assert len(hook.received()) == 1
            finally:
                await delivery.stop()

    run(scenario)


def test_rows_added_before_a_restart_are_delivered_after_it(ch_client: Client, database: str) -> None:
    async def scenario() -> None:
        with Receiver() as hook:
            notifier = WebhookNotifier(hook.url + "/hook")
            outbox = outbox_for(ch_client, database, [notifier])
            # The worker died after storing the rows, before any delivery.
            await asyncio.to_thread(outbox.add, [transition(f"org-r{i}", cluster="c-r") for i in range(4)])
            assert hook.received() == []
            restarted = fast(outbox_for(ch_client, database, [notifier]), [notifier])
            await restarted.start()
            try:
                await until(all_delivered(ch_client, database, 4), "the stored rows delivered after the restart")
            finally:
                await restarted.stop()
            (message,) = [r.body for r in hook.received("/hook")]  # one campaign, one message
            assert message["groupLabels"] == {"alertname": "extraction_score_high", "cluster_id": "c-r"}
            assert sorted(a["labels"]["account_id"] for a in message["alerts"]) == [f"org-r{i}" for i in range(4)]

    run(scenario)


def test_hung_receiver_delays_only_its_own_deliveries(ch_client: Client, database: str) -> None:
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # accepts connections (kernel backlog) and never answers

    async def scenario() -> None:
        with Receiver() as hook:
            stuck = AlertmanagerNotifier(f"http://127.0.0.1:{hung.getsockname()[1]}", resend_s=60, timeout_s=1.0)
            ok = WebhookNotifier(hook.url + "/hook")
            outbox = outbox_for(ch_client, database, [stuck, ok])
            delivery = fast(outbox, [stuck, ok], resend_s=60)
            await delivery.start()
            try:
                await asyncio.to_thread(outbox.add, [transition("org-h1"), transition("org-h2")])
                await until(lambda: len(hook.received("/hook")) == 1, "the webhook delivery")
                stalled = await until(
                    lambda: [r for r in rows(ch_client, database)
                             if r["notifier"] == "alertmanager" and r["attempts"] >= 1],
                    "a timed-out Alertmanager attempt")
                assert all(r["delivery"] == PENDING and "no answer" in r["last_error"] for r in stalled)
                webhook_rows = [r for r in rows(ch_client, database) if r["notifier"] == "webhook"]
                assert [r["delivery"] for r in webhook_rows] == [DELIVERED, DELIVERED]
            finally:
                await delivery.stop()

    try:
        run(scenario)
    finally:
        hung.close()


def test_firing_alerts_are_re_sent_until_resolved_also_after_a_restart(ch_client: Client, database: str) -> None:
    firing = transition("org-f1")
    path = "/api/v2/alerts"

    def posts_of(receiver: Receiver, account: str) -> list[dict[str, Any]]:
        return [a for r in receiver.received(path) for a in r.body if a["labels"]["account_id"] == account]

    async def scenario() -> None:
        with Receiver() as am:
            notifier = AlertmanagerNotifier(am.url, resend_s=0.3)
            outbox = outbox_for(ch_client, database, [notifier])
            delivery = fast(outbox, [notifier], resend_s=0.3)
            await delivery.start()
            await asyncio.to_thread(outbox.add, [firing])
            await until(lambda: len(posts_of(am, "org-f1")) >= 3, "the firing alert re-sent")
            await delivery.stop()
            seen = len(posts_of(am, "org-f1"))
            # Restarted: the still-firing alert is re-sent from the table, without a new outbox row.
            notifier2 = AlertmanagerNotifier(am.url, resend_s=0.3)
            outbox2 = outbox_for(ch_client, database, [notifier2])
            restarted = fast(outbox2, [notifier2], resend_s=0.3)
            await restarted.start()
            try:
                await until(lambda: len(posts_of(am, "org-f1")) >= seen + 2, "re-sends after the restart")
                assert len(rows(ch_client, database)) == 1
                await asyncio.to_thread(outbox2.add, [transition("org-f1", state=RESOLVED)])
                await until(all_delivered(ch_client, database, 2), "the resolution delivered")
                await asyncio.sleep(1.0)  # about three re-send intervals
                assert restarted.couriers["alertmanager"].firing == {}
            finally:
                await restarted.stop()
            posts = posts_of(am, "org-f1")
            ended = rfc3339(transition("org-f1", state=RESOLVED).ends_at_ms or 0)
            resolved_at = [i for i, a in enumerate(posts) if a["endsAt"] == ended]
            assert resolved_at == [len(posts) - 1]  # sent once, and nothing re-sent after it
            # Every firing post carries the same start (the outbox row's), before and after the restart.
            assert len({a["startsAt"] for a in posts[:-1]}) == 1

    run(scenario)


@pytest.mark.slow
@pytest.mark.skipif(not alertmanager_installed(), reason="prometheus-alertmanager is not installed")
def test_alert_raised_while_alertmanager_is_down_is_delivered_when_it_starts(
        ch_client: Client, database: str, tmp_path: Path) -> None:
    port = free_port()

    async def scenario() -> None:
        with Receiver() as hook:
            notifier = AlertmanagerNotifier(f"http://127.0.0.1:{port}", resend_s=60, timeout_s=2.0)
            outbox = outbox_for(ch_client, database, [notifier])
            delivery = fast(outbox, [notifier], resend_s=60)
            await delivery.start()
            am = Alertmanager(tmp_path / "am", example_config(hook.url + "/am"), port=port)
            try:
                fleet = [transition(f"org-d{i}", cluster="c-down") for i in range(3)]
                await asyncio.to_thread(outbox.add, fleet)
                await until(lambda: all(r["attempts"] >= 2 for r in rows(ch_client, database)),
                            "failed attempts while Alertmanager is down")
                await asyncio.to_thread(am.start)
                await until(all_delivered(ch_client, database, 3), "delivery once Alertmanager is up")
                held = await until(lambda: am.alerts(cluster_id="c-down"), "the alerts in Alertmanager")
                assert sorted(a["labels"]["account_id"] for a in held) == ["org-d0", "org-d1", "org-d2"]
                (message,) = await until(lambda: [r.body for r in hook.received("/am")], "the webhook notification")
                assert len(message["alerts"]) == 3
            finally:
                await delivery.stop()
                await asyncio.to_thread(am.stop)

    run(scenario)


def test_rows_beyond_the_memory_queue_wait_in_clickhouse_and_are_all_delivered(ch_client: Client,
                                                                               database: str) -> None:
    async def scenario() -> None:
        with Receiver() as hook:
            notifier = WebhookNotifier(hook.url + "/hook")
            outbox = outbox_for(ch_client, database, [notifier])
            delivery = fast(outbox, [notifier], resend_s=60, max_queue=2)
            await delivery.start()
            try:
                await asyncio.to_thread(outbox.add, [transition(f"org-q{i}", cluster=f"c-q{i}") for i in range(7)])
                assert len(delivery.couriers["webhook"].pending) <= 2
                await until(all_delivered(ch_client, database, 7), "every row delivered")
            finally:
                await delivery.stop()
            sent = sorted(a["labels"]["account_id"] for r in hook.received("/hook") for a in r.body["alerts"])
            assert sent == [f"org-q{i}" for i in range(7)]  # each once
            assert all(r.body["version"] == "4" and r.headers["Content-Type"].startswith("application/json")
                       for r in hook.received("/hook"))

    run(scenario)

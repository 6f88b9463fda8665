"""Demo traffic through a worker paging a real Alertmanager 0.25 (issue 14's end-to-end test).

A loadgen scenario with a hydra fleet, per-account attackers and benign look-alikes runs through
a worker with DW_ALERTMANAGER_URL set. Alertmanager (infra/alertmanager/alertmanager.yml, waits
shortened) notifies a local webhook receiver. Checked: the page alerts the worker raised are held
by Alertmanager with their labels; the fleet is one campaign (cluster_id) and each campaign group is
paged once (later notifications only add members); no benign account was paged; after a worker
crash and restart nothing is paged twice.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from jobs.embedded_broker import EmbeddedBroker, free_port
from jobs.loadgen.scenario import DEFAULT_START_MS, ScenarioConfig, generate, labels
from jobs.loadgen.sink import produce_kafka
from jobs.worker_process import WorkerProcess
from pipeline.settings import Settings, load_settings
from pipeline.topics import ensure_topics
from tests.support.alertmanager import Alertmanager, Receiver, alertmanager_installed, example_config, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse,
              pytest.mark.skipif(not alertmanager_installed(), reason="prometheus-alertmanager is not installed")]

WEBHOOK = "/alertmanager-webhook"
DURATION_S = 15  # wall-clock seconds of traffic
SPEEDUP = 80  # event time runs this much faster: 20 minutes of traffic
MIX = {"chat_app": 20, "hobbyist": 40, "eval_harness": 4, "coding_assistant": 4, "classifier_pipeline": 4,
       "reasoning_harvester": 2, "logprob_miner": 2, "capability_sweeper": 1, "hydra_fleet": 12}
# Longer than the traffic's spread, so a campaign's members reach Alertmanager within one group_wait, and
# than a fragment's life in wall-clock time: the rule's `for` is event time (0.75 s here), so a sub-cluster
# that merges later resolves before its first notification only within group_wait (the example config:
# 3m). A fragment that only seemed one because a partition was read late is never fired (the linking
# inputs' watermark); before it, on a loaded 2-core CI machine, one was paged 90 s before its merge.
# group_interval shorter: any change of a group after its first notification (a re-page) notifies within it.
GROUP_WAIT = "90s"
GROUP_INTERVAL = "30s"
GROUP_INTERVAL_S = 30
DEADLINE_S = 420.0
# Per account and rule, the cluster id of its latest page firing (a merge resolves an alert and fires it
# again under the surviving id: the earlier row keeps the retired one).
PAGE_ALERTS_SQL = ("SELECT account_id, rule, argMax(cluster_id, (fired_ts, emitted_at)) AS cluster_id "
                   "FROM alerts FINAL WHERE mode = 'page' AND suppressed_by = '' GROUP BY account_id, rule")
ACTIVE_CLUSTERS_SQL = "SELECT cluster_id, account_ids FROM clusters FINAL WHERE active = 1"
RETIRED_CLUSTERS_SQL = "SELECT cluster_id, account_ids, merged_into FROM clusters FINAL WHERE active = 0"
CLUSTER_RULE = "cluster_extraction"
OUTBOX_SQL = ("SELECT delivery, count() AS n FROM alert_notifications FINAL "
              "WHERE notifier = 'alertmanager' GROUP BY delivery")


def query(worker: WorkerProcess, sql: str) -> list[dict[str, Any]] | None:
    """Rows from the worker's /query view; None while it is not up."""
    url = f"{worker.base_url}/query?sql={urllib.parse.quote(sql)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return list(json.loads(response.read())["rows"])
    except OSError:
        return None


def caught_up(worker: WorkerProcess, produced: int) -> bool:
    """Every produced event handled, and nothing waiting for the linking stages (measured every 5 s)."""
    stats: dict[str, Any] | None = worker.stats()  # type: ignore[assignment]
    if not stats or stats["events_in"] < produced:
        return False
    return not any(stats["partition_lag"].values()) and not any(stats["linking"].get("backlog", {}).values())


def outbox_settled(worker: WorkerProcess) -> dict[str, int] | None:
    """Delivery states of the Alertmanager rows once there are some and none is pending."""
    rows = query(worker, OUTBOX_SQL)
    if not rows:
        return None
    states = {r["delivery"]: int(r["n"]) for r in rows}
    return states if states.get("pending", 0) == 0 else None


def firing_notifications(receiver: Receiver) -> Counter[str]:
    """Alertmanager's notifications with firing alerts, per aggregation group (groupKey)."""
    return Counter(r.body["groupKey"] for r in receiver.received(WEBHOOK) if r.body["status"] == "firing")


def notified_clusters(receiver: Receiver) -> set[str]:
    return {r.body["groupLabels"].get("cluster_id", "") for r in receiver.received(WEBHOOK)}


def notifications_by_group(receiver: Receiver) -> dict[str, list[dict[str, Any]]]:
    """Alertmanager's notifications per aggregation group (groupKey: route and group labels), in order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in receiver.received(WEBHOOK):
        groups.setdefault(r.body["groupKey"], []).append(r.body)
    return groups


def assert_each_notification_adds_alerts(group: str, messages: list[dict[str, Any]]) -> None:
    """A group's notifications in order: each holds more firing alerts than the one before, none resolved."""
    previous: set[str] = set()
    for message in messages:
        assert all(a["status"] == "firing" for a in message["alerts"]), (group, message)
        firing = {a["fingerprint"] for a in message["alerts"]}
        assert firing > previous, f"{group}: a notification repeated or dropped alerts"
        previous = firing


def fragment_report(worker: WorkerProcess, groups: dict[str, list[dict[str, Any]]]) -> str:
    """What to read when a campaign was paged under several ids: each paged id's cluster versions and
    alerts (event and wall-clock times), and the linking process's watermark."""
    ids = ", ".join(f"'{m[0]['groupLabels']['cluster_id']}'" for m in groups.values())
    versions = query(worker, "SELECT cluster_id, size, score, updated_ts, active, merged_into, emitted_at "
                             f"FROM cluster_history WHERE cluster_id IN ({ids}) ORDER BY emitted_at")
    alerts = query(worker, "SELECT cluster_id, account_id, fired_ts, emitted_at FROM alerts "
                           f"WHERE cluster_id IN ({ids}) ORDER BY emitted_at")
    stats: dict[str, Any] = worker.stats() or {}  # type: ignore[assignment]
    linking = {k: stats.get("linking", {}).get(k) for k in ("watermark_ms", "alerts_held", "backlog")}
    return "\n".join([*map(str, versions or []), *map(str, alerts or []), str(linking)])


def start_worker(settings: Settings, log: Path) -> WorkerProcess:
    worker = WorkerProcess(settings, bounded=False, log_path=log)
    wait_for(lambda: worker.stats() is not None or worker.proc.poll() is not None, timeout_s=DEADLINE_S,
             what="the worker's web views")
    assert worker.proc.poll() is None, worker.log_tail()
    return worker


def crash_worker(worker: WorkerProcess) -> None:
    # kill -9: batches since the last checkpoint are read again after the restart, delivery states
    # not yet stored are lost; neither may page anyone twice.
    worker.proc.send_signal(signal.SIGKILL)
    worker.wait(timeout_s=60)


def test_attackers_are_paged_once_per_campaign_and_never_twice(tmp_path: Path) -> None:
    span_ms = DURATION_S * SPEEDUP * 1000
    # Stamped now; the accounts' hours and weekday are fixed, so the traffic does not depend on when
    # the test runs.
    config = ScenarioConfig(seed=11, start_ms=int(time.time() * 1000) - span_ms, duration_s=span_ms / 1000,
                            rate_eps=150, mix=MIX, profile_start_ms=DEFAULT_START_MS)
    truth = labels(config)
    fleet = {a for a, lab in truth.items() if lab.archetype == "hydra_fleet"}
    with Receiver() as hook, EmbeddedBroker(log_path=tmp_path / "broker.log") as broker, Alertmanager(
            tmp_path / "alertmanager", example_config(hook.url + WEBHOOK, group_wait=GROUP_WAIT,
                                                      group_interval=GROUP_INTERVAL)) as am:
        settings = load_settings(kafka_bootstrap=broker.bootstrap, data_dir=tmp_path / "worker",
                                 web_port=free_port(), alertmanager_url=am.url,
                                 grafana_url="http://grafana.test:3000", checkpoint_interval_s=2)
        ensure_topics(settings)
        worker = start_worker(settings, tmp_path / "worker.log")
        try:
            produced = produce_kafka(generate(config), broker.bootstrap, settings.topic_events, speedup=SPEEDUP)
            wait_for(lambda: caught_up(worker, produced), timeout_s=DEADLINE_S, what="the worker to catch up")
            # Every page alert the worker raised is delivered, and Alertmanager notified.
            wait_for(lambda: outbox_settled(worker), timeout_s=DEADLINE_S, what="the outbox delivered")
            time.sleep(5)  # the linking stage's last cluster versions: let their alerts through too
            wait_for(lambda: caught_up(worker, produced) and outbox_settled(worker), timeout_s=DEADLINE_S,
                     what="the outbox delivered")
            paged = query(worker, PAGE_ALERTS_SQL) or []
            assert paged, "the scenario raised no page alert:\n" + worker.log_tail()
            held = {(a["labels"]["account_id"], a["labels"]["alertname"]): a for a in am.alerts()}

            # 1. Alertmanager holds the worker's page alerts, with the labels of the contract.
            for row in paged:
                alert = held.get((row["account_id"], row["rule"]))
                assert alert is not None, f"{row} is not in Alertmanager"
                # model is left out when empty (unknown, or a campaign's alert): an empty label is an absent one
                assert {"alertname", "severity", "account_id", "action", "mode"} <= set(alert["labels"])
                assert alert["labels"].get("cluster_id", "") == row["cluster_id"]
                assert alert["annotations"]["dashboard_url"].startswith("http://grafana.test:3000/d/")
            assert any(a["labels"].get("model") for a in held.values())
            # 2. No benign account paged; the attackers are.
            paged_accounts = {a for a, _ in held if a}
            assert {a for a in paged_accounts if not truth[a].is_attack} == set()
            assert paged_accounts & fleet and paged_accounts - fleet
            # 3. Campaigns. The fleet is one active cluster now, and its members' campaign alerts that
            # still fire all carry its id: when the fleet was first linked as smaller clusters that merged
            # later, the retired ids' alerts resolved at the merge and fired again under the surviving
            # id, and the retired ids' clusters rows name it (merged_into). The rule's `for` outlasts the
            # merges, so no fragment was paged: Alertmanager notified one group for the campaign, whose
            # later notifications only add members (the campaign grew), never repeat nor resolve one.
            active = {c["cluster_id"]: set(c["account_ids"]) for c in query(worker, ACTIVE_CLUSTERS_SQL) or []}
            campaign = max((c for c in active if active[c] & fleet), key=lambda c: len(active[c] & fleet))
            assert active[campaign] <= fleet and len(active[campaign]) >= len(fleet) // 2
            campaign_alerts = {acct: a["labels"].get("cluster_id", "") for (acct, rule), a in held.items()
                               if acct in fleet and rule == CLUSTER_RULE}
            assert campaign_alerts and set(campaign_alerts.values()) == {campaign}, campaign_alerts
            assert set(campaign_alerts) == active[campaign]
            for row in query(worker, RETIRED_CLUSTERS_SQL) or []:
                if set(row["account_ids"]) <= fleet:
                    assert row["merged_into"] == campaign, row
            wait_for(lambda: campaign in notified_clusters(hook), timeout_s=DEADLINE_S,
                     what="Alertmanager's notification for the campaign")
            time.sleep(GROUP_INTERVAL_S + 5)  # a later notification of a changed group would come by now
            fleet_groups = {group: messages for group, messages in notifications_by_group(hook).items()
                            if messages[0]["groupLabels"].get("alertname") == CLUSTER_RULE
                            and any(a["labels"]["account_id"] in fleet for m in messages for a in m["alerts"])}
            assert [m[0]["groupLabels"]["cluster_id"] for m in fleet_groups.values()] == [campaign], \
                "the campaign was paged under several cluster ids:\n" + fragment_report(worker, fleet_groups)
            for group, messages in fleet_groups.items():
                assert_each_notification_adds_alerts(group, messages)
            before = firing_notifications(hook)
            ends_before = {k: a["endsAt"] for k, a in held.items()}
        finally:
            crash_worker(worker)

        # 4. Restart: the firing alerts are re-sent (same identity), nothing is paged again.
        worker = start_worker(settings, tmp_path / "worker-restarted.log")
        try:
            wait_for(lambda: all(a["endsAt"] > ends_before.get((a["labels"]["account_id"], a["labels"]["alertname"]),
                                                               "")
                                 for a in am.alerts()), timeout_s=DEADLINE_S,
                     what="the restarted worker re-sending the firing alerts")
            time.sleep(GROUP_INTERVAL_S + 5)
            after = firing_notifications(hook)
            assert after == before, f"paged again after the restart: {after - before}"
            assert {(a["labels"]["account_id"], a["labels"]["alertname"]) for a in am.alerts()} == set(held)
        finally:
            crash_worker(worker)

"""The Alertmanager notifier against the real Alertmanager 0.25, configured from infra/alertmanager."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.alerting.notifiers.base import SendResult, fingerprint, present_labels
from pipeline.alerting.transitions import RESOLVED, AlertTransition
from tests.support.alertmanager import (
    EXAMPLE_CONFIG,
    Alertmanager,
    Receiver,
    example_config,
    now_ms,
    send,
    wait_for,
)
from tests.support.transitions import transition

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/usr/bin/prometheus-alertmanager").exists(),
                                                   reason="prometheus-alertmanager is not installed")]

WEBHOOK_PATH = "/am-webhook"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Alertmanager]:
    with Alertmanager(tmp_path_factory.mktemp("alertmanager"), example_config(receiver.url + WEBHOOK_PATH)) as am:
        yield am


def test_example_config_is_valid() -> None:
    done = subprocess.run(["amtool", "check-config", str(EXAMPLE_CONFIG)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_posted_alert_is_held_with_its_labels_and_fingerprint(alertmanager: Alertmanager) -> None:
    t = transition("org-am-1", cluster="c-am-1", starts_at_ms=now_ms() - 60_000)
    assert send(alertmanager, [t]) == [SendResult("delivered")]
    (held,) = wait_for(lambda: alertmanager.alerts(account_id="org-am-1"), what="the alert in Alertmanager")
    assert held["labels"] == present_labels(t.labels)
    assert {"alertname", "severity", "account_id", "cluster_id", "model", "action", "mode"} <= set(held["labels"])
    assert held["annotations"]["runbook_url"] == t.annotations["runbook_url"]
    assert held["generatorURL"] == t.annotations["dashboard_url"]
    assert held["status"]["state"] in ("active", "unprocessed")
    assert held["fingerprint"] == fingerprint(present_labels(t.labels))


def test_resend_keeps_one_alert_and_resolved_alert_ends(alertmanager: Alertmanager) -> None:
    start = now_ms() - 60_000
    firing = transition("org-am-2", starts_at_ms=start)
    for _ in range(3):
        assert send(alertmanager, [firing])[0].ok
    assert len(wait_for(lambda: alertmanager.alerts(account_id="org-am-2"), what="the alert")) == 1
    resolved = transition("org-am-2", state=RESOLVED, starts_at_ms=start, ends_at_ms=now_ms() - 1000)
    assert send(alertmanager, [resolved])[0].ok
    wait_for(lambda: not alertmanager.alerts(account_id="org-am-2"), what="the resolved alert to leave the list")


def test_grouping_by_cluster_sends_one_notification_per_campaign(alertmanager: Alertmanager,
                                                                 receiver: Receiver) -> None:
    start = now_ms() - 60_000
    fleets = {f"c-fleet-{k}": [f"org-fleet-{k}-{i}" for i in range(12)] for k in range(2)}
    batch = [transition(a, cluster=c, rule="fleet_test", starts_at_ms=start) for c, accts in fleets.items()
             for a in accts]
    assert all(r.ok for r in send(alertmanager, batch))

    def groups() -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for r in receiver.received(WEBHOOK_PATH):
            if r.body["groupLabels"].get("alertname") == "fleet_test":
                found.setdefault(r.body["groupLabels"]["cluster_id"], []).append(r.body)
        return found

    got = wait_for(lambda: (g := groups()) and len(g) == 2 and g, what="one notification per campaign")
    time.sleep(3)  # past group_interval: a second notification for a group would have come by now
    got = groups()
    assert sorted(got) == sorted(fleets)
    for cluster, accounts in fleets.items():
        assert len(got[cluster]) == 1, [(m["status"], len(m["alerts"])) for m in got[cluster]]
        (message,) = got[cluster]
        assert message["status"] == "firing"
        assert sorted(a["labels"]["account_id"] for a in message["alerts"]) == sorted(accounts)
        assert message["commonLabels"]["cluster_id"] == cluster


def test_a_sub_cluster_resolved_within_the_campaign_wait_pages_nobody(tmp_path: Path, receiver: Receiver) -> None:
    """The example's campaign route waits before a campaign's first page (3m, here 10 s): a sub-cluster
    whose alerts resolve at its merge within that wait pages nobody, and its members arrive in the
    surviving campaign's one notification."""
    path, wait_s, rule = "/am-fragment", 10, "cluster_extraction"
    config = example_config(receiver.url + path)
    (campaigns,) = [r for r in config["route"]["routes"] if f'alertname="{rule}"' in r.get("matchers", [])]
    campaigns["group_wait"] = f"{wait_s}s"
    start = now_ms() - 60_000

    def member(account: str, cluster: str, **kw: Any) -> AlertTransition:
        return transition(account, cluster=cluster, rule=rule, action="takedown", starts_at_ms=start, **kw)

    survivors, fragment = [f"org-main-{i}" for i in range(3)], [f"org-frag-{i}" for i in range(3)]
    with Alertmanager(tmp_path, config) as am:
        sent_at = time.monotonic()
        assert all(r.ok for r in send(am, [member(a, "c-main") for a in survivors]
                                      + [member(a, "c-frag") for a in fragment]))
        merge = [member(a, "c-frag", state=RESOLVED, ends_at_ms=now_ms()) for a in fragment]
        assert all(r.ok for r in send(am, merge + [member(a, "c-main") for a in fragment]))
        assert time.monotonic() - sent_at < wait_s / 2, "posting took too long for the fragment to resolve in time"

        def notified() -> dict[str, list[dict[str, Any]]]:
            found: dict[str, list[dict[str, Any]]] = {}
            for r in receiver.received(path):
                found.setdefault(r.body["groupLabels"]["cluster_id"], []).append(r.body)
            return found

        wait_for(lambda: "c-main" in notified(), timeout_s=wait_s + 30, what="the campaign's notification")
        time.sleep(3)  # both groups opened together: the fragment's wait is over as well
    got = notified()
    assert sorted(got) == ["c-main"], {c: [m["status"] for m in ms] for c, ms in got.items()}
    (message,) = got["c-main"]
    assert sorted(a["labels"]["account_id"] for a in message["alerts"]) == sorted(survivors + fragment)

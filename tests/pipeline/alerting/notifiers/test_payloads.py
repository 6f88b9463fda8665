"""What each notifier puts on the wire, without a receiver."""

from __future__ import annotations

from pydantic import SecretStr

from pipeline.alerting.notifiers import configured_notifiers
from pipeline.alerting.notifiers.alertmanager import ENDS_AFTER_RESENDS, AlertmanagerNotifier
from pipeline.alerting.notifiers.base import HttpNotifier, Notification, fingerprint, present_labels, rfc3339
from pipeline.alerting.notifiers.pagerduty import PagerDutyNotifier, dedup_key
from pipeline.alerting.notifiers.webhook import ZERO_TIME, WebhookNotifier
from pipeline.alerting.transitions import RESOLVED
from pipeline.settings import load_settings
from tests.support.transitions import T0_MS, transition

NOW_MS = T0_MS + 3_600_000
KEY = "R0UTINGKEY-not-for-logs"


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(T0_MS) == "2026-02-12T09:30:00.000Z"
    assert rfc3339(T0_MS + 1) == "2026-02-12T09:30:00.001Z"


def test_fingerprint_follows_prometheus_model() -> None:
    # The empty set hashes to FNV-1a's offset basis; the Alertmanager test checks real label sets.
    assert fingerprint({}) == "cbf29ce484222325"
    assert fingerprint({"foo": "bar"}) != fingerprint({"foo": "baz"})
    assert fingerprint({"a": "b", "c": "d"}) == fingerprint({"c": "d", "a": "b"})


def test_alertmanager_firing_alert_has_labels_and_ends_after_four_resends() -> None:
    notifier = AlertmanagerNotifier("http://am:9093/", resend_s=60, clock_ms=lambda: NOW_MS)
    assert notifier.url == "http://am:9093/api/v2/alerts"
    alert = notifier.alert(transition("org-7", cluster="c-1"))
    assert alert["labels"] == {"alertname": "extraction_score_high", "severity": "critical", "account_id": "org-7",
                               "cluster_id": "c-1", "model": "frontier-1", "action": "suspend", "mode": "page"}
    assert set(alert["annotations"]) == {"summary", "description", "runbook_url", "dashboard_url"}
    assert alert["startsAt"] == rfc3339(T0_MS)
    assert alert["endsAt"] == rfc3339(NOW_MS + ENDS_AFTER_RESENDS * 60_000)
    # Raised by the outbox: starts then (a group whose first alert looks old would flush at once).
    raised = notifier.alert(transition("org-7"), raised_at_ms=NOW_MS - 5000)
    assert raised["startsAt"] == rfc3339(NOW_MS - 5000)
    assert alert["generatorURL"].endswith("/d/dw-account/account-drill-down?var-account=org-7")


def test_alertmanager_drops_empty_labels_and_resolves_no_later_than_now() -> None:
    notifier = AlertmanagerNotifier("http://am:9093", resend_s=60, clock_ms=lambda: NOW_MS)
    alert = notifier.alert(transition("org-7", state=RESOLVED, ends_at_ms=T0_MS + 60_000))
    assert "cluster_id" not in alert["labels"]
    assert alert["endsAt"] == rfc3339(T0_MS + 60_000)
    future = notifier.alert(transition("org-7", state=RESOLVED, ends_at_ms=NOW_MS + 3_600_000))
    assert future["endsAt"] == rfc3339(NOW_MS)


def test_pagerduty_trigger_event() -> None:
    notifier = PagerDutyNotifier("http://pd/v2/enqueue", SecretStr(KEY))
    t = transition("org-7", cluster="c-1")
    event = notifier.event(t)
    assert event["routing_key"] == KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == dedup_key(t) == dedup_key(transition("org-7", cluster="c-1", score=50))
    payload = event["payload"]
    assert payload["summary"] == "org-7: extraction score 92"
    assert payload["severity"] == "critical"
    assert payload["source"] == "distillwatch/org-7"
    details = payload["custom_details"]
    assert details["signals"] == {"reasoning_harvest": 31.0, "distribution_probing": 24.5}
    assert details["recommended_action"] == "suspend"
    assert details["score"] == 91.5
    assert details["cluster_id"] == "c-1"
    assert {link["text"] for link in event["links"]} == {"Grafana dashboard", "Runbook"}


def test_pagerduty_resolve_event_and_severity_mapping() -> None:
    notifier = PagerDutyNotifier("http://pd/v2/enqueue", SecretStr(KEY))
    t = transition("org-7", state=RESOLVED)
    assert notifier.event(t) == {"routing_key": KEY, "event_action": "resolve",
                                 "dedup_key": dedup_key(transition("org-7"))}
    assert notifier.event(transition("org-8", severity="warning"))["payload"]["severity"] == "warning"
    assert notifier.event(transition("org-8", severity="odd"))["payload"]["severity"] == "error"


def test_pagerduty_key_never_in_repr_or_redacted_errors() -> None:
    notifier = PagerDutyNotifier("http://pd/v2/enqueue", SecretStr(KEY))
    assert KEY not in repr(notifier)
    assert notifier.redact(f"HTTP 400: bad key {KEY}") == "HTTP 400: bad key ***"
    assert isinstance(notifier, HttpNotifier)


def test_webhook_groups_by_alertname_and_cluster_in_alertmanager_shape() -> None:
    notifier = WebhookNotifier("http://hook", external_url="http://grafana.test:3000")
    fleet = [Notification(f"n{i}", transition(f"org-f{i}", cluster="c-fleet")) for i in range(3)]
    message = notifier.message(fleet)
    assert message["version"] == "4"
    assert message["groupKey"] == '{}:{alertname="extraction_score_high", cluster_id="c-fleet"}'
    assert message["status"] == "firing"
    assert message["groupLabels"] == {"alertname": "extraction_score_high", "cluster_id": "c-fleet"}
    assert "account_id" not in message["commonLabels"]
    assert message["commonLabels"]["cluster_id"] == "c-fleet"
    assert message["commonAnnotations"]["runbook_url"] == "https://runbooks.test/distillwatch/extraction"
    assert message["externalURL"] == "http://grafana.test:3000"
    alert = message["alerts"][0]
    assert alert["status"] == "firing" and alert["endsAt"] == ZERO_TIME
    assert alert["fingerprint"] == fingerprint(present_labels(fleet[0].transition.labels))
    assert set(alert) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    resolved = notifier.message([Notification("r", transition("org-1", state=RESOLVED))])
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] == rfc3339(T0_MS + 15 * 60_000)


def test_configured_notifiers_follow_settings() -> None:
    assert configured_notifiers(load_settings()) == []
    names = [n.name for n in configured_notifiers(load_settings(
        alertmanager_url="http://am:9093", pagerduty_routing_key=KEY, webhook_url="http://hook"))]
    assert names == ["alertmanager", "pagerduty", "webhook"]

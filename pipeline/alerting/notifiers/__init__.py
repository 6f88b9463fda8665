"""Receivers of alert transitions: Alertmanager, PagerDuty Events v2, a generic webhook.

``configured_notifiers(settings)`` builds the ones whose settings are present; the outbox
(``pipeline/alerting/outbox.py``) writes one row per transition and notifier, and the delivery
task (``pipeline/alerting/delivery.py``) sends them through ``Notifier.send``.
"""

from __future__ import annotations

from pipeline.alerting.notifiers.alertmanager import AlertmanagerNotifier
from pipeline.alerting.notifiers.base import Notification, Notifier, SendResult
from pipeline.alerting.notifiers.pagerduty import PagerDutyNotifier
from pipeline.alerting.notifiers.webhook import WebhookNotifier
from pipeline.settings import Settings

__all__ = ["AlertmanagerNotifier", "Notification", "Notifier", "PagerDutyNotifier", "SendResult",
           "WebhookNotifier", "configured_notifiers"]


def configured_notifiers(settings: Settings) -> list[Notifier]:
    """Every notifier whose settings are set (none: alerts stay in ClickHouse only)."""
    found: list[Notifier] = []
    if settings.alertmanager_url:
        found.append(AlertmanagerNotifier(settings.alertmanager_url, resend_s=settings.notify_resend_s))
    if settings.pagerduty_routing_key.get_secret_value():
        found.append(PagerDutyNotifier(settings.pagerduty_url, settings.pagerduty_routing_key))
    if settings.webhook_url:
        found.append(WebhookNotifier(settings.webhook_url, external_url=settings.grafana_url))
    return found

"""PagerDuty Events API v2: one ``trigger`` or ``resolve`` event per notification to DW_PAGERDUTY_URL.

The ``dedup_key`` is derived from the alert's labels (``AlertTransition.alert_key``), so it is
the same for one rule and account (or cluster) across restarts: a re-sent trigger joins the
open incident and the resolve closes it. The routing key (DW_PAGERDUTY_ROUTING_KEY) goes in
the request body only; it is redacted from every error text this notifier returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr

from pipeline.alerting.notifiers.base import (
    REQUEST_TIMEOUT_S,
    HttpNotifier,
    Notification,
    SendResult,
    link,
    rfc3339,
)
from pipeline.alerting.transitions import FIRING, AlertTransition

CLIENT = "distillwatch"
DEDUP_PREFIX = "distillwatch-"
SUMMARY_MAX_CHARS = 1024  # PagerDuty's limit on payload.summary
# Rule severities → the four PagerDuty knows; anything else pages as "error".
SEVERITY = {"critical": "critical", "page": "critical", "error": "error", "high": "error",
            "warning": "warning", "medium": "warning", "info": "info", "low": "info"}
DEFAULT_SEVERITY = "error"


class PagerDutyNotifier(HttpNotifier):
    name = "pagerduty"

    def __init__(self, url: str, routing_key: SecretStr, *, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        key = routing_key.get_secret_value()
        if not key:
            raise ValueError("DW_PAGERDUTY_ROUTING_KEY is empty: the PagerDuty notifier needs a routing key")
        super().__init__(timeout_s=timeout_s, secrets=[key])
        self.url = url
        self._routing_key = routing_key

    def __repr__(self) -> str:
        return f"PagerDutyNotifier(url={self.url!r}, routing_key=**********)"

    async def send(self, batch: Sequence[Notification]) -> list[SendResult]:
        # Events v2 takes one event per request; in order, so a trigger precedes its resolve.
        return [await self.post_json(self.url, self.event(n.transition)) for n in batch]

    def event(self, t: AlertTransition) -> dict[str, Any]:
        """The Events v2 body for one transition (routing key included)."""
        base: dict[str, Any] = {
            "routing_key": self._routing_key.get_secret_value(),
            "event_action": "trigger" if t.state == FIRING else "resolve",
            "dedup_key": dedup_key(t),
        }
        if t.state != FIRING:
            return base  # PagerDuty ignores a payload on resolve
        labels, notes = t.labels, t.annotations
        subject = labels.get("account_id") or labels.get("cluster_id") or "unknown"
        summary = notes.get("summary") or f"{t.rule}: {subject} (score {t.score:.0f})"
        links = [{"href": url, "text": text} for url, text in
                 ((link(notes, "dashboard_url"), "Grafana dashboard"), (link(notes, "runbook_url"), "Runbook"))
                 if url]
        base.update({
            "client": CLIENT,
            **({"client_url": links[0]["href"]} if links else {}),
            "links": links,
            "payload": {
                "summary": summary[:SUMMARY_MAX_CHARS],
                "source": f"distillwatch/{subject}",
                "severity": SEVERITY.get(labels.get("severity", "").lower(), DEFAULT_SEVERITY),
                "timestamp": rfc3339(t.starts_at_ms),
                "component": subject,
                "group": labels.get("cluster_id", ""),
                "class": t.rule,
                "custom_details": {
                    "rule": t.rule,
                    "score": round(t.score, 2),
                    "recommended_action": labels.get("action", ""),
                    "signals": dict(t.signals),
                    "account_id": labels.get("account_id", ""),
                    "cluster_id": labels.get("cluster_id", ""),
                    "model": labels.get("model", ""),
                    "mode": labels.get("mode", ""),
                    "description": notes.get("description", ""),
                    "labels": dict(labels),
                },
            },
        })
        return base


def dedup_key(t: AlertTransition) -> str:
    """Stable per alert (its labels: rule, account or cluster, …) across restarts."""
    return DEDUP_PREFIX + t.alert_key

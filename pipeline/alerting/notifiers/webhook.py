"""A generic webhook (DW_WEBHOOK_URL) in Alertmanager's webhook JSON shape (version "4").

Receivers written for Alertmanager's ``webhook_config`` work unchanged. The notifications of one
send are grouped as the example Alertmanager route groups them (``GROUP_BY``: alertname,
cluster_id), one POST per group, so a campaign's members arrive together. Unlike Alertmanager,
each transition is posted once (no group_interval re-sends); ``fingerprint`` is computed the
way Alertmanager computes it, so the same alert has the same fingerprint on both paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.alerting.notifiers.base import (
    REQUEST_TIMEOUT_S,
    HttpNotifier,
    Notification,
    SendResult,
    fingerprint,
    link,
    present_labels,
    rfc3339,
)
from pipeline.alerting.transitions import FIRING, RESOLVED

GROUP_BY = ("alertname", "cluster_id")
RECEIVER = "distillwatch"
WEBHOOK_VERSION = "4"
# Alertmanager writes a firing alert's unknown end as Go's zero time.
ZERO_TIME = "0001-01-01T00:00:00Z"


class WebhookNotifier(HttpNotifier):
    name = "webhook"

    def __init__(self, url: str, *, external_url: str = "", timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        super().__init__(timeout_s=timeout_s)
        self.url = url
        self.external_url = external_url

    async def send(self, batch: Sequence[Notification]) -> list[SendResult]:
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, n in enumerate(batch):
            labels = present_labels(n.transition.labels)
            groups.setdefault(tuple(labels.get(k, "") for k in GROUP_BY), []).append(i)
        results: list[SendResult] = [SendResult("retry")] * len(batch)
        for members in groups.values():
            result = await self.post_json(self.url, self.message([batch[i] for i in members]))
            for i in members:
                results[i] = result
        return results

    def message(self, group: Sequence[Notification]) -> dict[str, Any]:
        """One webhook message for notifications sharing the GROUP_BY labels."""
        alerts = [self._alert(n) for n in group]
        label_sets = [a["labels"] for a in alerts]
        note_sets = [a["annotations"] for a in alerts]
        group_labels = {k: v for k, v in label_sets[0].items() if k in GROUP_BY}
        group_key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(group_labels.items())) + "}"
        return {
            "version": WEBHOOK_VERSION,
            "groupKey": group_key,
            "truncatedAlerts": 0,
            "status": FIRING if any(a["status"] == FIRING for a in alerts) else RESOLVED,
            "receiver": RECEIVER,
            "groupLabels": group_labels,
            "commonLabels": _common(label_sets),
            "commonAnnotations": _common(note_sets),
            "externalURL": self.external_url,
            "alerts": alerts,
        }

    @staticmethod
    def _alert(n: Notification) -> dict[str, Any]:
        t = n.transition
        labels = present_labels(t.labels)
        resolved = t.state != FIRING
        return {
            "status": t.state,
            "labels": labels,
            "annotations": present_labels(t.annotations),
            "startsAt": rfc3339(t.starts_at_ms),
            "endsAt": rfc3339(t.ends_at_ms) if resolved and t.ends_at_ms is not None else ZERO_TIME,
            "generatorURL": link(t.annotations, "dashboard_url"),
            "fingerprint": fingerprint(labels),
        }


def _common(sets: Sequence[dict[str, str]]) -> dict[str, str]:
    """The pairs every set holds with the same value."""
    first, *rest = sets
    return {k: v for k, v in first.items() if all(s.get(k) == v for s in rest)}

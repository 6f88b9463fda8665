"""Alertmanager v2: ``POST {DW_ALERTMANAGER_URL}/api/v2/alerts``, the way Prometheus sends.

A firing alert goes with ``endsAt`` = now + 4 × the resend interval and is re-sent every
interval (``refreshes_firing``), so Alertmanager keeps it while distillwatch runs and lets it
lapse if distillwatch stops for good. A resolved alert goes with its ``endsAt`` (at most now:
a resolution is news now, and an ``endsAt`` in the future would keep it firing). Routing,
grouping, silences and inhibition stay in Alertmanager.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.alerting.notifiers.base import (
    REQUEST_TIMEOUT_S,
    HttpNotifier,
    Notification,
    SendResult,
    link,
    present_labels,
    rfc3339,
)
from pipeline.alerting.transitions import FIRING, AlertTransition

ALERTS_PATH = "/api/v2/alerts"
# Prometheus's choice: an alert not refreshed for four resend intervals is over.
ENDS_AFTER_RESENDS = 4


class AlertmanagerNotifier(HttpNotifier):
    name = "alertmanager"
    refreshes_firing = True

    def __init__(self, base_url: str, *, resend_s: float, timeout_s: float = REQUEST_TIMEOUT_S,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        super().__init__(timeout_s=timeout_s)
        self.url = base_url.rstrip("/") + ALERTS_PATH
        self.resend_s = resend_s
        self.clock_ms = clock_ms

    async def send(self, batch: Sequence[Notification]) -> list[SendResult]:
        # One request for the batch: Alertmanager takes a list and applies it in order.
        if not batch:
            return []
        body = [self.alert(n.transition, raised_at_ms=n.raised_at_ms) for n in batch]
        return [await self.post_json(self.url, body)] * len(batch)

    def alert(self, t: AlertTransition, *, raised_at_ms: int = 0) -> dict[str, Any]:
        """One postable alert (Alertmanager's OpenAPI ``postableAlert``).

        A firing alert starts when distillwatch raised it (``raised_at_ms``, wall clock), as
        Prometheus sends the time its rule fired: Alertmanager flushes a new group at once when
        its first alert started more than group_wait ago, which would split a campaign whose
        event-time start lies minutes back (frames close after DW_ALLOWED_LATENESS_S) into a
        first page of one member and a second one group_interval later. The event-time start is
        in the outbox row and the ``alerts`` table.
        """
        now = self.clock_ms()
        if t.state == FIRING:
            starts = raised_at_ms or t.starts_at_ms
            ends = max(now + int(ENDS_AFTER_RESENDS * self.resend_s * 1000), starts + 1)
        else:
            # Alertmanager keeps the earliest startsAt it saw for an alert; a resolution opens no group.
            starts = min(t.starts_at_ms, raised_at_ms or t.starts_at_ms)
            ends = max(min(t.ends_at_ms if t.ends_at_ms is not None else now, now), starts)
        return {
            "labels": present_labels(t.labels),
            "annotations": present_labels(t.annotations),
            "startsAt": rfc3339(starts),
            "endsAt": rfc3339(ends),
            "generatorURL": link(t.annotations, "dashboard_url"),
        }

"""What receivers hear about an alert: one state change (firing or resolved) with its identity.

The rules engine (``rules.py``) emits these; the outbox (``outbox.py``) stores and delivers
them to every configured notifier. Identity follows Alertmanager's model: the label set is the
alert, so ``labels`` must stay the same for one alert from its first firing to its resolution.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pipeline.hashing import stable_id

FIRING = "firing"
RESOLVED = "resolved"
State = Literal["firing", "resolved"]


@dataclass(frozen=True)
class AlertTransition:
    """One alert changed state. Times are event times in epoch milliseconds."""

    rule: str
    state: State
    labels: Mapping[str, str]  # alertname, severity, account_id, cluster_id, model, action, mode
    annotations: Mapping[str, str]  # summary, description, runbook_url, dashboard_url
    starts_at_ms: int  # when the alert started firing
    ends_at_ms: int | None  # when it resolved; None while firing
    score: float
    signals: Mapping[str, float] = field(default_factory=dict)  # contributing signals → points

    @property
    def alert_key(self) -> str:
        """Stable identity of the alert across restarts: a hash of its sorted labels."""
        return alert_key(self.labels)


def alert_key(labels: Mapping[str, str]) -> str:
    return stable_id(*(f"{k}={v}" for k, v in sorted(labels.items())), size=12)

"""Alert transitions made by hand, shaped as the rules engine makes them (labels and annotations of
the contract in pipeline/alerting/transitions.py), for notifier and outbox tests."""

from __future__ import annotations

from pipeline.alerting.transitions import FIRING, RESOLVED, AlertTransition

GRAFANA = "http://grafana.test:3000"
T0_MS = 1_770_888_600_000


def transition(account: str, *, cluster: str = "", state: str = FIRING, rule: str = "extraction_score_high",
               severity: str = "critical", action: str = "suspend", starts_at_ms: int = T0_MS,
               ends_at_ms: int | None = None, score: float = 91.5) -> AlertTransition:
    if state == RESOLVED and ends_at_ms is None:
        ends_at_ms = starts_at_ms + 15 * 60_000
    dashboard = (f"{GRAFANA}/d/dw-campaigns/campaigns?var-cluster={cluster}" if cluster and not account
                 else f"{GRAFANA}/d/dw-account/account-drill-down?var-account={account}")
    return AlertTransition(
        rule=rule, state="resolved" if state == RESOLVED else "firing",
        labels={"alertname": rule, "severity": severity, "account_id": account, "cluster_id": cluster,
                "model": "frontier-1", "action": action, "mode": "page"},
        annotations={"summary": f"{account or cluster}: extraction score {score:.0f}",
                     "description": "reasoning traces and deep logprobs at a steady rate",
                     "runbook_url": "https://runbooks.test/distillwatch/extraction",
                     "dashboard_url": dashboard},
        starts_at_ms=starts_at_ms, ends_at_ms=ends_at_ms if state == RESOLVED else None, score=score,
        signals={"reasoning_harvest": 31.0, "distribution_probing": 24.5},
    )

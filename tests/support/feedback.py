"""An analyst's verdict on an account, as the feedback tests build it."""

from __future__ import annotations

from pipeline.alerting.feedback import ALL_RULES, Feedback, new_feedback

T0 = 1_770_888_600_000
DAY = 86_400_000


def fb(account: str, verdict: str, *, rule: str = ALL_RULES, at: int = T0, days: float = 7.0) -> Feedback:
    return new_feedback(account, verdict, "checked the traffic", "alice", rule=rule, suppress_days=days, now_ms=at)

"""Analyst feedback on alerts (pipeline/alerting/feedback.py): the ``alert_feedback`` table."""

from __future__ import annotations

from schemas.tables import ALERT_FEEDBACK

VERSION = 5
NAME = "alert_feedback"


def forwards(database: str) -> list[str]:
    return [ALERT_FEEDBACK.create_sql(database)]


def backwards(database: str) -> list[str]:
    return [ALERT_FEEDBACK.drop_sql(database)]

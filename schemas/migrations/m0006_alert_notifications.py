"""The alert outbox (pipeline/alerting/outbox.py): the ``alert_notifications`` table."""

from __future__ import annotations

from schemas.tables import ALERT_NOTIFICATIONS

VERSION = 6
NAME = "alert_notifications"


def forwards(database: str) -> list[str]:
    return [ALERT_NOTIFICATIONS.create_sql(database)]


def backwards(database: str) -> list[str]:
    return [ALERT_NOTIFICATIONS.drop_sql(database)]

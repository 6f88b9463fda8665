"""Initial schema: raw calls, per-minute signatures, alerts and rejected input."""

from __future__ import annotations

from schemas.tables import ALERTS, API_CALLS, KEY_SIGNATURES_1M, REJECTED_EVENTS, SIGNATURES_1M

VERSION = 1
NAME = "initial"

# Listed explicitly: tables added to schemas.tables later belong to later migrations.
_TABLES = (API_CALLS, SIGNATURES_1M, KEY_SIGNATURES_1M, ALERTS, REJECTED_EVENTS)


def forwards(database: str) -> list[str]:
    return [table.create_sql(database) for table in _TABLES]


def backwards(database: str) -> list[str]:
    return [table.drop_sql(database) for table in reversed(_TABLES)]

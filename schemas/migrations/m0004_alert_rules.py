"""Alert rules as code (pipeline/alerting): the ``alerts`` table learns cluster_id, mode, action, suppressed_by.

Rows written before this migration read cluster_id '', mode 'page', action '' and
suppressed_by '' (they paged, as far as the table knew).
"""

from __future__ import annotations

from schemas.tables import ALERTS

VERSION = 4
NAME = "alert_rules"

# (column, type and default for rows written before it existed)
_COLUMNS = (
    ("cluster_id", "String"),
    ("mode", "LowCardinality(String) DEFAULT 'page'"),
    ("action", "LowCardinality(String)"),
    ("suppressed_by", "String"),
)


def forwards(database: str) -> list[str]:
    table = ALERTS.qualified(database)
    return [f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS `{name}` {decl}" for name, decl in _COLUMNS]


def backwards(database: str) -> list[str]:
    table = ALERTS.qualified(database)
    return [f"ALTER TABLE {table} DROP COLUMN IF EXISTS `{name}`" for name, _ in reversed(_COLUMNS)]

"""``account_entities_1h``: a bloom-filter skip index on ``value`` replaces the ``by_value`` projection.

The projection wrote every rollup block a second time, sorted by (kind, value, account_id): about a
third of the cost of an ``api_calls`` insert with its views (docs/benchmarks.md, 2026-12-05). Reads
of "which accounts share this value" (``kind = … AND value IN …``, ``(kind, value) IN (subquery)``)
now skip the granules whose filter rules the value out. The index is built for the parts already
stored before the migration returns (a mutation that reads the ``value`` column once).
"""

from __future__ import annotations

from schemas.tables import ACCOUNT_ENTITIES_1H, ENTITIES_BY_VALUE, projection_definition

VERSION = 10
NAME = "entity_value_index"
(INDEX,) = ACCOUNT_ENTITIES_1H.skip_indexes
PROJECTION, _ = ENTITIES_BY_VALUE
_SYNC = "SETTINGS mutations_sync = 1"  # wait for the mutation: the migration ends with every part indexed


def forwards(database: str) -> list[str]:
    table = ACCOUNT_ENTITIES_1H.qualified(database)
    return [
        f"ALTER TABLE {table} DROP PROJECTION IF EXISTS {PROJECTION}",
        f"ALTER TABLE {table} ADD INDEX IF NOT EXISTS {INDEX.definition}",
        f"ALTER TABLE {table} MATERIALIZE INDEX {INDEX.name} {_SYNC}",
    ]


def backwards(database: str) -> list[str]:
    table = ACCOUNT_ENTITIES_1H.qualified(database)
    return [
        f"ALTER TABLE {table} DROP INDEX IF EXISTS {INDEX.name}",
        f"ALTER TABLE {table} ADD PROJECTION IF NOT EXISTS {projection_definition(*ENTITIES_BY_VALUE)}",
        f"ALTER TABLE {table} MATERIALIZE PROJECTION {PROJECTION} {_SYNC}",
    ]

"""Client fingerprints (TLS JA3/JA4, HTTP/2 SETTINGS) stored per call and listed as account entities.

Rows written before this migration read '' (no fingerprint known). The entities view is
re-created so new calls record the fingerprint kinds; hours already rolled up keep theirs.
"""

from __future__ import annotations

from schemas.tables import ACCOUNT_ENTITIES_1H, API_CALLS, FINGERPRINT_KINDS, ROLLUPS_AT_M0003

VERSION = 9
NAME = "client_fingerprints"
COLUMNS = tuple(FINGERPRINT_KINDS)  # each kind is named after its column


def forwards(database: str) -> list[str]:
    table = API_CALLS.qualified(database)
    return [
        *(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS `{c}` LowCardinality(String) AFTER `payment_fingerprint`"
          for c in reversed(COLUMNS)),
        ACCOUNT_ENTITIES_1H.drop_view_sql(database),
        ACCOUNT_ENTITIES_1H.view_sql(database),
    ]


def backwards(database: str) -> list[str]:
    view = ROLLUPS_AT_M0003[ACCOUNT_ENTITIES_1H.name]
    table = API_CALLS.qualified(database)
    return [view.drop_view_sql(database), view.view_sql(database),
            *(f"ALTER TABLE {table} DROP COLUMN IF EXISTS `{c}`" for c in COLUMNS)]

"""Dashboard rollups (schemas.tables.ROLLUPS): aggregated tables and the views that fill them.

Made as they were at this version (``ROLLUPS_AT_M0003``); later migrations change a view (m0009).
"""

from __future__ import annotations

from schemas.tables import ROLLUPS_AT_M0003 as ROLLUPS

VERSION = 3
NAME = "rollups"


def forwards(database: str) -> list[str]:
    # Per rollup: the table, then the rows already in its source (a database upgraded with data;
    # skipped once the table holds rows, so a re-run adds nothing), then the view for new inserts.
    # Rows another process inserts between the backfill and the view are not counted: migrate
    # before starting writers, as `distillwatch worker` does.
    statements = []
    for rollup in ROLLUPS.values():
        statements += [rollup.create_sql(database), rollup.backfill_sql(database), rollup.view_sql(database)]
    return statements


def backwards(database: str) -> list[str]:
    # Views first, so no insert lands in a table that is being dropped.
    return [r.drop_view_sql(database) for r in ROLLUPS.values()] + [r.drop_sql(database) for r in ROLLUPS.values()]

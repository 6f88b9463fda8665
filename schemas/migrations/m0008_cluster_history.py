"""Every cluster version kept (``cluster_history``), filled from ``clusters`` by a view, backfilled once."""

from __future__ import annotations

from schemas.tables import CLUSTER_HISTORY, CLUSTERS

VERSION = 8
NAME = "cluster_history"
VIEW = f"{CLUSTER_HISTORY.name}_mv"


def forwards(database: str) -> list[str]:
    table, source = CLUSTER_HISTORY.qualified(database), CLUSTERS.qualified(database)
    # By name: `clusters` got merged_into after emitted_at (m0007), so positions differ.
    names = ", ".join(f"`{n}`" for n in (*CLUSTERS.column_names, *(d[0] for d in CLUSTERS.server_defaults)))
    return [
        CLUSTER_HISTORY.create_sql(database),
        # The versions still stored (older ones may be merged away already); only while the history is empty.
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {source} WHERE (SELECT count() FROM {table}) = 0",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS `{database}`.`{VIEW}` TO {table} AS SELECT * FROM {source}",
    ]


def backwards(database: str) -> list[str]:
    return [f"DROP VIEW IF EXISTS `{database}`.`{VIEW}` SYNC", CLUSTER_HISTORY.drop_sql(database)]

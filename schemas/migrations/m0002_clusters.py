"""Cross-account clusters (pipeline/linking): the ``clusters`` table."""

from __future__ import annotations

from schemas.tables import CLUSTERS

VERSION = 2
NAME = "clusters"


def forwards(database: str) -> list[str]:
    return [CLUSTERS.create_sql(database)]


def backwards(database: str) -> list[str]:
    return [CLUSTERS.drop_sql(database)]

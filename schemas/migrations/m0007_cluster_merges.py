"""Cluster merges (pipeline/linking): a retired ``clusters`` row names the cluster it merged into.

Rows written before this migration read merged_into '' (where a retired id went is unknown).
"""

from __future__ import annotations

from schemas.tables import CLUSTERS

VERSION = 7
NAME = "cluster_merges"


def forwards(database: str) -> list[str]:
    return [f"ALTER TABLE {CLUSTERS.qualified(database)} ADD COLUMN IF NOT EXISTS `merged_into` String"]


def backwards(database: str) -> list[str]:
    return [f"ALTER TABLE {CLUSTERS.qualified(database)} DROP COLUMN IF EXISTS `merged_into`"]

"""The ``clusters`` table: one row per version of a cross-account cluster (pipeline/linking).

Kept apart from schemas.tables until the lead merges it there (the writer looks
tables up in ``schemas.tables.TABLES``). ReplacingMergeTree on ``cluster_id`` by
``version``: ``SELECT … FROM clusters FINAL WHERE active = 1`` is the current set
of clusters; ``active = 0`` rows record ids that no longer name a cluster (merged
into another, or their links were withdrawn).
"""

from __future__ import annotations

from schemas.tables import TableSpec

_TS = "DateTime64(3, 'UTC')"
_LC = "LowCardinality(String)"

CLUSTERS = TableSpec(
    name="clusters",
    columns=(
        ("cluster_id", "String"),
        ("account_ids", "Array(String)"),  # sorted
        ("size", "UInt32"),
        ("score", "Float32"),  # 0-100, the sum of factor_points
        ("shared_features", "Array(String)"),  # e.g. pay:<fp>, ip24:203.0.113, tpl:2:9f3a; strongest kind first
        ("factor_names", f"Array({_LC})"),  # size, member_scores, link_strength, volume
        ("factor_points", "Array(Float32)"),
        ("first_seen_ts", _TS),  # event time the first of its pairs became linked
        ("updated_ts", _TS),  # latest event time of its evidence or its members' scores
        ("active", "UInt8"),
        ("version", "UInt64"),  # wall-clock microseconds of the write: the newest row wins
    ),
    engine="ReplacingMergeTree(version)",
    server_defaults=(("emitted_at", _TS, "now64(3)"),),
    order_by=("cluster_id",),
)

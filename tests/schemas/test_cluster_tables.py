from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from schemas.migrate import apply_migrations, rollback
from schemas.migrations import discover, m0002_clusters
from schemas.tables import CLUSTERS


def test_m0002_creates_and_drops_only_the_clusters_table() -> None:
    assert [m.version for m in discover()][:2] == [1, 2]
    (create,) = m0002_clusters.forwards("db")
    assert create == CLUSTERS.create_sql("db") and "ENGINE = ReplacingMergeTree(version)" in create
    assert m0002_clusters.backwards("db") == [CLUSTERS.drop_sql("db")]


@pytest.mark.clickhouse
def test_live_clusters_table_matches_its_spec_and_rolls_back(ch_client: Client, ch_database: str) -> None:
    apply_migrations(ch_client, ch_database)
    rows = ch_client.query(
        "SELECT name, type, default_kind FROM system.columns WHERE database = {db:String} AND table = 'clusters' "
        "ORDER BY position", parameters={"db": ch_database},
    ).result_rows
    assert [(n, t) for n, t, kind in rows if kind == ""] == list(CLUSTERS.columns)
    rollback(ch_client, ch_database, 1)
    assert not ch_client.command(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'clusters'",
        parameters={"db": ch_database})

"""Migration m0010: account_entities_1h trades its by_value projection for a skip index on value."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.sinks.clickhouse import ClickHouseWriter
from schemas.migrate import apply_migrations, rollback
from schemas.migrations import m0010_entity_value_index as m0010
from tests.schemas.entity_lookups import granules_after_index, value_lookups, write_shared_card
from tests.support.rollups import rows

pytestmark = pytest.mark.clickhouse


def _projections(client: Client, db: str) -> list[str]:
    return [r[0] for r in rows(client, f"SELECT name FROM system.projections WHERE database = '{db}' "
                                       "AND table = 'account_entities_1h'")]


def _indexes(client: Client, db: str) -> list[str]:
    return [r[0] for r in rows(client, f"SELECT name FROM system.data_skipping_indices WHERE database = '{db}' "
                                       "AND table = 'account_entities_1h'")]


def test_upgrade_indexes_the_stored_rows_and_rollback_restores_the_projection(
        ch_client: Client, ch_database: str) -> None:
    db = ch_database
    apply_migrations(ch_client, db)
    assert rollback(ch_client, db, m0010.VERSION - 1) == [m0010.VERSION]
    assert (_projections(ch_client, db), _indexes(ch_client, db)) == ([m0010.PROJECTION], [])
    fleet = write_shared_card(ch_client, ClickHouseWriter(ch_client, db), db)
    before = [sorted(rows(ch_client, lookup)) for lookup in value_lookups(db)]
    assert {a for a, _ in before[0]} == fleet

    assert apply_migrations(ch_client, db) == [m0010.VERSION]
    assert (_projections(ch_client, db), _indexes(ch_client, db)) == ([], [m0010.INDEX.name])
    for lookup, want in zip(value_lookups(db), before, strict=True):
        assert sorted(rows(ch_client, lookup)) == want
        # The part written before the migration was indexed by it: most granules are skipped.
        selected, total = granules_after_index(ch_client, lookup, m0010.INDEX.name)
        assert total >= 12 and selected <= total // 4

    # Re-running the statements (a crash before the bookkeeping row) changes nothing.
    for statement in m0010.forwards(db):
        ch_client.command(statement)
    assert (_projections(ch_client, db), _indexes(ch_client, db)) == ([], [m0010.INDEX.name])

    assert rollback(ch_client, db, m0010.VERSION - 1) == [m0010.VERSION]
    assert (_projections(ch_client, db), _indexes(ch_client, db)) == ([m0010.PROJECTION], [])
    lookup = value_lookups(db)[0]
    # force_optimize_projection_name fails the query unless the rebuilt projection is the one read.
    assert sorted(rows(ch_client, f"{lookup} SETTINGS force_optimize_projection_name = '{m0010.PROJECTION}'")) \
        == before[0]

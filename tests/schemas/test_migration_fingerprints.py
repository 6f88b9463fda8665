"""Migration m0009: a database from before client fingerprints gains the columns and the entity kinds."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.sinks.clickhouse import ClickHouseWriter
from schemas.migrate import applied_versions, apply_migrations, rollback
from schemas.migrations import m0009_client_fingerprints as m0009
from tests.support.rollup_rows import api_calls
from tests.support.rollups import insert_as_before, rows

pytestmark = pytest.mark.clickhouse


def _columns(client: Client, db: str) -> list[str]:
    return [r[0] for r in rows(client, f"SELECT name FROM system.columns WHERE database = '{db}' "
                                       "AND table = 'api_calls' ORDER BY position")]


def _entity_kinds(client: Client, db: str) -> set[str]:
    return {r[0] for r in rows(client, f"SELECT DISTINCT kind FROM `{db}`.account_entities_1h")}


def test_upgrade_adds_the_columns_after_the_payment_fingerprint_and_the_entity_kinds(
        ch_client: Client, ch_database: str) -> None:
    apply_migrations(ch_client, ch_database)
    assert rollback(ch_client, ch_database, m0009.VERSION - 1)[-1] == m0009.VERSION  # after the later ones
    assert not set(m0009.COLUMNS) & set(_columns(ch_client, ch_database))
    insert_as_before(ch_client, ch_database, "api_calls", api_calls(50, seed=1), m0009.COLUMNS)
    assert not set(m0009.COLUMNS) & _entity_kinds(ch_client, ch_database)

    assert apply_migrations(ch_client, ch_database)[0] == m0009.VERSION
    names = _columns(ch_client, ch_database)
    at = names.index("payment_fingerprint")
    assert names[at + 1: at + 3] == list(m0009.COLUMNS)
    # Rows from before read '' (no fingerprint known); new calls record both kinds.
    assert rows(ch_client, f"SELECT DISTINCT tls_fingerprint, http2_fingerprint FROM `{ch_database}`.api_calls") \
        == [("", "")]
    ClickHouseWriter(ch_client, ch_database).write("api_calls", api_calls(50, seed=2))
    assert set(m0009.COLUMNS) <= _entity_kinds(ch_client, ch_database)
    assert m0009.VERSION in applied_versions(ch_client, ch_database)

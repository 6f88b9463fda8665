"""The rollups (migration m0003): schema, exactness against their base tables, retries, backfill."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.sinks.clickhouse import ClickHouseWriter
from schemas.migrate import apply_migrations, rollback
from schemas.migrations import discover, m0003_rollups
from schemas.migrations import m0009_client_fingerprints as m0009
from schemas.tables import ROLLUPS, ROLLUPS_AT_M0003, TABLES
from tests.schemas.entity_lookups import granules_after_index, value_lookups, write_shared_card
from tests.support import rollup_rows
from tests.support.rollup_rows import Columns
from tests.support.rollups import ROLLUP_VS_BASE, insert_as_before, rows

ROLLUP_NAMES = {"traffic_1m", "scores_1m", "alerts_1m", "account_scores_1h", "account_entities_1h"}


def write(writer: ClickHouseWriter, table: str, batches: list[Columns], token: str | None = None) -> None:
    for i, batch in enumerate(batches):
        writer.write(table, batch, dedup_token=f"{token}:{i}" if token else None)


def expected_entities(batches: list[Columns]) -> dict[tuple[str, str, str], list[int]]:
    """(account, kind, value) -> [calls, prompt_tokens] computed in Python from the written rows."""
    out: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for b in batches:
        for i, account in enumerate(b["account_id"]):
            values = {
                "api_key": b["api_key_id"][i], "asn": str(b["asn"][i]) if b["asn"][i] else "",
                "country": b["country"][i], "network_type": b["network_type"][i],
                "user_agent": b["user_agent"][i], "model": b["model"][i], "endpoint": b["endpoint"][i],
                "template": f"{int(b['prompt_simhash'][i]):016x}" if b["prompt_simhash"][i] else "",
                "payment": b["payment_fingerprint"][i], "ip_net": _ip_net(b["client_ip"][i]),
                "tls_fingerprint": b["tls_fingerprint"][i], "http2_fingerprint": b["http2_fingerprint"][i],
            }
            for kind, value in values.items():
                if value:
                    out[(account, kind, value)][0] += 1
                    out[(account, kind, value)][1] += int(b["prompt_tokens"][i])
    return dict(out)


def _ip_net(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    net = ipaddress.ip_network(f"{addr}/{24 if addr.version == 4 else 48}", strict=False)
    return f"{net.network_address}/{net.prefixlen}"


def entities(client: Client, db: str) -> dict[tuple[str, str, str], list[int]]:
    got = rows(client, f"SELECT account_id, kind, value, sum(calls), sum(prompt_tokens) "
                       f"FROM {db}.account_entities_1h GROUP BY ALL")
    return {(a, k, v): [int(c), int(p)] for a, k, v, c, p in got}


def assert_rollups_exact(client: Client, db: str, written: list[Columns], *, calls_only: bool = False) -> None:
    """Every rollup equals its base aggregate and holds rows (only those of api_calls if ``calls_only``)."""
    for name, (rollup_sql, base_sql) in ROLLUP_VS_BASE.items():
        got, want = rows(client, rollup_sql.format(db=db)), rows(client, base_sql.format(db=db))
        assert got == want, name
        assert got or (calls_only and ROLLUPS[name].source != "api_calls"), f"{name} is empty"
    assert entities(client, db) == expected_entities(written)


@pytest.fixture
def migrated(ch_client: Client, ch_database: str) -> tuple[str, ClickHouseWriter]:
    apply_migrations(ch_client, ch_database)
    return ch_database, ClickHouseWriter(ch_client, ch_database)


# --- the registry and the migration's statements (no ClickHouse) ------------------------------


def test_rollups_are_the_agreed_tables_and_apart_from_tables() -> None:
    assert set(ROLLUPS) == ROLLUP_NAMES
    assert not set(ROLLUPS) & set(TABLES)
    assert all(r.source in TABLES and r.view_name == f"{r.name}_mv" for r in ROLLUPS.values())


def test_m0003_creates_each_table_before_its_view_and_drops_views_first() -> None:
    assert discover()[2].module == "schemas.migrations.m0003_rollups"
    forwards = m0003_rollups.forwards("db")
    for r in ROLLUPS_AT_M0003.values():
        create, backfill, view = (forwards.index(s) for s in (r.create_sql("db"), r.backfill_sql("db"),
                                                             r.view_sql("db")))
        assert create < backfill < view
    backwards = m0003_rollups.backwards("db")
    views = [i for i, s in enumerate(backwards) if s.startswith("DROP VIEW")]
    tables = [i for i, s in enumerate(backwards) if s.startswith("DROP TABLE")]
    assert len(views) == len(tables) == len(ROLLUPS) and max(views) < min(tables)


# --- against ClickHouse --------------------------------------------------------------------


@pytest.mark.clickhouse
@pytest.mark.parametrize("name", sorted(ROLLUP_NAMES))
def test_live_rollup_schema_matches_its_spec(ch_client: Client, migrated: tuple[str, Any], name: str) -> None:
    db, _ = migrated
    spec = ROLLUPS[name]
    got = rows(ch_client, f"SELECT name, type FROM system.columns WHERE database = '{db}' AND table = '{name}' "
                          "ORDER BY position")
    assert got == [(c.name, c.type) for c in spec.columns]
    ((engine, sorting_key, partition_key),) = rows(
        ch_client, f"SELECT engine, sorting_key, partition_key FROM system.tables "
                   f"WHERE database = '{db}' AND name = '{name}'")
    assert engine == "AggregatingMergeTree"
    assert sorting_key == ", ".join(c.name for c in spec.keys)
    assert partition_key == f"toYYYYMM({spec.time_column})"
    indexes = rows(ch_client, f"SELECT name, expr, type_full, granularity FROM system.data_skipping_indices "
                              f"WHERE database = '{db}' AND table = '{name}' ORDER BY name")
    assert indexes == [(i.name, i.expr, i.type, i.granularity) for i in spec.skip_indexes]
    projections = rows(ch_client, f"SELECT name FROM system.projections WHERE database = '{db}' AND table = '{name}'")
    assert projections == [(p,) for p, _ in spec.projections]
    ((view_engine,),) = rows(ch_client, f"SELECT engine FROM system.tables WHERE database = '{db}' "
                                        f"AND name = '{name}_mv'")
    assert view_engine == "MaterializedView"


@pytest.mark.clickhouse
def test_each_rollup_equals_its_base_aggregate(ch_client: Client, migrated: tuple[str, ClickHouseWriter]) -> None:
    db, writer = migrated
    calls = rollup_rows.split(rollup_rows.api_calls(3000, seed=1), 5)
    write(writer, "api_calls", calls, token="raw")
    write(writer, "signatures_1m", rollup_rows.split(rollup_rows.signatures(1500, seed=2), 4), token="sig")
    write(writer, "alerts", rollup_rows.split(rollup_rows.alerts(400, seed=3), 3), token="alert")
    assert_rollups_exact(ch_client, db, calls)
    # Merged parts hold the same figures as the blocks the views wrote.
    for name in ROLLUPS:
        ch_client.command(f"OPTIMIZE TABLE `{db}`.`{name}` FINAL")
    assert_rollups_exact(ch_client, db, calls)
    scores = rows(ch_client, f"SELECT DISTINCT score_band FROM {db}.scores_1m ORDER BY 1")
    assert scores == [(b,) for b in range(0, 100, 10)]  # 100 lands in the top band, 0 in the first


@pytest.mark.clickhouse
def test_a_block_gives_each_rollup_one_row_per_key(ch_client: Client, migrated: tuple[str, ClickHouseWriter]) -> None:
    """Every view groups by its table's sorting key, so the insert-time merge the writer skips
    (optimize_on_insert = 0 for the per-batch tables) would find nothing to combine in a rollup block."""
    db, writer = migrated
    writer.write("api_calls", rollup_rows.api_calls(2000, seed=11), dedup_token="raw")
    writer.write("signatures_1m", rollup_rows.signatures(800, seed=12), dedup_token="sig")
    writer.write("alerts", rollup_rows.alerts(200, seed=13), dedup_token="alert")
    for name, spec in ROLLUPS.items():
        keys = ", ".join(f"`{c.name}`" for c in spec.keys)
        ((stored, distinct),) = rows(ch_client, f"SELECT count(), uniqExact({keys}) FROM `{db}`.`{name}`")
        assert stored == distinct > 0, name


@pytest.mark.clickhouse
def test_a_retried_insert_with_its_token_does_not_double_the_rollups(
        ch_client: Client, migrated: tuple[str, ClickHouseWriter]) -> None:
    db, writer = migrated
    calls = rollup_rows.split(rollup_rows.api_calls(1200, seed=4), 3)
    sigs = rollup_rows.split(rollup_rows.signatures(600, seed=5), 2)
    for _ in range(3):
        write(writer, "api_calls", calls, token="raw-b1")
        write(writer, "signatures_1m", sigs, token="sig-b1")
        write(writer, "alerts", [rollup_rows.alerts(100, seed=6)], token="alert-b1")
    assert rows(ch_client, f"SELECT count() FROM {db}.api_calls") == [(1200,)]
    assert_rollups_exact(ch_client, db, calls)


@pytest.mark.clickhouse
def test_a_retry_after_the_views_failed_fills_the_rollups_once(
        ch_client: Client, migrated: tuple[str, ClickHouseWriter]) -> None:
    """The base table stored the block but a view did not (simulated by dropping the view): the
    writer's retry with the same token still reaches the view, and a further retry counts nothing."""
    db, writer = migrated
    traffic = ROLLUPS["traffic_1m"]
    batch = rollup_rows.api_calls(500, seed=7)
    ch_client.command(traffic.drop_view_sql(db))
    writer.write("api_calls", batch, dedup_token="tok")
    ch_client.command(traffic.view_sql(db))
    assert rows(ch_client, f"SELECT count() FROM {db}.traffic_1m") == [(0,)]
    writer.write("api_calls", batch, dedup_token="tok")
    writer.write("api_calls", batch, dedup_token="tok")
    assert rows(ch_client, f"SELECT count() FROM {db}.api_calls") == [(500,)]
    assert rows(ch_client, f"SELECT sum(calls) FROM {db}.traffic_1m") == [(500,)]


@pytest.mark.clickhouse
def test_without_dedup_in_dependent_views_a_retry_would_multiply_the_rollups(
        ch_client: Client, migrated: tuple[str, ClickHouseWriter]) -> None:
    """Why the writer sends deduplicate_blocks_in_dependent_materialized_views=1: with 0 the base
    table drops a retried block but its views aggregate it again (measured on ClickHouse 26.9)."""
    db, writer = migrated
    spec = TABLES["api_calls"]
    batch = rollup_rows.api_calls(100, seed=8)
    for _ in range(3):
        ch_client.insert("api_calls", [list(batch[c]) for c in spec.column_names], database=db,
                         column_names=list(spec.column_names), column_oriented=True,
                         settings={"insert_deduplication_token": "raw-0",
                                   "deduplicate_blocks_in_dependent_materialized_views": 0})
    assert rows(ch_client, f"SELECT count() FROM {db}.api_calls") == [(100,)]
    assert rows(ch_client, f"SELECT sum(calls) FROM {db}.traffic_1m") == [(300,)]
    other = rollup_rows.api_calls(100, seed=9)
    for _ in range(3):
        writer.write("api_calls", other, dedup_token="raw-1")
    assert rows(ch_client, f"SELECT count() FROM {db}.api_calls") == [(200,)]
    assert rows(ch_client, f"SELECT sum(calls) FROM {db}.traffic_1m") == [(400,)]


@pytest.mark.clickhouse
def test_different_batches_that_aggregate_alike_both_count(
        ch_client: Client, migrated: tuple[str, ClickHouseWriter]) -> None:
    db, writer = migrated
    first = rollup_rows.api_calls(300, seed=9)
    second = {**first, "event_id": [f"{e}-other" for e in first["event_id"]]}  # same rollup rows
    writer.write("api_calls", first)  # no token: the blocks' hashes differ, so neither is a duplicate
    writer.write("api_calls", second, dedup_token="other")
    assert rows(ch_client, f"SELECT sum(calls) FROM {db}.traffic_1m") == [(600,)]
    assert_rollups_exact(ch_client, db, [first, second], calls_only=True)


@pytest.mark.clickhouse
def test_the_migration_backfills_rows_written_before_it_once(ch_client: Client, ch_database: str) -> None:
    base = discover()[:2]
    apply_migrations(ch_client, ch_database, migrations=base)
    writer = ClickHouseWriter(ch_client, ch_database)
    before = rollup_rows.api_calls(800, seed=10)
    for name in m0009.COLUMNS:  # rows from before m0009 read '': no fingerprint entities to backfill
        before[name] = [""] * 800
    calls = rollup_rows.split(before, 2)
    write(writer, "api_calls", calls)
    write(writer, "signatures_1m", [rollup_rows.signatures(300, seed=11)])
    write(writer, "alerts", [rollup_rows.alerts(50, seed=12)])
    assert 3 in apply_migrations(ch_client, ch_database)
    assert_rollups_exact(ch_client, ch_database, calls)
    # A run that died after the backfill repeats the statements: nothing is counted twice.
    for statement in m0003_rollups.forwards(ch_database):
        ch_client.command(statement)
    assert_rollups_exact(ch_client, ch_database, calls)


@pytest.mark.clickhouse
def test_accounts_sharing_a_value_are_read_through_the_skip_index(
        ch_client: Client, migrated: tuple[str, ClickHouseWriter]) -> None:
    db, writer = migrated
    fleet = write_shared_card(ch_client, writer, db)
    (index,) = ROLLUPS["account_entities_1h"].skip_indexes
    for lookup in value_lookups(db):
        got = sorted(rows(ch_client, lookup))
        assert {a for a, _ in got} == fleet and len(got) >= 2
        assert got == sorted(rows(ch_client, f"{lookup} SETTINGS use_skip_indexes = 0"))
        selected, total = granules_after_index(ch_client, lookup, index.name)
        # The fleet's granules (three accounts), perhaps a false positive of the filter: not the table.
        assert total >= 12 and selected <= total // 4


@pytest.mark.clickhouse
def test_rollback_drops_the_views_and_tables_then_reapplies(
        ch_client: Client, migrated: tuple[str, ClickHouseWriter]) -> None:
    db, _writer = migrated
    assert 3 in rollback(ch_client, db, 2)
    names = {n for (n,) in rows(ch_client, f"SELECT name FROM system.tables WHERE database = '{db}'")}
    assert not names & (ROLLUP_NAMES | {f"{n}_mv" for n in ROLLUP_NAMES})
    assert {"api_calls", "signatures_1m", "alerts"} <= names
    # No view left to fail the insert; rolled back below m0009, the table has no fingerprint columns.
    insert_as_before(ch_client, db, "api_calls", rollup_rows.api_calls(50, seed=14), m0009.COLUMNS)
    assert 3 in apply_migrations(ch_client, db)
    assert rows(ch_client, f"SELECT sum(calls) FROM {db}.traffic_1m") == [(50,)]  # backfilled

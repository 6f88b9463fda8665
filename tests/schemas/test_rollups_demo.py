"""The rollups on a real ``distillwatch demo`` run (the session's ``demo_db``): filled by their views
from the imported rows, equal to the base tables' aggregates, and to their deduplicated (FINAL) rows."""

from __future__ import annotations

import pytest

from schemas.tables import ROLLUPS
from tests.support.demo_data import DemoData
from tests.support.rollups import ROLLUP_VS_BASE, rows

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse]


@pytest.mark.parametrize("name", sorted(ROLLUP_VS_BASE))
def test_rollups_equal_their_base_aggregates_on_a_demo_run(demo_db: DemoData, name: str) -> None:
    rollup_sql, base_sql = ROLLUP_VS_BASE[name]
    got = rows(demo_db.client, rollup_sql.format(db=demo_db.database))
    assert got and got == rows(demo_db.client, base_sql.format(db=demo_db.database))


@pytest.mark.parametrize("table", sorted({r.source for r in ROLLUPS.values()}))
def test_the_run_wrote_each_base_row_once(demo_db: DemoData, table: str) -> None:
    """The views count every inserted row; the base tables dedupe by key only at merges (FINAL).
    The pipeline writes each key once, so both agree."""
    db = demo_db.database
    assert rows(demo_db.client, f"SELECT count() FROM {db}.{table}") == \
        rows(demo_db.client, f"SELECT count() FROM {db}.{table} FINAL")


@pytest.mark.parametrize(("kind", "column"), [("api_key", "api_key_id"), ("model", "model"),
                                              ("network_type", "network_type"), ("payment", "payment_fingerprint")])
def test_account_entities_count_each_call_on_a_demo_run(demo_db: DemoData, kind: str, column: str) -> None:
    db = demo_db.database
    got = rows(demo_db.client, f"SELECT account_id, value, sum(calls), min(first_seen), max(last_seen) "
                               f"FROM {db}.account_entities_1h WHERE kind = '{kind}' GROUP BY ALL ORDER BY ALL")
    want = rows(demo_db.client, f"SELECT account_id, toString({column}) AS v, count(), min(ts), max(ts) "
                                f"FROM {db}.api_calls WHERE v != '' GROUP BY ALL ORDER BY ALL")
    assert got and got == want

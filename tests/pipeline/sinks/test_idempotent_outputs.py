"""Replays never double-count: a restart re-reads from the last checkpoint, cut into other batches, and
writes again; the aggregates read with FINAL equal those of one uninterrupted pass."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.decode.json_events import DecodedBatch
from pipeline.detect.detector import DetectionOutput
from pipeline.sinks.batch_outputs import batch_token, write_batch_outputs
from pipeline.sinks.clickhouse import ClickHouseWriter, query_rows
from pipeline.state.dedup import without_rows
from pipeline.state.manager import StateManager
from schemas.migrate import apply_migrations
from tests.support.state import EVENTS, decoded, manager, offsets_after, restore_in_memory

pytestmark = pytest.mark.clickhouse

TABLES = {  # table -> its ReplacingMergeTree key
    "signatures_1m": "account_id, window_start",
    "key_signatures_1m": "api_key_id, window_start",
    "alerts": "account_id, rule, fired_ts",
    "api_calls": "account_id, ts, event_id",
}


@pytest.fixture
def databases(ch_client: Client) -> Iterator[tuple[str, str]]:
    names = (f"dw_test_{uuid.uuid4().hex[:12]}", f"dw_test_{uuid.uuid4().hex[:12]}")
    for name in names:
        apply_migrations(ch_client, name)
    yield names
    for name in names:
        ch_client.command(f"DROP DATABASE IF EXISTS `{name}` SYNC")


Written = tuple[DecodedBatch, DetectionOutput, str]


def process(m: StateManager, writer: ClickHouseWriter, log: list[dict[str, Any]], first: int, size: int,
            *, drain: bool) -> list[Written]:
    """Like DetectStep: batches of ``size`` from ``log[first:]``, each written as it is processed."""
    written = []
    for start in range(first, len(log), size):
        batch = decoded(log[start:start + size], start)
        unique = without_rows(batch, m.dedup.duplicates(batch))
        out = m.detector.process(unique, force_close=drain and start + size >= len(log))
        write_batch_outputs(writer, unique, out, token(batch), store_raw=True)
        written.append((unique, out, token(batch)))
    return written


def token(batch: DecodedBatch) -> str:
    return batch_token([int(p) for p in batch.raw["kafka_partition"]], [int(o) for o in batch.raw["kafka_offset"]])


def final_rows(client: Client, db: str, table: str) -> list[str]:
    server_filled = "ingested_at" if table == "api_calls" else "emitted_at"
    rows = query_rows(client, f"SELECT * EXCEPT ({server_filled}) FROM `{db}`.`{table}` FINAL "
                              f"ORDER BY {TABLES[table]}")
    return [repr(row) for row in rows]  # as text: NaN (an absent temperature) equals itself


def test_a_restart_that_recuts_the_batches_stores_exactly_one_pass(ch_client: Client,
                                                                     databases: tuple[str, str]) -> None:
    once_db, crashed_db = databases
    # Offsets here are positions in EVENTS; one partition per account (part_of) as on Kafka.
    log = EVENTS[:3000]
    process(manager(), ClickHouseWriter(ch_client, once_db), log, 0, 500, drain=True)

    writer = ClickHouseWriter(ch_client, crashed_db)
    first = manager()
    process(first, writer, log[:1000], 0, 500, drain=False)
    prepared = first.prepare_checkpoint(offsets_after(decoded(log[:1000], 0)))  # checkpoint at offset 1000
    process(first, writer, log, 1000, 500, drain=False)  # more written, then the worker dies uncommitted
    second = manager()
    restore_in_memory(first, second, [*prepared.entities, *prepared.markers], {p: None for p in range(3)})
    # The restart reads again from the checkpoint with other batch boundaries, and one insert is retried.
    again = process(second, writer, log, 1000, 333, drain=True)
    unique, out, retried = again[2]
    write_batch_outputs(writer, unique, out, retried, store_raw=True)

    for table in TABLES:
        once, crashed = final_rows(ch_client, once_db, table), final_rows(ch_client, crashed_db, table)
        assert crashed == once, table
    calls = query_rows(ch_client, f"SELECT sum(calls) AS n FROM `{crashed_db}`.signatures_1m FINAL")[0]["n"]
    assert int(calls) == len(log)

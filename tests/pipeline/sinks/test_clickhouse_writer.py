from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from clickhouse_connect.driver import exceptions as driver_errors
from clickhouse_connect.driver.client import Client

from pipeline.settings import Settings, load_settings
from pipeline.sinks import clickhouse
from pipeline.sinks.clickhouse import (
    ClickHouseError,
    ClickHouseRejected,
    ClickHouseUnavailable,
    ClickHouseWriter,
    classify,
    connect,
    insert_settings,
    mask_dsn,
    query_rows,
)
from schemas.migrate import apply_migrations
from schemas.tables import TABLES

REPO = Path(__file__).resolve().parents[3]
TS0_MS = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z
MINUTE0_S = 1_767_225_600
U64_MAX = np.iinfo(np.uint64).max

Columns = dict[str, Any]


def _cycle(values: list[Any], n: int) -> list[Any]:
    return [values[k % len(values)] for k in range(n)]


# Batches are built already sorted by each table's ORDER BY key, so rows read back
# in that order line up with the input.
def api_calls_batch(n: int = 4) -> Columns:
    i = np.arange(n)
    return {
        "event_id": [f"ev-{k}" for k in range(n)],
        "ts": (TS0_MS + i * 1001).astype(np.int64),
        "account_id": [f"acct-{k:03d}" for k in range(n)],
        "api_key_id": [f"key-{k}" for k in range(n)],
        "client_ip": _cycle(["203.0.113.7", "2001:db8::1", "198.51.100.2", "192.0.2.1"], n),
        "asn": np.full(n, 64_512, np.uint32),
        "network_type": _cycle(["hosting", "residential", "vpn", "unknown"], n),
        "country": _cycle(["US", "", "DE", "FR"], n),
        "user_agent": _cycle(["python-httpx/0.27 ✓", "", "curl/8.5", "Go-http-client/2.0"], n),
        "endpoint": ["/v1/chat/completions"] * n,
        "model": _cycle(["big-1", "small-2"], n),
        "status": np.array(_cycle([200, 429, 500, 200], n), np.uint16),
        "latency_ms": (i * 250).astype(np.uint32),
        "prompt_tokens": (i * 100 + 7).astype(np.uint32),
        "completion_tokens": (i * 300).astype(np.uint32),
        "reasoning_tokens": np.full(n, np.iinfo(np.uint32).max, np.uint32),
        "prompt_hash": np.array(_cycle([U64_MAX, 0, 2**63, 12345], n), np.uint64),
        "prompt_simhash": np.arange(n, dtype=np.uint64) << np.uint64(60),
        "topic": _cycle(["math", "", "code", "math"], n),
        "elicits_reasoning": (i % 2).astype(np.uint8),
        "temperature": np.where(i % 2 == 0, np.nan, 0.7).astype(np.float32),
        "top_p": np.where(i % 3 == 0, 0.95, np.nan).astype(np.float32),
        "n": (i + 1).astype(np.uint16),
        "max_tokens": np.where(i % 2 == 0, 0, 4096).astype(np.uint32),
        "logprobs": (i % 2).astype(np.uint8),
        "top_logprobs": np.where(i % 2 == 0, -1, 20).astype(np.int8),
        "logit_bias_count": (i * 3).astype(np.uint16),
        "stream": np.zeros(n, np.uint8),
        "payment_fingerprint": _cycle(["", "fp-1", "fp-2", ""], n),
        "tls_fingerprint": _cycle(["t13d1516h2_8daaf6152771_b186095e22b6", ""], n),
        "http2_fingerprint": _cycle(["1:65536;2:0;4:6291456|15663105|0|m,a,s,p", ""], n),
        "kafka_partition": (i % 4).astype(np.uint16),
        "kafka_offset": (i + 2**40).astype(np.uint64),
    }


def signatures_batch() -> Columns:
    return {
        "account_id": ["acct-a", "acct-a", "acct-b"],
        "window_start": np.array([MINUTE0_S, MINUTE0_S + 60, MINUTE0_S], np.int64),
        "calls": np.array([10, 0, 4_000_000_000], np.uint32),
        "prompt_tokens": np.array([1, 2, 2**40], np.uint64),
        "completion_tokens": np.array([3, 4, 5], np.uint64),
        "reasoning_tokens": np.array([0, 0, 2**63], np.uint64),
        "reasoning_calls": np.array([1, 0, 2], np.uint32),
        "logprob_calls": np.array([2, 0, 3], np.uint32),
        "logit_bias_calls": np.array([0, 0, 1], np.uint32),
        "multi_n_calls": np.array([0, 1, 0], np.uint32),
        "error_calls": np.array([0, 0, 9], np.uint32),
        "rate_limited_calls": np.array([5, 0, 0], np.uint32),
        "deep_logprob_calls": np.array([0, 3, 0], np.uint32),
        "distinct_prompts": np.array([10, 0, 3_999_999_999], np.uint32),
        "distinct_ips": np.array([1, 0, 700], np.uint32),
        "anon_calls": np.array([0, 1, 2], np.uint32),
        "hosting_calls": np.array([3, 0, 0], np.uint32),
        "temp_zero_calls": np.array([0, 0, 7], np.uint32),
        "near_dup_calls": np.array([4, 0, 0], np.uint32),
        "stream_calls": np.array([0, 5, 0], np.uint32),
        "distinct_uas": np.array([1, 2, 3], np.uint32),
        "distinct_asns": np.array([1, 1, 9], np.uint32),
        "distinct_topics": np.array([2, 0, 1], np.uint32),
        "gap_cv": np.array([0.1, 0.0, 1.5], np.float32),
        "temp_std": np.array([0.0, 0.25, 0.0], np.float32),
        "calls_5m": np.array([10.0, 9.5, 1e6], np.float32),
        "calls_1h": np.array([10.0, 9.9, 1e7], np.float32),
        "calls_24h": np.array([10.0, 9.99, 1e8], np.float32),
        "active_minutes_1h": np.array([1.0, 1.98, 60.0], np.float32),
        "score": np.array([12.5, np.nan, 99.0], np.float32),
        "top_signals": [["logprobs", "reasoning_ratio"], [], ["multi_n"]],
        "signal_names": [["a", "b"], ["a", "b"], ["a", "b"]],
        "signal_points": [[1.5, 0.0], [0.0, 0.0], [50.0, 49.0]],
    }


def alerts_batch() -> Columns:
    return {
        "alert_id": ["al-1", "al-2"],
        "fired_ts": np.array([TS0_MS, TS0_MS + 1], np.int64),
        "account_id": ["acct-a", "acct-b"],
        "rule": ["extraction_score", "extraction_score"],
        "severity": ["high", "critical"],
        "score": np.array([81.0, 97.25], np.float32),
        "signals": [["logprobs"], ["logprobs", "reasoning_ratio", "distinct_prompts"]],
        "signal_points": [[81.0], [50.0, 40.0, 7.25]],
        "window_start": np.array([MINUTE0_S, MINUTE0_S], np.int64),
        "cluster_id": ["", "c-1a2b3c4d"],
        "mode": ["page", "monitor"],
        "action": ["review", "takedown"],
        "suppressed_by": ["allowlist:partner-eval", ""],
    }


def rejected_batch() -> Columns:
    samples = [b'{"event_id": 1', b"\xff\xfe not utf-8"]
    return {
        "kafka_partition": np.array([0, 3], np.uint16),
        "kafka_offset": np.array([17, 2**50], np.uint64),
        "received_at": np.array([TS0_MS, TS0_MS + 999], np.int64),
        "reason": ["invalid_json", "invalid_encoding"],
        "field": ["", ""],
        "detail": ["Expecting value", "not UTF-8"],
        "size_bytes": np.array([15, 70_000], np.uint32),
        "sample": [s[:256].decode("utf-8", errors="replace") for s in samples],
    }


BATCHES: dict[str, Callable[[], Columns]] = {
    "api_calls": api_calls_batch,
    "signatures_1m": signatures_batch,
    "alerts": alerts_batch,
    "rejected_events": rejected_batch,
}


def read_back(client: Client, database: str, table: str) -> dict[str, list[Any]]:
    """The table's insert columns, DateTime64 as epoch ms and DateTime as epoch seconds."""
    spec = TABLES[table]
    exprs = []
    for name, ch_type in spec.columns:
        if ch_type.startswith("DateTime64"):
            exprs.append(f"toUnixTimestamp64Milli(`{name}`) AS `{name}`")
        elif ch_type.startswith("DateTime"):
            exprs.append(f"toUnixTimestamp(`{name}`) AS `{name}`")
        else:
            exprs.append(f"`{name}`")
    result = client.query(
        f"SELECT {', '.join(exprs)} FROM `{database}`.`{table}` ORDER BY {', '.join(spec.order_by)}"
    )
    return dict(zip(result.column_names, (list(c) for c in result.result_columns), strict=True))


def count(client: Client, database: str, table: str) -> int:
    return int(cast(int, client.command(f"SELECT count() FROM `{database}`.`{table}`")))


@pytest.fixture
def db(ch_client: Client, ch_database: str) -> str:
    apply_migrations(ch_client, ch_database)
    return ch_database


@pytest.fixture
def writer(ch_client: Client, db: str) -> ClickHouseWriter:
    return ClickHouseWriter(ch_client, db)


# --- round trips ------------------------------------------------------------------


@pytest.mark.clickhouse
@pytest.mark.parametrize("table", list(BATCHES))
def test_round_trip_every_table(ch_client: Client, db: str, writer: ClickHouseWriter, table: str) -> None:
    batch = BATCHES[table]()
    rows = len(next(iter(batch.values())))
    assert writer.write(table, batch) == rows

    stored = read_back(ch_client, db, table)
    for name, ch_type in TABLES[table].columns:
        expected = batch[name]
        if ch_type == "Float32":
            # NaN marks "absent": it must come back as NaN, not 0 or NULL.
            np.testing.assert_array_equal(np.array(stored[name], np.float32), expected, err_msg=name)
        elif isinstance(expected, np.ndarray):
            assert stored[name] == expected.tolist(), name
        else:
            assert stored[name] == expected, name


@pytest.mark.clickhouse
def test_server_fills_ingested_at(ch_client: Client, db: str, writer: ClickHouseWriter) -> None:
    before_ms = int(time.time() * 1000) - 1000
    writer.write("api_calls", api_calls_batch(2))
    rows = query_rows(
        ch_client, f"SELECT toUnixTimestamp64Milli(ingested_at) AS at FROM `{db}`.api_calls ORDER BY at"
    )
    assert len(rows) == 2
    assert all(before_ms <= row["at"] <= time.time() * 1000 + 1000 for row in rows)


@pytest.mark.clickhouse
def test_large_numpy_batch(ch_client: Client, db: str, writer: ClickHouseWriter) -> None:
    # Bigger than one client-side block (~2 MB), so the insert is split and must still be whole.
    batch = api_calls_batch(40_000)
    assert writer.write("api_calls", batch, dedup_token="big") == 40_000
    assert writer.write("api_calls", batch, dedup_token="big") == 40_000
    assert count(ch_client, db, "api_calls") == 40_000
    total = ch_client.command(f"SELECT sum(prompt_tokens) FROM `{db}`.api_calls")
    assert int(cast(int, total)) == int(batch["prompt_tokens"].sum())


# --- dedup, validation, stats -------------------------------------------------------


@pytest.mark.clickhouse
def test_same_dedup_token_makes_repeat_a_no_op(ch_client: Client, db: str, writer: ClickHouseWriter) -> None:
    batch = alerts_batch()
    writer.write("alerts", batch, dedup_token="alert:batch-1")
    writer.write("alerts", batch, dedup_token="alert:batch-1")
    assert count(ch_client, db, "alerts") == 2
    # Same rows under a new token are a new insert (ReplacingMergeTree collapses them later).
    writer.write("alerts", batch, dedup_token="alert:batch-2")
    assert count(ch_client, db, "alerts") == 4


@pytest.mark.clickhouse
def test_identical_untokened_block_is_skipped(ch_client: Client, db: str, writer: ClickHouseWriter) -> None:
    # The tables' deduplication window also hashes token-less blocks (documented on write()).
    assert writer.write("rejected_events", rejected_batch()) == 2
    assert writer.write("rejected_events", rejected_batch()) == 2
    assert count(ch_client, db, "rejected_events") == 2


@pytest.mark.clickhouse
def test_token_does_not_leak_into_next_write(ch_client: Client, db: str, writer: ClickHouseWriter) -> None:
    writer.write("api_calls", api_calls_batch(2), dedup_token="t")
    other = api_calls_batch(3)
    other["event_id"] = ["x-0", "x-1", "x-2"]
    writer.write("api_calls", other)  # no token: must not reuse "t" and be dropped as a duplicate
    assert count(ch_client, db, "api_calls") == 5


def test_only_the_per_batch_tables_skip_the_merge_on_insert() -> None:
    per_batch = {"api_calls", "signatures_1m", "key_signatures_1m", "alerts"}
    assert {name for name, spec in TABLES.items() if not spec.merge_on_insert} == per_batch
    for name, spec in TABLES.items():
        settings = insert_settings(spec, None)
        assert settings["deduplicate_blocks_in_dependent_materialized_views"] == 1, name
        assert settings.get("optimize_on_insert", 1) == (0 if name in per_batch else 1), name
        assert "insert_deduplication_token" not in settings, name
    assert insert_settings(TABLES["alerts"], "alert:x")["insert_deduplication_token"] == "alert:x"


def _first_row_twice(batch: Columns) -> Columns:
    return {k: np.repeat(v[:1], 2) if isinstance(v, np.ndarray) else [v[0], v[0]] for k, v in batch.items()}


@pytest.mark.clickhouse
def test_a_per_batch_block_is_stored_as_sent(ch_client: Client, db: str, writer: ClickHouseWriter) -> None:
    """optimize_on_insert = 0 reaches ClickHouse: two rows of one api_calls block with the same key stay two
    until a merge, as rows of two blocks always did (FINAL reads one); rejected_events still merges them."""
    writer.write("api_calls", _first_row_twice(api_calls_batch(2)))
    assert count(ch_client, db, "api_calls") == 2
    assert int(cast(int, ch_client.command(f"SELECT count() FROM `{db}`.api_calls FINAL"))) == 1
    writer.write("rejected_events", _first_row_twice(rejected_batch()))
    assert count(ch_client, db, "rejected_events") == 1


@pytest.mark.clickhouse
def test_empty_batch_writes_nothing(ch_client: Client, db: str, writer: ClickHouseWriter) -> None:
    empty = {name: np.array([], dtype=np.asarray(v).dtype) for name, v in rejected_batch().items()}
    assert writer.write("rejected_events", empty) == 0
    assert writer.write("rejected_events", {name: [] for name in empty}) == 0
    assert count(ch_client, db, "rejected_events") == 0
    assert writer.stats == {}


def test_wrong_columns_raise_value_error_naming_them() -> None:
    writer = ClickHouseWriter(cast(Client, _FailingClient(AssertionError("nothing may be sent"))), "db")
    batch = alerts_batch()
    with pytest.raises(ValueError, match=r"alerts: missing columns \['severity'\]"):
        writer.write("alerts", {k: v for k, v in batch.items() if k != "severity"})
    with pytest.raises(ValueError, match=r"unexpected columns \['sevrity'\]"):
        writer.write("alerts", {**batch, "sevrity": ["low", "low"]})
    with pytest.raises(ValueError, match="unknown table 'alert'"):
        writer.write("alert", batch)
    with pytest.raises(ValueError, match="differ in length"):
        writer.write("alerts", {**batch, "score": np.array([1.0], np.float32)})
    with pytest.raises(ValueError, match=r"alerts\.rule: expected a 1-D array"):
        writer.write("alerts", {**batch, "rule": "extraction_score"})
    with pytest.raises(ValueError, match=r"alerts\.score: expected a 1-D array"):
        writer.write("alerts", {**batch, "score": np.zeros((2, 2), np.float32)})
    assert writer.stats == {}


@pytest.mark.clickhouse
def test_stats_count_inserts_rows_and_time(writer: ClickHouseWriter) -> None:
    writer.write("api_calls", api_calls_batch(4))
    writer.write("api_calls", api_calls_batch(3), dedup_token="second")
    writer.write("alerts", alerts_batch())
    stats = writer.stats
    assert set(stats) == {"api_calls", "alerts"}
    assert (stats["api_calls"].inserts, stats["api_calls"].rows, stats["api_calls"].errors) == (2, 7, 0)
    assert (stats["alerts"].inserts, stats["alerts"].rows) == (1, 2)
    assert 0 < stats["api_calls"].last_insert_s < 60
    stats["alerts"].rows = 0  # a snapshot: changing it does not touch the writer
    assert writer.stats["alerts"].rows == 2


# --- error mapping -----------------------------------------------------------------


@pytest.mark.clickhouse
def test_bad_data_is_rejected_then_writer_recovers(
    ch_client: Client, db: str, writer: ClickHouseWriter
) -> None:
    bad = api_calls_batch(2)
    bad["asn"] = ["AS64512", "AS1"]  # strings for a UInt32 column
    with pytest.raises(ClickHouseRejected) as info:
        writer.write("api_calls", bad)
    assert info.value.table == "api_calls" and not info.value.retryable
    too_big = api_calls_batch(2)
    too_big["latency_ms"] = [1, 2**40]
    with pytest.raises(ClickHouseRejected):
        writer.write("api_calls", too_big)

    assert writer.write("api_calls", api_calls_batch(2)) == 2
    assert count(ch_client, db, "api_calls") == 2
    assert (writer.stats["api_calls"].errors, writer.stats["api_calls"].inserts) == (2, 1)


@pytest.mark.clickhouse
def test_dropped_table_is_rejected(ch_client: Client, db: str, writer: ClickHouseWriter) -> None:
    writer.write("alerts", alerts_batch())
    ch_client.command(f"DROP TABLE `{db}`.alerts SYNC")
    with pytest.raises(ClickHouseRejected, match="UNKNOWN_TABLE") as info:
        writer.write("alerts", alerts_batch())
    assert info.value.table == "alerts"


class _FailingClient:
    """Stands in for a client whose server went away: every call raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def create_insert_context(self, *args: object, **kwargs: object) -> None:
        raise self.error

    def query(self, *args: object, **kwargs: object) -> None:
        raise self.error


def test_server_down_during_write_is_unavailable() -> None:
    down = driver_errors.OperationalError("Error HTTPConnectionPool: Connection refused")
    writer = ClickHouseWriter(cast(Client, _FailingClient(down)), "db")
    with pytest.raises(ClickHouseUnavailable) as info:
        writer.write("alerts", alerts_batch())
    assert info.value.table == "alerts" and info.value.retryable
    assert isinstance(info.value, ClickHouseError)
    assert info.value.__cause__ is down
    assert writer.stats["alerts"].errors == 1 and writer.stats["alerts"].inserts == 0


def test_query_rows_maps_errors() -> None:
    timeout = driver_errors.DatabaseError("Code: 159. TIMEOUT_EXCEEDED", code=159)
    with pytest.raises(ClickHouseUnavailable):
        query_rows(cast(Client, _FailingClient(timeout)), "SELECT 1")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (driver_errors.OperationalError("connection refused"), ClickHouseUnavailable),
        (ConnectionResetError("reset by peer"), ClickHouseUnavailable),
        (driver_errors.DatabaseError("Code: 252. TOO_MANY_PARTS", code=252), ClickHouseUnavailable),
        (driver_errors.DatabaseError("Code: 241. MEMORY_LIMIT_EXCEEDED", code=241), ClickHouseUnavailable),
        (driver_errors.DatabaseError("HTTP driver received HTTP status 502"), ClickHouseUnavailable),
        (driver_errors.DatabaseError("Code: 53. TYPE_MISMATCH", code=53), ClickHouseRejected),
        (driver_errors.DatabaseError("Code: 60. UNKNOWN_TABLE", code=60), ClickHouseRejected),
        (driver_errors.DatabaseError("HTTP driver received HTTP status 400"), ClickHouseRejected),
        (driver_errors.DataError("Unable to create native array for column `n`"), ClickHouseRejected),
        (ValueError("invalid literal for int()"), ClickHouseRejected),
    ],
)
def test_classify(error: Exception, expected: type[ClickHouseError]) -> None:
    mapped = classify(error, "api_calls")
    assert type(mapped) is expected
    assert mapped.table == "api_calls"
    assert str(error) in str(mapped)


# --- connect -----------------------------------------------------------------------


@pytest.mark.clickhouse
def test_connect_caches_one_client_per_dsn(ch_settings: Settings, ch_client: Client) -> None:
    assert connect(ch_settings) is ch_client
    tables = query_rows(
        ch_client,
        "SELECT name FROM system.tables WHERE database = {db:String} ORDER BY name",
        {"db": ch_settings.clickhouse_database},
    )
    assert {r["name"] for r in tables} >= set(TABLES)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connect_to_unreachable_server_masks_password() -> None:
    dsn = f"http://dw_user:s3cr%40t@127.0.0.1:{_free_port()}/dw"
    with pytest.raises(ClickHouseUnavailable) as info:
        connect(load_settings(clickhouse_dsn=dsn))
    message = str(info.value)
    assert "cannot connect to ClickHouse at http://dw_user:***@127.0.0.1:" in message
    assert "s3cr" not in message and "s3cr" not in str(info.value.dsn)
    assert info.value.retryable
    assert dsn not in clickhouse._clients  # a failed connect leaves nothing cached


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        ("http://u:p%40ss@h:8123/db", "http://u:***@h:8123/db"),
        ("https://u:@h:8443", "https://u:***@h:8443"),
        ("http://u@h:8123", "http://u@h:8123"),
        ("https://h:8443/db?password=x&secure=1", "https://h:8443/db?password=***&secure=1"),
        ("chdb:///var/lib/dw", "chdb:///var/lib/dw"),
        ("chdb://memory/db", "chdb://memory/db"),
    ],
)
def test_mask_dsn(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked


_CHDB_PROBE = textwrap.dedent(
    """
    import sys
    from pipeline.settings import load_settings
    from pipeline.sinks.clickhouse import ClickHouseUnavailable, close, connect

    held, first, second = sys.argv[1:4]

    def attempt(label, path):
        try:
            connect(load_settings(clickhouse_dsn=f"chdb://{path}", clickhouse_database="probe"))
            print(label, "ok")
        except ClickHouseUnavailable as exc:
            print(label, "unavailable:", exc)

    attempt("held-first-thing", held)
    attempt("first", first)
    attempt("second-while-first-open", second)
    close()
    attempt("second-after-close", second)
    close()
    attempt("held-by-other-process", held)
    """
)


@pytest.mark.clickhouse
@pytest.mark.slow
def test_chdb_directory_rules_across_processes(
    ch_client: Client, ch_settings: Settings, tmp_path: Path
) -> None:
    held = ch_settings.effective_clickhouse_dsn.removeprefix("chdb://")
    out = subprocess.run(
        [sys.executable, "-c", _CHDB_PROBE, held, str(tmp_path / "one"), str(tmp_path / "two" / "nested")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    lines = dict(line.split(" ", 1) for line in out.splitlines() if line.split(" ", 1)[0] in _LABELS)
    assert lines["first"] == "ok"
    assert "close() it first" in lines["second-while-first-open"]
    assert lines["second-after-close"] == "ok"
    # The data directory stays locked by this (the parent) process, whether or not the child
    # had an engine open before.
    assert "another process has this directory open" in lines["held-first-thing"]
    assert "another process has this directory open" in lines["held-by-other-process"]


_LABELS = {
    "held-first-thing", "first", "second-while-first-open", "second-after-close", "held-by-other-process",
}


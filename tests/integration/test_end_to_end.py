"""End to end on the real parts: embedded Tansu broker, Faust worker, embedded ClickHouse.

Runs the ``distillwatch`` command in child processes, the way a user does (chDB
lets one process hold a data directory, and this test process may hold another).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from jobs.embedded_broker import EmbeddedBroker
from jobs.replay import ReplayOptions, _replay_settings
from tests.support.end_to_end import (
    ACCOUNTS,
    BASE_TS,
    INVALID_LINES,
    assert_counted_once,
    cli,
    sql_rows,
    write_events,
)
from tests.support.events import MINIMAL

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse]

def test_replay_end_to_end_loses_nothing(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", 6000)
    n_invalid = len(range(0, 6000, 250))
    data_dir = tmp_path / "state"
    done = cli("replay", str(tmp_path / "events.jsonl"), "--report", str(tmp_path / "report.json"),
               "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["events_in"] == len(events) + n_invalid
    assert report["events_rejected"] == n_invalid
    assert sorted(a["account_id"] for a in report["accounts"]) == sorted(ACCOUNTS)
    assert set(report) == {"events_in", "events_rejected", "accounts", "alerts", "clusters", "run"}
    # The optional operator block: wall time, and the peak memory of this process and the worker together.
    assert report["run"]["wall_s"] > 0 and report["run"]["peak_rss_bytes"] > 100 * 2**20
    assert json.loads((data_dir / "drained.json").read_text()) == {"drained": True, "linking_error": None}
    for c in report["clusters"]:
        assert set(c) == {"cluster_id", "account_ids", "score"} and 0 <= c["score"] <= 100
        assert len(c["account_ids"]) >= 2 and set(c["account_ids"]) <= set(ACCOUNTS)

    assert_counted_once(data_dir, events, n_invalid)
    reasons = {r["reason"]: int(r["n"]) for r in sql_rows(
        data_dir, "SELECT reason, count() AS n FROM rejected_events FINAL GROUP BY reason")}
    assert {"invalid_json", "invalid_utf8", "not_an_object", "schema_violation", "oversized"} <= set(reasons)


def test_dead_letters_carry_original_bytes_and_reason(tmp_path: Path) -> None:
    lines = [orjson.dumps({**MINIMAL, "event_id": f"ok-{i}", "ts": BASE_TS + i}) for i in range(50)] + INVALID_LINES
    (tmp_path / "e.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with EmbeddedBroker() as broker:
        done = cli("replay", str(tmp_path / "e.jsonl"), "--report", str(tmp_path / "r.json"),
                   "--kafka", broker.bootstrap, "--data-dir", str(tmp_path / "state"))
        assert done.returncode == 0, done.stderr
        report = json.loads((tmp_path / "r.json").read_text())
        assert (report["events_in"], report["events_rejected"]) == (57, len(INVALID_LINES))
        topics = asyncio.run(_list_topics(broker.bootstrap))
        (dlq,) = [t for t in topics if t.endswith("-api-calls-dlq")]
        messages = asyncio.run(_consume_all(broker.bootstrap, dlq, len(INVALID_LINES)))
    assert sorted(m[0] for m in messages) == sorted(INVALID_LINES)
    assert all(m[1]["dw-reason"] and "dw-source-offset" in m[1] for m in messages)


async def _list_topics(bootstrap: str) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return await consumer.topics()
    finally:
        await consumer.stop()


async def _consume_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[bytes, dict[str, bytes]]] = []
    try:
        for _ in range(50):
            batch = await consumer.getmany(timeout_ms=200)
            out += [(m.value, dict(m.headers)) for ms in batch.values() for m in ms]
            if len(out) >= expected:
                break
        return out
    finally:
        await consumer.stop()


def test_replay_settings_isolate_shared_infrastructure(tmp_path: Path) -> None:
    opts = ReplayOptions(tmp_path / "e.jsonl", tmp_path / "r.json", kafka="k:9092", clickhouse="http://ch:8123")
    s = _replay_settings(opts, "k:9092", tmp_path)
    assert s.topic_events.startswith("replay-") and s.clickhouse_database.startswith("replay_")

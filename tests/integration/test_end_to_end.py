"""End to end on the real parts: embedded Tansu broker, Faust worker, embedded ClickHouse.

Runs the ``distillwatch`` command in child processes, the way a user does (chDB
lets one process hold a data directory, and this test process may hold another).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from jobs.embedded_broker import EmbeddedBroker
from jobs.replay import ReplayOptions, _replay_settings
from tests.schemas.test_event import MINIMAL

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse]

BASE_TS = 1_770_888_600_000
ACCOUNTS = [f"org-{i}" for i in range(7)]
INVALID_LINES = [
    b"not json at all",
    b"\xff\xfe\x00 invalid utf-8",
    b"[1, 2, 3]",
    orjson.dumps({**MINIMAL, "status": 42}),
    orjson.dumps({**MINIMAL, "client_ip": "999.1.1.1"}),
    orjson.dumps({k: v for k, v in MINIMAL.items() if k != "model"}),
    orjson.dumps({**MINIMAL, "user_agent": "x" * 70_000}),  # oversized
]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[2], check=False)


def sql_rows(data_dir: Path, query: str) -> list[dict[str, Any]]:
    done = cli("sql", query, "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def write_events(path: Path, n_valid: int) -> list[dict[str, Any]]:
    events = []
    for i in range(n_valid):
        account = ACCOUNTS[i % len(ACCOUNTS)]
        events.append({
            **MINIMAL, "event_id": f"ev-{i}", "ts": BASE_TS + i * 50, "account_id": account,
            "client_ip": f"198.51.100.{i % 9}", "prompt_tokens": 100 + i % 13, "completion_tokens": 7 * (i % 5),
            "prompt_hash": f"{(i * 2654435761) % 2**64:016x}", "elicits_reasoning": account == "org-1",
        })
    with open(path, "wb") as f:
        for i, e in enumerate(events):
            f.write(orjson.dumps(e) + b"\n")
            if i % 250 == 0:
                f.write(INVALID_LINES[(i // 250) % len(INVALID_LINES)] + b"\n")
            if i % 333 == 0:
                f.write(b"\n")  # blank lines are not events
    return events


def assert_counted_once(data_dir: Path, events: list[dict[str, Any]], rejected: int) -> None:
    """Every valid event is in a signature frame and in api_calls exactly once; ``rejected`` rejects."""
    (sig,) = sql_rows(data_dir, "SELECT sum(calls) AS calls, sum(prompt_tokens) AS pt FROM signatures_1m FINAL")
    assert int(sig["calls"]) == len(events)
    assert int(sig["pt"]) == sum(e["prompt_tokens"] for e in events)
    (raw,) = sql_rows(data_dir, "SELECT count() AS n, uniqExact(event_id) AS u FROM api_calls FINAL")
    assert int(raw["n"]) == int(raw["u"]) == len(events)
    per_account = {r["account_id"]: int(r["calls"]) for r in sql_rows(
        data_dir, "SELECT account_id, sum(calls) AS calls FROM signatures_1m FINAL GROUP BY account_id")}
    assert per_account == dict(Counter(e["account_id"] for e in events))
    (n_rejected,) = sql_rows(data_dir, "SELECT count() AS n FROM rejected_events FINAL")
    assert int(n_rejected["n"]) == rejected


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

    # Every valid event is in a signature frame, exactly once; every reject is recorded.
    (sig,) = sql_rows(data_dir, "SELECT sum(calls) AS calls, sum(prompt_tokens) AS pt FROM signatures_1m FINAL")
    assert int(sig["calls"]) == len(events)
    assert int(sig["pt"]) == sum(e["prompt_tokens"] for e in events)
    (raw,) = sql_rows(data_dir, "SELECT count() AS n, uniqExact(event_id) AS u FROM api_calls FINAL")
    assert int(raw["n"]) == int(raw["u"]) == len(events)
    per_account = {r["account_id"]: int(r["calls"]) for r in sql_rows(
        data_dir, "SELECT account_id, sum(calls) AS calls FROM signatures_1m FINAL GROUP BY account_id")}
    assert per_account == {a: sum(e["account_id"] == a for e in events) for a in ACCOUNTS}
    reasons = {r["reason"]: int(r["n"]) for r in sql_rows(
        data_dir, "SELECT reason, count() AS n FROM rejected_events FINAL GROUP BY reason")}
    assert sum(reasons.values()) == n_invalid
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

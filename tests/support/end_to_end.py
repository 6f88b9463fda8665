"""Event files and checks shared by the end-to-end tests: what goes in (valid events with bad lines
mixed in), how it is produced, and that ClickHouse counts each valid event once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from jobs.produce_file import account_key, partition_for
from pipeline.settings import Settings
from tests.support.events import MINIMAL

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


async def produce_keyed(settings: Settings, chunks: list[tuple[str, list[bytes]]], n_partitions: int) -> None:
    """Each chunk with its own codec, keyed and partitioned like jobs/produce_file.py."""
    n = 0
    for codec, lines in chunks:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5,
                                    compression_type=codec)
        await producer.start()
        try:
            futures = []
            for line in lines:
                key = account_key(line)
                futures.append(await producer.send(settings.topic_events, line, key=key,
                                                   partition=partition_for(key, n_partitions, n)))
                n += 1
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

"""Fault-injection harness: one input with poison and resent events, its exact expected aggregates,
and the real parts (embedded Tansu broker, ``distillwatch worker`` child processes, embedded ClickHouse).

Expected per-minute counters come from ``expected_counters``: plain Python over
the input, independent of the pipeline (valid, unique, on-time events only).
"""

from __future__ import annotations

import asyncio
import calendar
import json
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from jobs.embedded_broker import free_port
from jobs.produce_file import account_key, partition_for, produce_lines
from jobs.worker_process import WorkerProcess
from pipeline.settings import Settings, load_settings
from pipeline.topics import ensure_topics
from tests.support.clickhouse_faults import FAULT_HOOKS
from tests.support.events import BASE_TS, MINIMAL, numbered_event

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
N_VALID = 6000
LATENESS_S = 120
ANON = {"vpn", "proxy", "tor"}

# Poison messages and the reason the event contract gives each (README "Input", schemas/event.py).
_OK = {**MINIMAL, "account_id": "org-0", "ts": BASE_TS + 60_000}
POISON: list[tuple[bytes, str]] = [
    (b"\xff\xfe\x00 not utf-8 \xc3\x28", "invalid_utf8"),
    (b"this is not json", "invalid_json"),
    (b"", "invalid_json"),
    (b'{"event_id": "x", "ts": ', "invalid_json"),
    (b"[" * 5000 + b"]" * 5000, "invalid_json"),  # nesting beyond the parser's limit
    (b"[1, 2, 3]", "not_an_object"),
    (b'"a string"', "not_an_object"),
    (orjson.dumps({**_OK, "status": "200"}), "schema_violation"),  # wrong type
    (orjson.dumps({k: v for k, v in _OK.items() if k != "account_id"}), "schema_violation"),  # missing field
    (orjson.dumps({**_OK, "prompt_tokens": -5}), "schema_violation"),  # out of range
    (orjson.dumps({**_OK, "prompt_tokens": 2**40}), "schema_violation"),
    (orjson.dumps({**_OK, "status": 999}), "schema_violation"),
    (orjson.dumps({**_OK, "temperature": 1e308}), "schema_violation"),
    (orjson.dumps({**_OK, "ts": 915_148_800_000}), "schema_violation"),  # 1999: before the contract's range
    (orjson.dumps({**_OK, "ts": 4_070_908_800_000}), "ts_in_future"),  # 2099
    (orjson.dumps({**_OK, "user_agent": "x" * 70_000}), "oversized"),
    (orjson.dumps(_OK)[:-1] + b', "temperature": NaN}', "schema_violation"),  # not a finite number
]


@dataclass(frozen=True)
class FaultInput:
    lines: list[bytes]  # in produce order
    poison: list[tuple[bytes, str]]  # (message, expected reason), in the order they appear
    resent: int  # copies of valid events sent again
    stale: int  # valid events whose minute closed long before: late, not counted in frames


def build_input() -> FaultInput:
    """Valid events, with poison every 331 lines, resends every 40th (adjacent) and 131st (300 lines on),
    and a few events stamped a year earlier (late)."""
    lines: list[bytes] = []
    poison: list[tuple[bytes, str]] = []
    later: dict[int, list[bytes]] = defaultdict(list)
    resent = stale = 0
    for i in range(N_VALID):
        line = orjson.dumps(numbered_event(i))
        lines.append(line)
        if i % 40 == 0:
            lines.append(line)
            resent += 1
        if i % 131 == 0:
            later[i + 300].append(line)
            resent += 1
        if i and i % 331 == 0:
            poison.append(POISON[(i // 331 - 1) % len(POISON)])
            lines.append(poison[-1][0])
        if i in (1500, 4100):
            stale_event = {**numbered_event(i), "event_id": f"stale-{i}", "ts": BASE_TS - 365 * 86_400_000}
            lines.append(orjson.dumps(stale_event))
            stale += 1
        lines.extend(later.pop(i, []))
    for extra in later.values():
        lines.extend(extra)
    return FaultInput(lines, poison, resent, stale)


# --- expected values ----------------------------------------------------------------------

COUNTERS = ("calls", "prompt_tokens", "completion_tokens", "reasoning_tokens", "reasoning_calls", "logprob_calls",
            "deep_logprob_calls", "logit_bias_calls", "multi_n_calls", "error_calls", "rate_limited_calls",
            "anon_calls", "hosting_calls", "temp_zero_calls", "stream_calls")


def expected_counters(lines: list[bytes]) -> dict[tuple[str, int], dict[str, int]]:
    """(account, minute start in epoch seconds) -> counters, from the valid, unique, on-time events.

    Plain Python: an event counts once per (account_id, ts, event_id) and only if
    its minute has not closed in its partition (max event time seen minus the
    allowed lateness), the rules in docs/operations.md and kernels/frames.py.
    """
    out: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    seen: set[tuple[str, int, str]] = set()
    part_max: dict[int, int] = {}
    for n, line in enumerate(lines):
        e = _valid_event(line)
        if e is None:
            continue
        key = (e["account_id"], e["ts"], e["event_id"])
        if key in seen:
            continue
        seen.add(key)
        p = partition_for(account_key(line), PARTITIONS, n)
        minute = e["ts"] // 60_000
        watermark = part_max.get(p, -(2**62)) - LATENESS_S * 1000
        part_max[p] = max(part_max.get(p, -(2**62)), e["ts"])
        if (minute + 1) * 60_000 <= watermark:
            continue  # late
        c = out[(e["account_id"], minute * 60)]
        c["calls"] += 1
        c["prompt_tokens"] += e["prompt_tokens"]
        c["completion_tokens"] += e["completion_tokens"]
        c["reasoning_tokens"] += e.get("reasoning_tokens", 0)
        c["reasoning_calls"] += bool(e.get("elicits_reasoning"))
        top = e.get("top_logprobs") or 0
        c["logprob_calls"] += bool(e.get("logprobs") or top > 0)
        c["deep_logprob_calls"] += top >= 10
        c["logit_bias_calls"] += e.get("logit_bias_count", 0) > 0
        c["multi_n_calls"] += e.get("n", 1) > 1
        c["error_calls"] += e["status"] >= 400
        c["rate_limited_calls"] += e["status"] == 429
        c["anon_calls"] += e.get("network_type") in ANON
        c["hosting_calls"] += e.get("network_type") == "hosting"
        c["temp_zero_calls"] += e.get("temperature") == 0.0
        c["stream_calls"] += bool(e.get("stream"))
    return {k: {name: int(v[name]) for name in COUNTERS} for k, v in out.items()}


def _valid_event(line: bytes) -> dict[str, Any] | None:
    # The harness makes valid events with numbered_event() and poison from POISON only.
    if any(line == p for p, _ in POISON) or not line:
        return None
    return orjson.loads(line)  # type: ignore[no-any-return]


# --- running the pipeline ---------------------------------------------------------------------

def run_settings(bootstrap: str, data_dir: Path, **overrides: Any) -> Settings:
    run = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap, "data_dir": data_dir, "clickhouse_dsn": "",
        "topic_events": f"faults-{run}-api-calls", "topic_dlq": f"faults-{run}-dlq",
        "consumer_group": f"faults-{run}", "partitions": PARTITIONS, "web_port": free_port(),
        "allowed_lateness_s": LATENESS_S,
    }
    values.update(overrides)
    return load_settings(**values)


def produce(settings: Settings, lines: list[bytes]) -> None:
    ensure_topics(settings)
    asyncio.run(produce_lines(iter(lines), settings.bootstrap_servers, settings.topic_events, PARTITIONS))


def produce_tombstone(settings: Settings, key: bytes) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic_events, value=None, key=key, partition=0)
        finally:
            await producer.stop()
    asyncio.run(send())


_started: list[WorkerProcess] = []


def start_worker(settings: Settings, *, bounded: bool, name: str, env: dict[str, str] | None = None
                 ) -> WorkerProcess:
    """``distillwatch worker``; with a ClickHouse fault hook in ``env``, the same command with the hooks installed."""
    hooked = any(k in (env or {}) for k in FAULT_HOOKS)
    worker = WorkerProcess(settings, bounded=bounded, log_path=settings.data_dir / f"{name}.log", env=env,
                           module="tests.support.fault_worker" if hooked else "jobs.cli")
    _started.append(worker)
    return worker


def kill_leftover_workers() -> None:
    """Kill the workers this module started that still run (after a failed test)."""
    while _started:
        _started.pop().kill()


def wait_for(worker: WorkerProcess, check: Callable[[dict[str, Any]], bool], timeout_s: float,
             what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise AssertionError(f"worker exited ({worker.proc.returncode}) while waiting for {what}:\n"
                                 f"{worker.log_tail(40)}")
        stats = worker.stats()
        if stats is not None and check(stats):
            return stats
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last stats {worker.stats()}\n{worker.log_tail(40)}")


def finish(worker: WorkerProcess, timeout_s: float = 180) -> None:
    try:
        code = worker.wait(timeout_s)
    except TimeoutError as exc:  # CI keeps only what the assertion says: put the log's end in it
        raise AssertionError(f"{exc}\n{worker.log_tail(80)}") from exc
    assert code == 0, f"worker exited with {code}:\n{worker.log_tail(60)}"


def sql(data_dir: Path, query: str) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "jobs.cli", "sql", query, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@dataclass(frozen=True)
class Results:
    signatures: dict[tuple[str, str], dict[str, Any]]  # (account, window_start) -> every column but emitted_at
    rejected: dict[tuple[int, int], str]  # (partition, offset) -> reason
    raw_events: int
    raw_unique: int
    alerts: list[dict[str, Any]]


def read_results(data_dir: Path) -> Results:
    """Aggregates of a finished run, read with FINAL (the worker must have exited)."""
    rows = sql(data_dir, "SELECT * EXCEPT emitted_at FROM signatures_1m FINAL")
    signatures = {(r["account_id"], r["window_start"]): r for r in rows}
    assert len(signatures) == len(rows)
    rejected = {(int(r["kafka_partition"]), int(r["kafka_offset"])): r["reason"] for r in sql(
        data_dir, "SELECT kafka_partition, kafka_offset, reason FROM rejected_events FINAL")}
    (raw,) = sql(data_dir, "SELECT count() AS n, uniqExact(account_id, ts, event_id) AS u FROM api_calls FINAL")
    alerts = sql(data_dir, "SELECT * EXCEPT emitted_at FROM alerts FINAL ORDER BY alert_id")
    return Results(signatures, rejected, int(raw["n"]), int(raw["u"]), alerts)


def counters_of(results: Results) -> dict[tuple[str, int], dict[str, int]]:
    out = {}
    for (account, _), row in results.signatures.items():
        minute_s = calendar.timegm(time.strptime(row["window_start"], "%Y-%m-%d %H:%M:%S"))
        out[(account, minute_s)] = {name: int(row[name]) for name in COUNTERS}
    return out


async def _consume_count(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        n = 0
        for _ in range(20):
            got = await consumer.getmany(timeout_ms=300)
            if not got and n:
                break
            n += sum(len(ms) for ms in got.values())
        return n
    finally:
        await consumer.stop()


def dead_letter_count(settings: Settings) -> int:
    return asyncio.run(_consume_count(settings.kafka_bootstrap, settings.topic_dlq))

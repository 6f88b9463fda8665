"""loadgen's Kafka sink on a broker: every event lands in its key's partition (Kafka's default partitioner),
in order, acknowledged; pacing holds event time to the speed-up."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from jobs.bench.kafka_io import create_topics
from jobs.loadgen import ScenarioConfig, generate, produce_kafka
from jobs.loadgen.sink import event_time_ms
from pipeline.hashing import kafka_partition

pytestmark = pytest.mark.kafka
PARTITIONS = 3


async def _read(bootstrap: str, topic: str, n: int) -> dict[int, list[tuple[bytes | None, bytes]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        got: dict[int, list[tuple[bytes | None, bytes]]] = {p: [] for p in range(PARTITIONS)}
        while sum(map(len, got.values())) < n:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                got[tp.partition] += [(r.key, r.value) for r in records]
        return got
    finally:
        await consumer.stop()


def _topic(kafka_broker: Any) -> str:
    topic = f"loadgen-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_broker.bootstrap, [topic], PARTITIONS)
    return topic


def test_events_land_in_their_keys_partition_in_order(kafka_broker: Any) -> None:
    events = list(generate(ScenarioConfig(seed=3, duration_s=120, rate_eps=50)))
    topic = _topic(kafka_broker)
    progress: list[int] = []
    sent = produce_kafka(iter(events), kafka_broker.bootstrap, topic, on_progress=progress.append,
                         progress_every=1000)
    assert sent == len(events)
    assert progress == [*range(1000, len(events) + 1, 1000), len(events)]
    got = asyncio.run(asyncio.wait_for(_read(kafka_broker.bootstrap, topic, sent), 120))
    expected: dict[int, list[tuple[bytes | None, bytes]]] = {p: [] for p in range(PARTITIONS)}
    for event in events:
        key = event["account_id"].encode()
        expected[kafka_partition(key, PARTITIONS)].append((key, orjson.dumps(event)))
    assert got == expected


def test_speedup_paces_event_time(kafka_broker: Any) -> None:
    events = list(generate(ScenarioConfig(seed=3, duration_s=60, rate_eps=20)))
    span_s = (max(map(event_time_ms, events)) - event_time_ms(events[0])) / 1000
    topic = _topic(kafka_broker)
    started = time.monotonic()
    assert produce_kafka(iter(events), kafka_broker.bootstrap, topic, speedup=span_s / 2) == len(events)
    # The last event is due 2 s in (the pacer skips sleeps under 5 ms): a lower bound holds under any load.
    assert time.monotonic() - started >= 1.99


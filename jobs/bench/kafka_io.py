"""Kafka for the bench: run-private topics, bulk production, and the raw consume measurement."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from kafka.admin import NewTopic

from jobs.bench.procs import cpu_seconds, self_cpu_seconds
from jobs.produce_file import Message, produce_messages
from pipeline.topics import admin_client


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = admin_client(bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, messages: Iterable[Message]) -> int:
    # As a gateway's producer would: lz4-compressed batches, acks from the broker.
    return asyncio.run(produce_messages(messages, bootstrap, topic, compression="lz4", batch_bytes=1 << 20))


@dataclass(frozen=True)
class RawConsume:
    messages: int
    seconds: float
    cpu_seconds: float  # this process and the broker, over the same window


async def _consume(bootstrap: str, topic: str, expected: int, broker_pid: int) -> RawConsume:
    # The same fetch settings as pipeline.sources.kafka_batches.KafkaBatchSource.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}", enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20,
        max_poll_records=50_000, session_timeout_ms=10_000, heartbeat_interval_ms=3_000,
    )
    await consumer.start()
    try:
        first = 0
        while not first:  # join the group and see the first message before the clock starts
            fetched = await consumer.getmany(timeout_ms=1000, max_records=1)
            first = sum(len(m) for m in fetched.values())
        started, cpu0 = time.perf_counter(), self_cpu_seconds() + cpu_seconds(broker_pid)
        count = first
        while count < expected:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for messages in fetched.values():
                count += len(messages)
        return RawConsume(count - first, time.perf_counter() - started,
                          self_cpu_seconds() + cpu_seconds(broker_pid) - cpu0)
    finally:
        await consumer.stop()


def consume_raw(bootstrap: str, topic: str, expected: int, broker_pid: int, timeout_s: float) -> RawConsume:
    """Read ``expected`` messages with a consumer group's getmany loop, doing nothing with them.

    Timed from the first message (after the group join, which is not counted) to the last.
    """
    return asyncio.run(asyncio.wait_for(_consume(bootstrap, topic, expected, broker_pid), timeout_s))

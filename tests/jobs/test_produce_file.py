"""produce_file: the partitioner's cache must not change where a line goes; bulk sends keep order and keys."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from jobs.bench.kafka_io import create_topics
from jobs.produce_file import CachedPartitioner, account_key, partition_for, produce_messages


def test_cached_partitions_equal_kafkas_default_partitioner() -> None:
    lines = [b'{"account_id":"org-%d"}' % (i % 37) for i in range(500)] + [b"not json", b'{"account_id":7}']
    cached = CachedPartitioner(6)
    for counter, line in enumerate(lines * 2):  # the second pass is served from the cache
        key = account_key(line)
        assert cached(key, counter) == partition_for(key, 6, counter)


def test_lines_without_a_key_still_go_round_robin() -> None:
    cached = CachedPartitioner(4)
    assert [cached(None, n) for n in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]


@pytest.mark.kafka
def test_every_message_lands_in_its_partition_in_order_with_its_key_a_big_one_included(kafka_broker: Any) -> None:
    topic = f"produce-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_broker.bootstrap, [topic], 3)
    big = b"x" * 100_000  # larger than a producer batch: sent as a batch of its own
    messages = [(i % 3, b"k%d" % i if i % 2 else None, b"v%d" % i) for i in range(2_000)] + [(1, None, big)]
    sent = asyncio.run(produce_messages(messages, [kafka_broker.bootstrap], topic))
    assert sent == len(messages)

    async def read_back() -> dict[int, list[tuple[bytes | None, bytes]]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(3)])
            got: dict[int, list[tuple[bytes | None, bytes]]] = {0: [], 1: [], 2: []}
            while sum(map(len, got.values())) < len(messages):
                for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                    got[tp.partition] += [(r.key, r.value) for r in records]
            return got
        finally:
            await consumer.stop()

    got = asyncio.run(asyncio.wait_for(read_back(), 120))
    for p in range(3):
        assert got[p] == [(k, v) for q, k, v in messages if q == p]

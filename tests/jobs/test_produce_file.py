"""produce_file: lines go where Kafka's default partitioner sends them; bulk sends keep order and keys."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from jobs.bench.kafka_io import create_topics
from jobs.produce_file import account_key, keyed_lines, partition_for, produce_messages
from pipeline.hashing import kafka_partition


def test_keyed_lines_go_to_their_accounts_partition_and_keyless_ones_in_turn() -> None:
    lines = [b'{"account_id":"org-%d"}' % (i % 37) for i in range(500)] + [b"not json", b'{"account_id":7}']
    got = list(keyed_lines(lines, 6))
    assert [(key, line) for _, key, line in got] == [(account_key(line), line) for line in lines]
    for counter, (partition, key, _) in enumerate(got):
        assert partition == (counter % 6 if key is None else kafka_partition(key, 6))
    assert got[500][1] is None and got[501][1] is None  # neither has a string account_id


def test_lines_without_a_key_still_go_round_robin() -> None:
    assert [partition_for(None, 4, n) for n in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]


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

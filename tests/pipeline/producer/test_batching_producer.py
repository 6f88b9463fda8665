"""BatchingProducer against the embedded broker: placement, order, validation, errors, bounded memory."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from itertools import islice

import pytest
from aiokafka import AIOKafkaConsumer
from kafka.errors import KafkaTimeoutError

from jobs.bench.kafka_io import create_topics
from jobs.embedded_broker import EmbeddedBroker
from jobs.loadgen import ScenarioConfig, generate
from pipeline.decode.batch_format import is_batch
from pipeline.decode.dispatch import decode_any_batch
from pipeline.hashing import kafka_partition
from pipeline.producer.batch_encoder import InvalidEventError
from pipeline.producer.batching_producer import BatchingProducer, DeliveryError
from tests.support.events import MINIMAL

pytestmark = [pytest.mark.kafka]

PARTITIONS = 3


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        create_topics(b.bootstrap, ["events"], PARTITIONS)
        yield b


def read_all(bootstrap: str, expected_events: int) -> tuple[list[int], list[bytes]]:
    async def consume() -> tuple[list[int], list[bytes]]:
        consumer = AIOKafkaConsumer("events", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    group_id="test-reader", enable_auto_commit=False)
        await consumer.start()
        parts: list[int] = []
        values: list[bytes] = []
        events = 0
        try:
            while events < expected_events:
                fetched = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                for tp, messages in sorted(fetched.items()):
                    for m in messages:
                        parts.append(tp.partition)
                        values.append(m.value)
                        events += int.from_bytes(m.value[4:8], "little")
        finally:
            await consumer.stop()
        return parts, values

    return asyncio.run(consume())


def test_events_arrive_once_in_their_account_partition_in_send_order(broker: EmbeddedBroker) -> None:
    events = list(islice(generate(ScenarioConfig(seed=11, rate_eps=500, duration_s=60)), 6000))
    producer = BatchingProducer(broker.bootstrap, "events", max_events=500, linger_ms=20)
    halves = [events[0::2], events[1::2]]  # two gateway threads
    threads = [threading.Thread(target=lambda h=h: [producer.send(e) for e in h]) for h in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    producer.close()
    assert producer.buffered_events == 0

    parts, values = read_all(broker.bootstrap, len(events))
    assert all(is_batch(v) for v in values)
    decoded = decode_any_batch(values, [None] * len(values), parts, list(range(len(values))),
                               max_message_bytes=65_536, max_ts_ms=2**62)
    assert not decoded.rejects
    assert sorted(decoded.raw["event_id"]) == sorted(e["event_id"] for e in events)  # each event once
    for account, part in zip(decoded.account_ids, decoded.kernel["part"].tolist(), strict=True):
        assert kafka_partition(account.encode(), PARTITIONS) == part
    # Within a thread's stream, each account's events keep their send order.
    position = {e["event_id"]: i for i, e in enumerate(events)}
    seen: dict[tuple[str, int], int] = {}
    for account, event_id in zip(decoded.account_ids, decoded.raw["event_id"], strict=True):
        key = (account, position[event_id] % 2)
        assert position[event_id] > seen.get(key, -1)
        seen[key] = position[event_id]


def test_invalid_events_raise_at_send(broker: EmbeddedBroker) -> None:
    producer = BatchingProducer(broker.bootstrap, "events")
    try:
        with pytest.raises(InvalidEventError) as info:
            producer.send({**MINIMAL, "status": 700})
        assert info.value.field == "status"
        assert producer.buffered_events == 0
    finally:
        producer.close()


def test_delivery_failures_are_surfaced_and_memory_stays_bounded() -> None:
    with EmbeddedBroker() as b:
        create_topics(b.bootstrap, ["events"], PARTITIONS)
        producer = BatchingProducer(b.bootstrap, "events", max_events=10, linger_ms=5, max_buffered_events=40,
                                    max_block_s=2, request_timeout_ms=1000, delivery_timeout_ms=1500, retries=1,
                                    reconnect_backoff_max_ms=200)
    # The broker is gone: batches fail, and sends stop once 40 events are outstanding.
    with pytest.raises((DeliveryError, KafkaTimeoutError)):
        for i in range(10_000):
            producer.send({**MINIMAL, "event_id": f"e{i}"})
    assert producer.buffered_events <= 40
    with pytest.raises(DeliveryError) as info:
        producer.close(timeout_s=5)
    assert info.value.lost_events > 0


def test_close_aborts_what_kafka_did_not_acknowledge_and_counts_it_lost() -> None:
    # A long delivery timeout: nothing fails on its own before close's short timeout, so close
    # itself must abort the batches, count every unacknowledged event and stop the I/O thread.
    with EmbeddedBroker() as b:
        create_topics(b.bootstrap, ["events"], PARTITIONS)
        producer = BatchingProducer(b.bootstrap, "events", max_events=10, linger_ms=5, max_buffered_events=40,
                                    client_id="dw-close-test", request_timeout_ms=60_000,
                                    delivery_timeout_ms=120_000, reconnect_backoff_max_ms=200)
    for i in range(25):
        producer.send({**MINIMAL, "event_id": f"e{i}"})
    with pytest.raises(DeliveryError) as info:
        producer.close(timeout_s=0.5)
    assert info.value.lost_events == 25
    assert producer.buffered_events == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("dw-close-test")]

"""KafkaBatchSource sizes batches in events: a batch container counts the events in its header."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jobs.bench.kafka_io import create_topics
from jobs.embedded_broker import EmbeddedBroker
from pipeline.decode.batch_format import events_in
from pipeline.producer.batching_producer import BatchingProducer
from pipeline.settings import load_settings
from pipeline.sources.fetched_batch import FetchedBatch
from pipeline.sources.kafka_batches import KafkaBatchSource
from tests.support.events import MINIMAL

pytestmark = [pytest.mark.kafka]

PER_CONTAINER = 500
CONTAINERS = 24  # in one partition: 12,000 events
MAX_EVENTS = 1_200


def test_events_in_reads_the_container_header_and_counts_json_as_one() -> None:
    assert events_in(b'{"event_id": "e"}') == 1
    assert events_in(b"DWB1" + (7).to_bytes(4, "little") + bytes(4)) == 7
    assert events_in(b"DWB1\x00") == 1  # too short to hold a header: sized as one


def test_batches_of_containers_hold_about_batch_max_events(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:
        create_topics(broker.bootstrap, ["events"], 1)
        producer = BatchingProducer(broker.bootstrap, "events", max_events=PER_CONTAINER, linger_ms=60_000)
        for i in range(PER_CONTAINER * CONTAINERS):
            producer.send({**MINIMAL, "event_id": f"e{i}"})
        producer.close()
        assert producer.sent_messages == CONTAINERS
        settings = load_settings(kafka_bootstrap=broker.bootstrap, topic_events="events", data_dir=tmp_path,
                                 consumer_group="sizing", batch_max_events=MAX_EVENTS, batch_max_wait_s=2.0)
        sizes = asyncio.run(_batch_sizes(settings))
    events = [sum(map(events_in, values)) for values in sizes]
    assert sum(events) == PER_CONTAINER * CONTAINERS
    # Never more than the limit plus the one container that crossed it, and not one container at a time.
    assert max(events) <= MAX_EVENTS + PER_CONTAINER
    assert len(events) <= 2 * (PER_CONTAINER * CONTAINERS) // MAX_EVENTS


async def _batch_sizes(settings: object) -> list[list[bytes]]:
    batches: list[list[bytes]] = []

    async def deliver(batch: FetchedBatch) -> None:
        if len(batch):
            batches.append(batch.values)
        await batch.ack()

    source = KafkaBatchSource(settings, deliver, drain_at_start=True)  # type: ignore[arg-type]
    await source.start()
    try:
        await asyncio.wait_for(source.drained.wait(), timeout=120)
    finally:
        await source.stop()
    return batches

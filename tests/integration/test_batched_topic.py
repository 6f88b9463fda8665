"""Events sent as DWB1 containers by BatchingProducer, mixed with plain JSON events on the same
topic, are all processed by the worker exactly once (schemas/batch_encoding.md)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import orjson
import pytest

from jobs.apache_kafka import ApacheKafkaBroker
from jobs.embedded_broker import EmbeddedBroker, free_port
from jobs.worker_process import WorkerProcess
from pipeline.producer.batching_producer import BatchingProducer
from pipeline.settings import load_settings
from pipeline.topics import ensure_topics
from tests.support.end_to_end import assert_counted_once, produce_keyed, write_events

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse]

PARTITIONS = 4


def test_batched_and_json_events_on_one_topic_are_all_processed(
        kafka_broker: EmbeddedBroker | ApacheKafkaBroker, tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", 6000)  # valid events (the file also holds bad lines)
    run = uuid.uuid4().hex[:8]
    settings = load_settings(
        kafka_bootstrap=kafka_broker.bootstrap, data_dir=tmp_path / "state", clickhouse_dsn="",
        partitions=PARTITIONS, topic_events=f"batched-{run}-api-calls", topic_dlq=f"batched-{run}-dlq",
        consumer_group=f"batched-{run}", web_port=free_port())
    ensure_topics(settings)
    batched, plain = events[:4500], events[4500:]
    producer = BatchingProducer(settings.kafka_bootstrap, settings.topic_events, max_events=700)
    try:
        for e in batched:
            producer.send(e)
    finally:
        producer.close()
    asyncio.run(produce_keyed(settings, [("lz4", [orjson.dumps(e) for e in plain])], PARTITIONS))

    worker = WorkerProcess(settings, bounded=True, log_path=tmp_path / "worker.log")
    code = worker.wait(300)
    assert code == 0, f"worker exited with {code}:\n{worker.log_tail(60)}"

    assert_counted_once(settings.data_dir, events, rejected=0)

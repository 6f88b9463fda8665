"""Events produced compressed (lz4, zstd, snappy, gzip), as gateways do, are all processed by the worker.

aiokafka decompresses lz4/zstd/snappy through cramjam (pinned in constraints.txt);
without it the worker would fail on the first compressed batch. Runs on the session
broker: Tansu by default, Apache Kafka with DW_TEST_BROKER=apache.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from jobs.apache_kafka import ApacheKafkaBroker
from jobs.embedded_broker import EmbeddedBroker, free_port
from jobs.produce_file import read_lines
from jobs.worker_process import WorkerProcess
from pipeline.settings import Settings, load_settings
from pipeline.topics import ensure_topics
from tests.support.end_to_end import assert_counted_once, produce_keyed, write_events

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse]

PARTITIONS = 4
CODECS = ("lz4", "zstd", "snappy", "gzip")


async def _read_back(settings: Settings, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(settings.topic_events, bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None, enable_auto_commit=False)
    await consumer.start()
    values: list[bytes] = []
    try:
        for _ in range(100):
            got = await consumer.getmany(timeout_ms=200)
            values += [m.value for ms in got.values() for m in ms if m.value is not None]
            if len(values) >= expected:
                break
        return values
    finally:
        await consumer.stop()


def test_every_event_of_a_compressed_topic_is_processed(kafka_broker: EmbeddedBroker | ApacheKafkaBroker,
                                                        tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap
    events = write_events(tmp_path / "events.jsonl", 4000)
    lines = list(read_lines(tmp_path / "events.jsonl"))
    n_invalid = len(lines) - len(events)
    assert n_invalid == len(range(0, 4000, 250))
    run = uuid.uuid4().hex[:8]
    settings = load_settings(
        kafka_bootstrap=bootstrap, data_dir=tmp_path / "state", clickhouse_dsn="", partitions=PARTITIONS,
        topic_events=f"compressed-{run}-api-calls", topic_dlq=f"compressed-{run}-dlq",
        consumer_group=f"compressed-{run}", web_port=free_port())
    ensure_topics(settings)
    # Consecutive slices, one codec each: per-partition order stays the input's order.
    size = -(-len(lines) // len(CODECS))
    chunks = [(codec, lines[i * size:(i + 1) * size]) for i, codec in enumerate(CODECS)]
    asyncio.run(produce_keyed(settings, chunks, PARTITIONS))
    assert sorted(asyncio.run(_read_back(settings, len(lines)))) == sorted(lines), "the broker lost messages"

    worker = WorkerProcess(settings, bounded=True, log_path=tmp_path / "worker.log")
    code = worker.wait(300)
    assert code == 0, f"worker exited with {code}:\n{worker.log_tail(60)}"

    assert_counted_once(settings.data_dir, events, rejected=n_invalid)

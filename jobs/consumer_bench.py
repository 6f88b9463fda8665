"""Consumer throughput: aiokafka ``getmany`` against confluent-kafka ``consume``, raw (no decode).

    python -m jobs.consumer_bench [--broker tansu|apache] [--events 500000] [--partitions 4] [--rounds 3]

Four readers (``aiokafka_raw``, ``aiokafka_source``: plus what ``KafkaBatchSource._fetch_loop`` does per
message, ``confluent_raw``, ``confluent_lists``) read one topic of loadgen events from the start, each
with a fresh consumer group, interleaved round by round; prints events/s and this process's CPU µs
per message. confluent-kafka is a bench-only import. docs/benchmarks.md, "Consumer: raw reads, no decode".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer

from jobs.bench.kafka_io import create_topics, produce
from jobs.bench.procs import self_cpu_seconds
from jobs.json_bytes import event_bytes
from jobs.loadgen import ScenarioConfig, generate
from jobs.produce_file import partition_for
from pipeline.decode.batch_format import MAGIC_FAMILY, events_in

FETCH = 50_000  # messages per getmany / consume call: the worker's batch_max_events default
Run = tuple[float, float]  # events/s, CPU µs per message


def _aiokafka(bootstrap: str, topic: str, expected: int, lists: bool) -> Run:
    async def run() -> Run:
        # The fetch settings of pipeline.sources.kafka_batches.KafkaBatchSource.
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex[:8]}", enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20,
            max_poll_records=FETCH, session_timeout_ms=10_000, heartbeat_interval_ms=3_000)
        await consumer.start()
        try:
            first = 0
            while not first:  # join the group and see the first message before the clock starts
                first = sum(map(len, (await consumer.getmany(timeout_ms=1000, max_records=1)).values()))
            started, cpu0 = time.perf_counter(), self_cpu_seconds()
            count = first
            values: list[bytes] = []
            keys: list[bytes | None] = []
            partitions: list[int] = []
            offsets: list[int] = []
            while count < expected:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=FETCH)
                for tp, messages in fetched.items():
                    count += len(messages)
                    if lists:  # KafkaBatchSource._fetch_loop's body, per message
                        events = 0
                        for m in messages:
                            value = m.value if m.value is not None else b""
                            events += events_in(value) if value.startswith(MAGIC_FAMILY) else 1
                            values.append(value)
                            keys.append(m.key)
                            partitions.append(tp.partition)
                            offsets.append(m.offset)
                if len(values) >= FETCH:
                    values, keys, partitions, offsets = [], [], [], []
            return _rate(count - first, started, cpu0)
        finally:
            await consumer.stop()

    return asyncio.run(run())


def _confluent(bootstrap: str, topic: str, expected: int, lists: bool) -> Run:
    from confluent_kafka import Consumer  # bench-only dependency

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 8 << 20,
        "queued.max.messages.kbytes": 256 << 10, "session.timeout.ms": 10_000, "heartbeat.interval.ms": 3_000,
    })
    consumer.subscribe([topic])
    try:
        first = 0
        while not first:
            first = len(consumer.consume(num_messages=1, timeout=1.0))
        started, cpu0 = time.perf_counter(), self_cpu_seconds()
        count = first
        while count < expected:
            messages = consumer.consume(num_messages=FETCH, timeout=1.0)
            count += len(messages)
            if lists:
                values = [m.value() or b"" for m in messages]
                keys = [m.key() for m in messages]
                partitions = [m.partition() for m in messages]
                offsets = [m.offset() for m in messages]
                sum(events_in(v) for v in values if v.startswith(MAGIC_FAMILY))
                del keys, partitions, offsets
        return _rate(count - first, started, cpu0)
    finally:
        consumer.close()


def _rate(n: int, started: float, cpu0: float) -> Run:
    return n / (time.perf_counter() - started), (self_cpu_seconds() - cpu0) / n * 1e6


READERS: dict[str, Callable[[str, str, int], Run]] = {
    "aiokafka_raw": lambda b, t, n: _aiokafka(b, t, n, lists=False),
    "aiokafka_source": lambda b, t, n: _aiokafka(b, t, n, lists=True),
    "confluent_raw": lambda b, t, n: _confluent(b, t, n, lists=False),
    "confluent_lists": lambda b, t, n: _confluent(b, t, n, lists=True),
}


@contextlib.contextmanager
def _broker(kind: str) -> Iterator[Any]:
    if kind == "apache":
        from jobs.apache_kafka import apache_kafka
        with apache_kafka() as broker:
            yield broker
    else:
        from jobs.embedded_broker import EmbeddedBroker
        with EmbeddedBroker() as broker:
            yield broker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", choices=["tansu", "apache"], default="tansu")
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = ScenarioConfig(duration_s=max(60.0, args.events / 150.0))
    events = list(itertools.islice(generate(config), args.events))
    keys = [e["account_id"].encode() for e in events]
    messages = [(partition_for(k, args.partitions, i), k, event_bytes(e)) for i, (k, e) in enumerate(zip(
        keys, events, strict=True))]
    del events
    with _broker(args.broker) as broker:
        topic = "consumer-bench"
        create_topics(broker.bootstrap, [topic], args.partitions)
        n = produce(broker.bootstrap, topic, messages)
        print(f"{args.broker}: {n} loadgen events, {sum(len(m[2]) for m in messages) / n:.0f} bytes each, "
              f"{args.partitions} partitions, fetches of {FETCH}", flush=True)
        results: dict[str, list[Run]] = {name: [] for name in READERS}
        for r in range(args.rounds):
            for name, read in READERS.items():
                results[name].append(read(broker.bootstrap, topic, n))
            print(f"round {r}: " + ", ".join(f"{k} {v[-1][0]:,.0f}/s {v[-1][1]:.2f}µs" for k, v in results.items()),
                  flush=True)
    for name, runs in results.items():
        rates = [r[0] for r in runs]
        print(f"{name}: median {statistics.median(rates):,.0f} events/s, {statistics.median(r[1] for r in runs):.2f} "
              f"CPU µs/message  (rounds: {', '.join(f'{x:,.0f}' for x in rates)})")


if __name__ == "__main__":
    main()

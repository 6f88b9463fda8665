"""Produce a JSONL file of events to Kafka, fast: aiokafka batches per partition.

Keys are the account ids (the contract's message key) and partitions follow
Kafka's default murmur2 partitioner, so a replayed account lands where a gateway's
producer would put it. Lines that are not valid JSON objects are produced as they
are (with no key): the pipeline, not the loader, decides what is invalid.

``send_in_batches`` is the one bulk send of the commands: replay, the demo's malformed
messages and the bench (its topics, and its paced latency runs) all go through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from pipeline.hashing import kafka_partition

BATCH_BYTES = 16384  # aiokafka's default producer batch: what a replay has always sent
# Snappy, not lz4: aiokafka compresses lz4 at level 9 (about 33 MB/s here; a 443k-event file took
# 8.7 s of CPU for that alone). Snappy is ~1 GB/s and halves Tansu's CPU against no compression.
COMPRESSION = "snappy"


def account_key(line: bytes) -> bytes | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    account = obj.get("account_id") if isinstance(obj, dict) else None
    return account.encode() if isinstance(account, str) else None


def partition_for(key: bytes | None, n_partitions: int, counter: int) -> int:
    """Kafka's default partitioner: a key by its murmur2 (remembered, ``kafka_partition``), no key in turn."""
    if key is None:
        return counter % n_partitions
    return kafka_partition(key, n_partitions)


def read_lines(path: Path) -> Iterator[bytes]:
    """Non-empty lines, without their line ending (a line is an event, valid or not)."""
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield line


Message = tuple[int, bytes | None, bytes]  # partition, key, value


def bulk_producer(bootstrap_servers: list[str] | str, *, compression: str | None = COMPRESSION,
                  batch_bytes: int = BATCH_BYTES, linger_ms: int = 5) -> AIOKafkaProducer:
    """An aiokafka producer for ``send_in_batches``: broker acknowledgements (``acks=all``), large requests."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=linger_ms,
                            max_request_size=16 << 20, max_batch_size=batch_bytes, compression_type=compression)


async def send_in_batches(producer: AIOKafkaProducer, topic: str, messages: Iterable[Message],
                          on_progress: Callable[[int], None] | None = None) -> tuple[int, list[asyncio.Future[object]]]:
    """Append (partition, key, value) messages to one producer batch per partition, sending a batch when it
    is full and every batch at the end: how many were sent, and the acknowledgements to await.
    ValueError names a message too large for a batch."""
    batches: dict[int, BatchBuilder] = {}
    pending: list[asyncio.Future[object]] = []
    count = 0
    for p, key, value in messages:
        batch = batches.get(p)
        if batch is None:
            batch = batches[p] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:
            batch.close()
            pending.append(await producer.send_batch(batch, topic, partition=p))
            batch = batches[p] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"message {count + 1} ({len(value)} bytes) is larger than a producer batch")
        count += 1
        if on_progress and count % 100_000 == 0:
            on_progress(count)
    for p, batch in batches.items():  # each holds at least the message that created it
        batch.close()
        pending.append(await producer.send_batch(batch, topic, partition=p))
    return count, pending


async def produce_messages(messages: Iterable[Message], bootstrap_servers: list[str] | str, topic: str, *,
                           compression: str = COMPRESSION, batch_bytes: int = BATCH_BYTES,
                           on_progress: Callable[[int], None] | None = None) -> int:
    """Send (partition, key, value) messages in batches per partition (``send_in_batches``), acknowledged by
    the broker; how many were sent."""
    producer = bulk_producer(bootstrap_servers, compression=compression, batch_bytes=batch_bytes)
    await producer.start()
    try:
        count, pending = await send_in_batches(producer, topic, messages, on_progress)
        await asyncio.gather(*pending)
        return count
    finally:
        await producer.stop()


def keyed_lines(lines: Iterable[bytes], n_partitions: int) -> Iterator[Message]:
    """Each line with its account key and the partition Kafka's default partitioner gives that key."""
    for count, line in enumerate(lines):
        key = account_key(line)
        yield partition_for(key, n_partitions, count), key, line


async def produce_lines(
    lines: Iterator[bytes],
    bootstrap_servers: list[str],
    topic: str,
    n_partitions: int,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    return await produce_messages(keyed_lines(lines, n_partitions), bootstrap_servers, topic, on_progress=on_progress)

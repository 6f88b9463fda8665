"""Kafka I/O of the state topic: write a checkpoint; read partitions back, to a bounded end.

Reading ends, always. Faust-style recovery waits until it has *seen* the record
at ``end_offset - 1``; on a compacted topic, or one ending in a transaction
marker, that record never arrives and recovery "never ends". Here a partition is
done once the consumer's *position* (which skips gaps) reaches the end offset
taken at the start and a further fetch brings nothing: the second condition
also covers brokers whose reported end lags the log (Tansu reports the start of
the last produced batch). No progress for ``stall_timeout_s`` raises
``StateReadError`` instead of waiting forever. Progress is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

log = logging.getLogger(__name__)

# (state partition, key, value); value None is a tombstone.
Record = tuple[int, bytes, bytes | None]
OnRecord = Callable[[int, int, bytes | None, bytes | None], None]  # partition, offset, key, value

PROGRESS_EVERY_S = 5.0
TAIL_WAIT_MS = 1000


class StateReadError(RuntimeError):
    """A topic could not be read to its end (no progress for too long)."""


class StateTopic:
    """Writes checkpoints to the state topic (one producer, large batches).

    No producer compression: block values arrive lz4-compressed (checkpoint.py),
    and aiokafka would compress again, at lz4 level 9, on the event loop.
    """

    def __init__(self, bootstrap_servers: list[str], topic: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # Created here: aiokafka binds to the running event loop.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, client_id="distillwatch-state", acks="all",
            compression_type=None, linger_ms=5, max_batch_size=1 << 20, max_request_size=32 << 20,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def write(self, entities: Sequence[Record], markers: Sequence[Record]) -> None:
        """Produce ``entities``, wait until Kafka has all of them, then the same for ``markers``.

        The markers are sent only after every entity record is acknowledged, so a
        marker never precedes its checkpoint's records in the log, whatever the
        producer's retries do. Raises aiokafka's KafkaError on failure (nothing to
        undo: a retry writes the same records).
        """
        await self._send_all(entities)
        await self._send_all(markers)

    async def _send_all(self, records: Sequence[Record]) -> None:
        if self._producer is None:
            raise RuntimeError("StateTopic used before start()")
        send = self._producer.send
        futures = [await send(self.topic, value=value, key=key, partition=part) for part, key, value in records]
        if futures:
            await asyncio.gather(*futures)


def restore_consumer(bootstrap_servers: list[str]) -> AIOKafkaConsumer:
    """A group-less consumer for reading state and input ranges (start it before use)."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, client_id="distillwatch-restore", group_id=None,
        enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20,
    )


async def read_to_end(consumer: AIOKafkaConsumer, topic: str, parts: Sequence[int], on_record: OnRecord, *,
                      stall_timeout_s: float = 60.0, what: str = "state") -> int:
    """Read ``parts`` of ``topic`` from the beginning to their end; returns the records read.

    Bounded: see the module docstring. ``on_record`` is called in offset order per partition.
    """
    tps = [TopicPartition(topic, p) for p in parts]
    if not tps:
        return 0
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    starts = {tp: await consumer.position(tp) for tp in tps}
    total = sum(max(0, ends[tp] - starts[tp]) for tp in tps)
    log.info("reading %s topic %s partitions %s: about %d records", what, topic, list(parts), total)
    return await _read(consumer, tps, ends, on_record, stall_timeout_s, what, total, stop_at=None)


async def read_range(consumer: AIOKafkaConsumer, topic: str, ranges: dict[int, tuple[int, int]],
                     on_record: OnRecord, *, stall_timeout_s: float = 60.0, what: str = "input") -> int:
    """Read offsets ``[start, end)`` of each partition (``end`` must not exceed the log end)."""
    wanted = {TopicPartition(topic, p): (lo, hi) for p, (lo, hi) in ranges.items() if hi > lo}
    if not wanted:
        return 0
    consumer.assign(list(wanted))
    for tp, (lo, _) in wanted.items():
        consumer.seek(tp, lo)
    ends = {tp: hi for tp, (_, hi) in wanted.items()}
    total = sum(hi - lo for lo, hi in wanted.values())
    return await _read(consumer, list(wanted), ends, on_record, stall_timeout_s, what, total, stop_at=ends)


async def _read(consumer: AIOKafkaConsumer, tps: list[TopicPartition], ends: dict[TopicPartition, int],
                on_record: OnRecord, stall_timeout_s: float, what: str, total: int,
                stop_at: dict[TopicPartition, int] | None) -> int:
    started = last_log = last_progress = time.monotonic()
    read = 0
    active = set(tps)
    while active:
        reached = {tp for tp in active if await consumer.position(tp) >= ends[tp]}
        if stop_at is not None:
            active -= reached  # a fixed range: done at its end
            if not active:
                break
        # Past the (possibly stale) end: wait a little longer for anything left.
        timeout = TAIL_WAIT_MS if reached == active else 200
        fetched = await consumer.getmany(*active, timeout_ms=timeout)
        for tp, messages in fetched.items():
            for m in messages:
                if stop_at is not None and m.offset >= stop_at[tp]:
                    break
                on_record(tp.partition, m.offset, m.key, m.value)
                read += 1
        now = time.monotonic()
        if fetched:
            last_progress = now
        elif reached == active:
            break  # at the end and nothing more came
        elif now - last_progress > stall_timeout_s:
            behind = {tp.partition: (await consumer.position(tp), ends[tp]) for tp in active - reached}
            raise StateReadError(f"reading {what} topic {tps[0].topic}: no progress for {stall_timeout_s:.0f}s; "
                                 f"partition: (position, end) {behind}")
        if now - last_log >= PROGRESS_EVERY_S:
            log.info("reading %s topic %s: %d/%d records, %.0fs", what, tps[0].topic, read, total, now - started)
            last_log = now
    log.info("read %s topic %s partitions %s: %d records in %.2fs", what, tps[0].topic,
             sorted(tp.partition for tp in tps), read, time.monotonic() - started)
    return read

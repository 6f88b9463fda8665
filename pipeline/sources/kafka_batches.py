"""KafkaBatchSource: a consumer-group reader that delivers whole fetches.

A mode Service (the runtime Faust is built on) owned by the Faust app. It reads
the events topic with aiokafka ``getmany`` (hundreds of thousands of messages a
second), gathers up to ``batch_max_events`` or ``batch_max_wait_s``, and awaits
``deliver(batch)`` — the detect agent's channel, whose bounded size is the
back-pressure: while the agent is busy, the source stops fetching.

Offsets: auto-commit is off. The agent acks a batch after its ClickHouse writes
returned; the ack commits that batch's offsets. On a rebalance the source waits
for delivered batches to be acked before giving partitions up, so the next owner
starts exactly after what was written.

Drain (bounded input, ``distillwatch replay`` and the demo's end): the source
notes the end offsets of its partitions, reads up to them, then delivers one
empty batch with ``drain=True``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from mode import Service

from pipeline.settings import Settings
from pipeline.sources.fetched_batch import FetchedBatch

log = logging.getLogger(__name__)

Deliver = Callable[[FetchedBatch], Awaitable[None]]


class _WaitForAcks(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaBatchSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.source.wait_for_acks()
        log.info("partitions revoked after in-flight batches were committed: %s", sorted(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", sorted((tp.topic, tp.partition) for tp in assigned))


class KafkaBatchSource(Service):
    def __init__(self, settings: Settings, deliver: Deliver, *, drain_at_start: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.deliver = deliver
        self.group_id = f"{settings.consumer_group}.events"
        self.consumer: AIOKafkaConsumer | None = None
        self._in_flight: list[FetchedBatch] = []
        self._drain_requested = drain_at_start
        self._drain_targets: dict[TopicPartition, int] | None = None
        self.drained = asyncio.Event()
        self.commits = 0

    async def on_start(self) -> None:
        s = self.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=self.group_id,
            client_id="distillwatch-source",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
            max_poll_records=s.batch_max_events,
            # Tansu holds a first join for the rebalance timeout; aiokafka's default
            # (the session timeout) joins at once there and is fine on Apache Kafka.
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        self.consumer.subscribe([s.topic_events], listener=_WaitForAcks(self))
        await self.consumer.start()

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    def request_drain(self) -> None:
        """Read to the current end of the assigned partitions, then deliver a drain batch."""
        self._drain_requested = True

    async def wait_for_acks(self) -> None:
        while self._in_flight:
            await self._in_flight[0].done.wait()
            self._in_flight.pop(0)

    async def _ack(self, batch: FetchedBatch) -> None:
        assert self.consumer is not None
        if batch.commit_offsets:
            topic = self.settings.topic_events
            await self.consumer.commit(
                {TopicPartition(topic, p): off for p, off in batch.commit_offsets.items()}
            )
            self.commits += 1

    async def _drain_reached(self) -> bool:
        assert self.consumer is not None
        assignment = self.consumer.assignment()
        if not assignment:
            return False
        if self._drain_targets is None or set(self._drain_targets) != assignment:
            self._drain_targets = await self.consumer.end_offsets(list(assignment))
        for tp, end in self._drain_targets.items():
            if await self.consumer.position(tp) < end:
                return False
        return True

    @Service.task
    async def _fetch_loop(self) -> None:
        assert self.consumer is not None
        s = self.settings
        consumer = self.consumer
        while not self.should_stop:
            batch = FetchedBatch([], [], [], [], {}, time.time(), _ack=self._ack)
            deadline = time.monotonic() + s.batch_max_wait_s
            while len(batch) < s.batch_max_events:
                wait_ms = max(1, int((deadline - time.monotonic()) * 1000))
                fetched = await consumer.getmany(timeout_ms=wait_ms,
                                                 max_records=s.batch_max_events - len(batch))
                for tp, messages in fetched.items():
                    for m in messages:
                        batch.values.append(m.value)
                        batch.keys.append(m.key)
                        batch.partitions.append(tp.partition)
                        batch.offsets.append(m.offset)
                    batch.commit_offsets[tp.partition] = messages[-1].offset + 1
                if time.monotonic() >= deadline or (not fetched and len(batch)):
                    break
            if len(batch):
                await self._deliver(batch)
            if self._drain_requested and not len(batch) and await self._drain_reached():
                await self._deliver(FetchedBatch([], [], [], [], {}, time.time(), drain=True, _ack=self._ack))
                await self.wait_for_acks()
                self.drained.set()
                return

    async def _deliver(self, batch: FetchedBatch) -> None:
        self._in_flight.append(batch)
        # Forget batches already acked so the list stays short.
        while self._in_flight and self._in_flight[0].done.is_set():
            self._in_flight.pop(0)
        await self.deliver(batch)

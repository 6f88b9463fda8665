"""KafkaBatchSource: a consumer-group reader that delivers whole fetches.

A mode Service owned by the Faust app: reads the events topic with aiokafka ``getmany``, gathers up to
``batch_max_events`` events (a batch container is never split) or ``batch_max_wait_s``, and awaits
``deliver(batch)``, the worker's bounded batch queue (``pipeline/app.py``). While the detect step is
behind it pauses its partitions and keeps polling. Auto-commit is off: a batch's ack commits its
offsets. Rebalances, drain, stalls: docs/operations.md, "Failures".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from pipeline.decode.batch_format import MAGIC_FAMILY, events_in
from pipeline.settings import Settings
from pipeline.sources.fetched_batch import FetchedBatch
from pipeline.sources.progress import ProgressWatch

log = logging.getLogger(__name__)

Deliver = Callable[[FetchedBatch], Awaitable[None]]
OnAssigned = Callable[[set[int], dict[int, int | None]], Awaitable[dict[int, int]]]
BeforeRevoke = Callable[[], Awaitable[None]]

# While the detect step is behind, poll the (paused) consumer this often to stay in the group.
BLOCKED_POLL_S = 1.0
PROGRESS_CHECK_S = 5.0
POSITION_TIMEOUT_S = 1.0  # asking the consumer for a position it does not hold yet
# One fetch's size. aiokafka fetches the next one ahead while a batch waits for the detect step, and
# parsing it copies the response: at 8 MB per partition (64 MB per fetch) that was two 30+ MB blocks
# per batch on top of the batch itself. A batch gathers several smaller fetches instead; a message
# larger than the limit still arrives (the broker returns at least one record batch).
PARTITION_FETCH_BYTES = 2 << 20
FETCH_MAX_BYTES = 8 << 20



def source_group(consumer_group: str) -> str:
    """The hot-path source's consumer group (Faust's own group is ``consumer_group``)."""
    return f"{consumer_group}.events"

class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaBatchSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.source.revoke(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.source.assign(assigned)


class KafkaBatchSource(Service):
    def __init__(self, settings: Settings, deliver: Deliver, *, drain_at_start: bool = False,
                 on_assigned: OnAssigned | None = None, before_revoke: BeforeRevoke | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.deliver = deliver
        self.on_assigned = on_assigned
        self.before_revoke = before_revoke
        self.group_id = source_group(settings.consumer_group)
        self.consumer: AIOKafkaConsumer | None = None
        self._in_flight: list[FetchedBatch] = []
        self._drain_requested = drain_at_start
        # Events per message seen last: sizes getmany so a batch of containers stays near
        # batch_max_events *events*. Unknown at first: the first fetch takes one message.
        self._events_per_message = float(settings.batch_max_events)
        self._drain_targets: dict[TopicPartition, int] | None = None
        self.drained = asyncio.Event()
        self.commits = 0
        self.commit_errors = 0
        self.fetched_events = 0  # messages handed to the detect step (or waiting for it)
        self.epoch = 0  # +1 on every revocation: a batch gathered across one is discarded
        self._ready = asyncio.Event()  # set once the assigned partitions' state is in place
        self._fatal: BaseException | None = None
        self.progress = ProgressWatch(settings.stall_after_s)
        self._blocked = False  # waiting for the detect step (back-pressure), partitions paused

    async def on_start(self) -> None:
        s = self.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=self.group_id,
            client_id="distillwatch-source",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
            fetch_max_bytes=FETCH_MAX_BYTES,
            max_poll_records=s.batch_max_events,
            # Tansu holds a first join for the rebalance timeout; aiokafka's default
            # (the session timeout) joins at once there and is fine on Apache Kafka.
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        self.consumer.subscribe([s.topic_events], listener=_Rebalance(self))
        await self.consumer.start()

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    def request_drain(self) -> None:
        """Read to the current end of the assigned partitions, then deliver a drain batch."""
        self._drain_requested = True

    # --- partition changes -------------------------------------------------------------
    async def revoke(self, revoked: set[TopicPartition]) -> None:
        self._ready.clear()
        self.epoch += 1
        if self.before_revoke is not None:
            await self.before_revoke()
        await self.wait_for_acks()
        log.info("partitions revoked after in-flight batches were committed: %s",
                 sorted(tp.partition for tp in revoked))

    async def assign(self, assigned: set[TopicPartition]) -> None:
        assert self.consumer is not None
        parts = {tp.partition for tp in assigned}
        log.info("partitions assigned: %s", sorted(parts))
        try:
            if self.on_assigned is not None:
                committed = {tp.partition: await self.consumer.committed(tp) for tp in assigned}
                starts = await self.on_assigned(parts, committed)
                for p, offset in starts.items():
                    if committed.get(p) != offset:
                        log.info("partition %d: resuming at offset %d (committed: %s)", p, offset, committed.get(p))
                    self.consumer.seek(TopicPartition(self.settings.topic_events, p), offset)
        except Exception as exc:  # aiokafka would log and swallow it; this must stop the worker
            log.exception("could not set up the state of partitions %s", sorted(parts))
            self._fatal = exc
        self.progress.keep_only(parts, time.monotonic())
        self._ready.set()

    async def wait_for_acks(self) -> None:
        while self._in_flight:
            await self._in_flight[0].done.wait()
            self._in_flight.pop(0)

    async def _ack(self, batch: FetchedBatch) -> None:
        assert self.consumer is not None
        if batch.commit_offsets:
            topic = self.settings.topic_events
            try:
                await self.consumer.commit(
                    {TopicPartition(topic, p): off for p, off in batch.commit_offsets.items()}
                )
            except KafkaError as exc:
                # Lost the partitions (the group moved on). Effects are idempotent and the
                # checkpoint is written: the next owner resumes from it.
                self.commit_errors += 1
                log.error("offset commit failed (%s): %s", exc, batch.commit_offsets)
                return
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

    # --- progress ----------------------------------------------------------------------
    @Service.timer(PROGRESS_CHECK_S)
    async def _watch_progress(self) -> None:
        consumer = self.consumer
        if consumer is None or not self._ready.is_set():
            return
        now = time.monotonic()
        if self._blocked:
            self.progress.blocked(now)
        async for partition, position, highwater in self._positions(consumer):
            self.progress.observe(partition, position, highwater, now)
        stalled, recovered = self.progress.evaluate(now)
        lags = self.progress.lags()
        for p in sorted(stalled):
            log.error("partition %d stalled: %d messages waiting and no progress for %.0fs", p, lags.get(p, 0),
                      self.settings.stall_after_s)
        for p in sorted(recovered):
            log.info("partition %d moving again", p)

    # --- fetching ----------------------------------------------------------------------
    @Service.task
    async def _fetch_loop(self) -> None:
        assert self.consumer is not None
        s = self.settings
        consumer = self.consumer
        while not self.should_stop:
            await self._ready.wait()
            if self._fatal is not None:
                raise self._fatal
            epoch = self.epoch
            batch = FetchedBatch([], [], [], [], {}, time.time(), _ack=self._ack)
            deadline = time.monotonic() + s.batch_max_wait_s
            events = 0  # a batch container (DWB1) counts its events, a JSON message one
            while events < s.batch_max_events:
                wait_ms = max(1, int((deadline - time.monotonic()) * 1000))
                room = max(1, int((s.batch_max_events - events) / self._events_per_message))
                fetched = await consumer.getmany(timeout_ms=wait_ms, max_records=room)
                if self.epoch != epoch:
                    break  # a rebalance ran meanwhile: these may no longer be ours
                n_messages = 0
                for tp, messages in fetched.items():
                    for m in messages:
                        value = m.value if m.value is not None else b""
                        events += events_in(value) if value.startswith(MAGIC_FAMILY) else 1
                        batch.values.append(value)
                        batch.keys.append(m.key)
                        batch.partitions.append(tp.partition)
                        batch.offsets.append(m.offset)
                    batch.commit_offsets[tp.partition] = messages[-1].offset + 1
                    n_messages += len(messages)
                if n_messages:
                    self._events_per_message = max(1.0, events / len(batch))
                if time.monotonic() >= deadline or (not fetched and len(batch)):
                    break
            if self.epoch != epoch:
                if len(batch):
                    log.info("discarded a batch of %d messages gathered across a rebalance", len(batch))
                continue
            if len(batch):
                batch.behind = await self._behind(consumer)
                await self._deliver(batch)
            if self._drain_requested and not len(batch) and await self._drain_reached():
                await self._deliver(FetchedBatch([], [], [], [], {}, time.time(), drain=True, _ack=self._ack))
                await self.wait_for_acks()
                self.drained.set()
                return

    @staticmethod
    async def _positions(consumer: AIOKafkaConsumer) -> AsyncIterator[tuple[int, int, int | None]]:
        """(partition, position, high watermark) of each assigned partition; the high watermark is None
        until a fetch answered for it. One not positioned in time (just assigned, or revoked meanwhile)
        is skipped: nothing to judge about it."""
        for tp in consumer.assignment():
            try:
                position = await asyncio.wait_for(consumer.position(tp), timeout=POSITION_TIMEOUT_S)
            except (TimeoutError, KafkaError, AssertionError):
                continue
            yield tp.partition, position, consumer.highwater(tp)

    @classmethod
    async def _behind(cls, consumer: AIOKafkaConsumer) -> frozenset[int]:
        """Assigned partitions with messages past this worker's position, as of the last fetch (one not
        answered yet counts as read, like the progress watch)."""
        return frozenset([p async for p, position, highwater in cls._positions(consumer)
                          if highwater is not None and position < highwater])

    async def _deliver(self, batch: FetchedBatch) -> None:
        self._in_flight.append(batch)
        self.fetched_events += len(batch)
        # Forget batches already acked so the list stays short.
        while self._in_flight and self._in_flight[0].done.is_set():
            self._in_flight.pop(0)
        sending = asyncio.ensure_future(self.deliver(batch))
        paused: set[TopicPartition] = set()
        assert self.consumer is not None
        try:
            while True:
                done, _ = await asyncio.wait({sending}, timeout=BLOCKED_POLL_S)
                if done:
                    sending.result()
                    return
                # The detect step is behind (ClickHouse slow or down): fetch nothing, stay in the group.
                self._blocked = True
                unpaused = set(self.consumer.assignment()) - paused
                if unpaused:
                    if not paused:
                        log.info("detect step busy: partitions paused until it takes the next batch")
                    paused |= unpaused
                    self.consumer.pause(*unpaused)
                await self._poll_paused()
        finally:
            if self._blocked:
                self.progress.blocked(time.monotonic())  # the wait was back-pressure, not a stall
                self._blocked = False
            if not sending.done():
                sending.cancel()
            if paused:
                self.consumer.resume(*(paused & set(self.consumer.assignment())))

    async def _poll_paused(self) -> None:
        """One poll that must bring nothing; anything that does come (a rebalance resumed a
        partition meanwhile) is put back by seeking to it, so no message is skipped."""
        assert self.consumer is not None
        fetched = await self.consumer.getmany(timeout_ms=0)
        for tp, messages in fetched.items():
            self.consumer.seek(tp, messages[0].offset)

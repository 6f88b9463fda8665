"""The linking process: both linking stages over plain dicts, in a process of their own.

    python -m pipeline.linking.process [--bounded] [--drain-source SRC ...]   (settings: DW_* env)

One process per consumer group ``<group>.linking`` is active (``ownership.SingleOwnerAssignor``);
the others are hot standbys. Per fetch: stage A, the sync tracker, stage B, then ``LinkResult``
messages to ``<group>-link-results``. Order: results are acked before the checkpoint covering
their input, and the input offsets are committed only after that checkpoint (at-least-once,
idempotent downstream). Topology, ownership, drain and reliability: docs/linking.md
("Topology", "Event time and determinism", "Reliability").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from pipeline.alerting.alert_rows import AlertRows
from pipeline.alerting.engine import AlertSetup
from pipeline.linking.backlog import STAGE_CLUSTERS, STAGE_FEATURES, stage_backlog
from pipeline.linking.checkpoint import (
    CheckpointPlan,
    Restored,
    StateLog,
    offset_key,
    parse_offset_key,
    plan_checkpoint,
)
from pipeline.linking.config import LinkingConfig, load_linking_config
from pipeline.linking.feedback_feed import FEEDBACK_POLL_S, FeedbackReader
from pipeline.linking.messages import (
    AccountUpdates,
    EndMarker,
    Message,
    MessageError,
    ObservationBatch,
    decode,
)
from pipeline.linking.ownership import SingleOwnerAssignor
from pipeline.linking.pooled import PooledEvidence
from pipeline.linking.results import LinkResult, split_result
from pipeline.linking.stages import ClusterStage, FeatureStage, StageOutput, StageStats
from pipeline.linking.sync_tracker import SyncTracker
from pipeline.linking.topics import LinkTopics
from pipeline.linking.watermark import InputWatermark
from pipeline.retry import fetch_or_wait, retry
from pipeline.settings import Settings, SettingsError, load_settings
from pipeline.topics import ensure_topics, partition_count

log = logging.getLogger(__name__)

# SIGTERM with the broker away: each shutdown step gets this long, so the process ends within
# about 4 × this (the supervisor's SIGKILL comes at 30 s).
STOP_STEP_S = 6.0

LINKING_GROUP_SUFFIX = ".linking"
FETCH_TIMEOUT_MS = 500
FETCH_MAX_RECORDS = 500
STATS_EVERY_S = 5.0  # a stats-only result at least this often: the workers' /metrics stay live
PROGRESS_EVERY_S = 30.0
# Analysts' false positives are re-read from ClickHouse this often (a ClickHouse server only: embedded
# chDB is open in the worker, so there the cluster rules run without them).
CLIENT_ID = "distillwatch-linking-process"
# Group membership: a SIGKILLed owner's partitions move after SESSION_TIMEOUT_MS; a standby
# notices a rebalance (a LeaveGroup, a join) within HEARTBEAT_INTERVAL_MS.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 1_000
JOINING, ACTIVE, STANDBY = "joining", "active", "standby"


def linking_group(consumer_group: str) -> str:
    return f"{consumer_group}{LINKING_GROUP_SUFFIX}"


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (kB) in MB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Resident set size now."""
    found = _status_mb("VmRSS")
    return found if found is not None else peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process image (VmHWM: getrusage's maxrss would count the
    memory of the process that forked us, from before the exec)."""
    found = _status_mb("VmHWM")
    return found if found is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stopped(Exception):
    """Stop requested while Kafka refused a write: exit without a checkpoint (the input is read again)."""


class _Handover(ConsumerRebalanceListener):
    """aiokafka's rebalance callbacks, forwarded to the process."""

    def __init__(self, process: LinkingProcess) -> None:
        self.process = process

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.process.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.process.on_assigned(assigned)


class LinkingProcess:
    def __init__(self, settings: Settings, *, bounded: bool, drain_sources: Sequence[str],
                 topics: LinkTopics | None = None, config: LinkingConfig | None = None,
                 alerting: AlertSetup | None = None,
                 feedback: FeedbackReader | None = None) -> None:
        """``feedback``: the analysts' verdicts for ``alerting``, as the workers publish them to
        ``<group>-link-feedback`` (this process cannot read an embedded chDB; None: none are applied)."""
        self.settings = settings
        self.bounded = bounded
        self.drain_sources = list(drain_sources)
        self.topics = topics or LinkTopics.for_group(settings.consumer_group)
        self.config = config or load_linking_config(settings.linking_config)
        self.alerting = alerting
        self.feedback = feedback
        self.stats = StageStats()
        self.stop_requested = asyncio.Event()
        self.features: dict[str, dict[str, object]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.alerted: dict[str, object] = {}
        self.stage_a = FeatureStage(self.features, self.config, self.stats)
        # Members' counters per minute: stage B's pooled evidence, in the ring the sync tracker reads calls from.
        self.pooled = PooledEvidence(self.config, bounded=self.bounded, shared=True)
        self.sync = SyncTracker(self.config, self.features, bounded=self.bounded, ring=self.pooled.ring)
        self.sync_drains: set[str] = set()  # drain sources whose account updates all arrived (edges markers)
        self.watermark = InputWatermark()  # how far every source's evidence is read: gates cluster alerts
        self.watermark_ms: int | None = None  # as of the last fetch
        self.stage_b: ClusterStage | None = None  # once the observation partition count is known
        self.partitions = 0
        self.offsets: dict[TopicPartition, int] = {}  # next offset to read, per input partition
        self.slot_blocks = {0: 0, 1: 0}  # block keys holding a value in each checkpoint slot
        self.gen = 0  # the last complete checkpoint generation
        self.restored_gen = 0
        self.reported: set[str] = set()  # sources named drained in a result already
        self.restored_markers: set[tuple[str, int | None]] = set()
        self.read_messages = 0  # input messages read since start
        self.uncheckpointed = 0  # input messages read since the last checkpoint
        self.results_sent = 0
        self.checkpoints = 0
        self.checkpoint_s = 0.0
        self.last_checkpoint_s = 0.0
        self.last_checkpoint_bytes = 0
        self.backlog: dict[str, int] = {}
        self.started = time.monotonic()
        self.writer = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"  # names its checkpoints
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self.assignor = SingleOwnerAssignor()
        self.role = JOINING
        self.processing = False  # active, and not between a revocation and the next assignment
        self.pending: set[TopicPartition] | None = None  # an assignment not taken over yet
        self.epoch = 0  # +1 per revocation: a fetch made before one is dropped
        self.lock = asyncio.Lock()  # a fetch's apply + publish, a checkpoint, a takeover: one at a time
        self.committed: dict[TopicPartition, int] = {}  # the offsets of the last checkpoint (or takeover)
        self.state_end = -1  # end offset of the state topic after our last write or restore
        self.activations = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> int:
        """Join the group and link while owning the partitions, until stopped (SIGTERM/SIGINT) or,
        bounded, drained. Exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        s = self.settings
        self._producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, client_id=CLIENT_ID, acks="all",
                                          linger_ms=5, max_request_size=4 << 20)
        await asyncio.to_thread(ensure_topics, s, extra=self.topics.partitions(s.partitions))
        await self._producer.start()
        try:
            await self._start_consumer()
            await self._loop()
            if not await _within(STOP_STEP_S, "the last checkpoint", self._final_checkpoint()):
                raise Stopped
            log.info("linking process stopped (%s): %s", self.role, self.progress())
            return 0
        except Stopped:
            log.warning("linking process stopped before its checkpoint (Kafka refused or away): its input since "
                        "generation %d is read again by the next owner", self.gen)
            return 0
        finally:
            # Each bounded: with the broker away, aiokafka's stop waits out its request timeouts.
            if self._consumer is not None:  # leaves the group: a standby takes over at once
                await _within(STOP_STEP_S, "leaving the group", self._consumer.stop())
            await _within(STOP_STEP_S, "stopping the producer", self._producer.stop())
            if self.feedback is not None:
                await _within(STOP_STEP_S, "stopping the feedback reader", self.feedback.stop())

    async def _final_checkpoint(self) -> None:
        async with self.lock:
            if self.processing:
                await self.checkpoint()
                await self._send_stats()

    def _stored(self) -> dict[str, dict[str, Any]]:
        """The stage state held in dicts, by checkpoint section."""
        return {"features": self.features, "accounts": self.accounts, "alerted": self.alerted,
                "sync": self.sync.member_of}

    def sections(self) -> dict[str, dict[str, Any]]:
        """The stage state a checkpoint holds (``checkpoint.SECTIONS``), by name."""
        return {**self._stored(), "minutes": self.pooled.section()}

    def request_stop(self) -> None:
        if not self.stop_requested.is_set():
            log.info("linking process: stop requested, finishing the current fetch")
        self.stop_requested.set()

    def _drop_state(self) -> None:
        """Forget the stage state: a standby holds none, a takeover restores the newest."""
        for section in self._stored().values():
            section.clear()
        self.stats = StageStats()
        self.stage_a = FeatureStage(self.features, self.config, self.stats)
        self.pooled = PooledEvidence(self.config, bounded=self.bounded, shared=True)
        self.sync = SyncTracker(self.config, self.features, bounded=self.bounded, ring=self.pooled.ring)
        self.sync_drains = set()
        self.stage_b = None
        self.offsets.clear()
        self.committed.clear()
        self.reported = set()
        self.restored_markers = set()
        self.gen = self.restored_gen = self.uncheckpointed = 0

    async def _read_state(self) -> Restored | None:
        """Fold the state topic to its end; restore the newest complete generation into the stages' dicts."""
        tp = TopicPartition(self.topics.state, 0)
        reader = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers, client_id=CLIENT_ID,
                                  enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
        await reader.start()
        try:
            reader.assign([tp])
            await reader.seek_to_beginning(tp)
            end = (await reader.end_offsets([tp]))[tp]
            state_log = StateLog()
            while await reader.position(tp) < end:
                for records in (await reader.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS)).values():
                    for record in records:
                        state_log.add(record.key, record.value)
        finally:
            await reader.stop()
        self.state_end = end
        restored = state_log.restore()
        self.slot_blocks = {slot: state_log.slot_blocks(slot) for slot in self.slot_blocks}
        del state_log  # the blocks' bytes: only their count per slot is needed from here on
        if restored is not None:
            self.restore(restored)
        return restored

    def restore(self, restored: Restored) -> None:
        """Take a restored checkpoint generation into the (empty) stage state."""
        self.gen = self.restored_gen = restored.gen
        for name, target in self._stored().items():
            target.update(restored.sections[name])
        meta = restored.meta
        self.sync.restore(meta.get("sync_clock"))
        self.pooled.restore(restored.sections["minutes"])
        restored.sections.clear()  # the stages' dicts hold the entries now
        for key, value in dict(meta.get("stats") or {}).items():
            if key in StageStats.__dataclass_fields__:
                setattr(self.stats, key, Counter(value) if isinstance(value, dict) else value)
        self.restored_markers = {(str(src), None if p is None else int(p)) for src, p in meta.get("markers", [])}

    async def _start_consumer(self) -> None:
        """Join ``<group>.linking`` (as a standby until the assignor names this member the owner)."""
        s = self.settings
        consumer = AIOKafkaConsumer(bootstrap_servers=s.bootstrap_servers, group_id=linking_group(s.consumer_group),
                                    client_id=CLIENT_ID, enable_auto_commit=False, auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=8 << 20, partition_assignment_strategy=(self.assignor,),
                                    session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS)
        # From the broker's topic description (ensure_topics created it): an unsubscribed consumer's
        # metadata never learns the topic on Apache Kafka (Tansu answers with every topic).
        self.partitions = await asyncio.to_thread(partition_count, s, self.topics.observations)
        await consumer.start()
        self._consumer = consumer
        consumer.subscribe([self.topics.observations, self.topics.edges], listener=_Handover(self))
        log.info("linking process started: %d observation partitions, drain sources %s, bounded %s; joining %s",
                 self.partitions, self.drain_sources or "-", self.bounded, linking_group(s.consumer_group))

    def init_stage_b(self, partitions: int) -> ClusterStage:
        """Stage B over the (restored) dicts, once the observation partition count is known."""
        self.partitions = partitions
        self.stage_b = ClusterStage(self.config, self.features, self.accounts, self.alerted,
                                    drain_sources=self.drain_sources, partitions=partitions,
                                    defer_alerts=self.bounded, stats=self.stats, alerting=self.alerting,
                                    pooled=self.pooled)
        self.stage_b.markers |= self.restored_markers
        return self.stage_b

    # --- ownership ----------------------------------------------------------------------------

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """A rebalance begins: stop at a fetch boundary, checkpoint while still a member."""
        self.epoch += 1
        async with self.lock:
            self.epoch += 1
            if self.processing:
                self.processing = False
                await self.checkpoint()

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """The rebalance's outcome, taken over by the loop: a restore here would hold up the group
        (aiokafka heartbeats only after this callback). Paused until then: nothing is fetched early."""
        consumer = self._consumer
        if assigned and consumer is not None:
            consumer.pause(*assigned)
        self.pending = set(assigned)

    def _group_line(self) -> str:
        d = self.assignor.decision
        return "no decision" if d is None else f"owner {d.owner}, epoch {d.epoch}, {d.members} members"

    async def _take_assignment(self) -> None:
        """Become active (restore unless our state is still the newest) or standby."""
        consumer = self._consumer
        assert consumer is not None
        async with self.lock:
            assigned, self.pending = self.pending or set(), None
            if not assigned:
                if self.role != STANDBY:
                    log.info("linking: standby (%s)", self._group_line())
                if self.role == ACTIVE:
                    self._drop_state()
                self.role = STANDBY
                return
            kept = self.role == ACTIVE and await self._state_unchanged()
            if not kept:
                self._drop_state()
                restored = await self._read_state()
                self.init_stage_b(self.partitions)
                for key, offset in (restored.offsets if restored else {}).items():
                    self.offsets[TopicPartition(*parse_offset_key(key))] = offset
            for tp in set(self.offsets) - assigned:
                del self.offsets[tp]
            for tp, offset in self.offsets.items():
                consumer.seek(tp, offset)
            consumer.resume(*assigned)
            for tp in sorted(assigned - set(self.offsets)):  # never checkpointed: committed, else earliest
                self.offsets[tp] = await consumer.position(tp)
            self.committed = dict(self.offsets)
            self.role, self.processing = ACTIVE, True
            if kept:
                log.info("linking: still active after a rebalance, generation %d (%s)", self.gen, self._group_line())
                return
            self.activations += 1
            log.info("linking: active, restored generation %d (%d features, %d accounts, %d alerted; "
                     "%s); offsets %s", self.gen, len(self.features), len(self.accounts),
                     len(self.alerted), self._group_line(),
                     {offset_key(tp.topic, tp.partition): o for tp, o in sorted(self.offsets.items())})
            await self.reload_feedback()
            assert self.stage_b is not None
            await self._publish(self.stage_b.handle([]))  # every cluster once: rebuilds the rows written

    async def _state_unchanged(self) -> bool:
        """Nobody checkpointed since our last write or restore: our in-memory state is the newest."""
        consumer = self._consumer
        assert consumer is not None
        tp = TopicPartition(self.topics.state, 0)
        try:
            return (await consumer.end_offsets([tp]))[tp] == self.state_end
        except KafkaError as exc:
            log.warning("linking: could not read the state topic's end (%s): restoring", exc)
            return False

    # --- the loop -----------------------------------------------------------------------------

    async def _loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        last_checkpoint = last_stats = last_backlog = last_progress = last_feedback = time.monotonic()
        while not self.stop_requested.is_set():
            if self.pending is not None:
                await self._take_assignment()
                last_checkpoint = last_stats = time.monotonic()
            epoch = self.epoch
            fetched = await fetch_or_wait(consumer, "linking process", timeout_ms=FETCH_TIMEOUT_MS,
                                          max_records=FETCH_MAX_RECORDS)
            if not self.processing:
                continue  # a standby, or a rebalance under way
            async with self.lock:  # a revocation waits for this fetch's results, then checkpoints
                if self.processing and epoch == self.epoch and (fetched or self._alerts_held()):
                    # With nothing read, held alerts may still be due: a source went idle meanwhile.
                    out = self.apply_fetch(fetched)
                    if await self._publish(out):
                        last_stats = time.monotonic()
            now = time.monotonic()
            if self.processing and self._all_drained() and self.bounded:
                log.info("linking process drained %s: %s", self.drain_sources, self.progress())
                return
            # The chores give way to SIGTERM: with the broker away each would wait out a request timeout.
            if self.uncheckpointed and now - last_checkpoint >= self.settings.checkpoint_interval_s:
                await self._unless_stopped(self._periodic_checkpoint())
                last_checkpoint = time.monotonic()
            if now - last_backlog >= STATS_EVERY_S:  # also while busy: the lag is what matters then
                await self._unless_stopped(self._measure_backlog())
                last_backlog = now
            if now - last_stats >= STATS_EVERY_S:
                await self._unless_stopped(self._send_stats())
                last_stats = time.monotonic()
            if now - last_feedback >= FEEDBACK_POLL_S:
                await self._unless_stopped(self.reload_feedback())
                last_feedback = now
            if now - last_progress >= PROGRESS_EVERY_S:
                log.info("linking progress: %s", self.progress())
                last_progress = now

    async def _periodic_checkpoint(self) -> None:
        async with self.lock:
            if self.processing:
                await self.checkpoint()

    async def _unless_stopped(self, chore: Awaitable[object]) -> None:
        """Run ``chore``, cancelled if a stop is requested first (a cut checkpoint is never restored:
        its manifest is written last)."""
        task = asyncio.ensure_future(chore)
        stop = asyncio.ensure_future(self.stop_requested.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, KafkaError, Stopped):
                await task
            return
        await task  # its result or exception, as if awaited directly

    async def reload_feedback(self) -> None:
        """Hand the cluster rules the analysts' newest verdicts, when a newer set was published
        (the reader logs Kafka errors and returns None: the last set is kept)."""
        if self.feedback is None or self.alerting is None:
            return
        if (found := await self.feedback.latest()) is not None:
            self.alerting.context.feedback = found

    def _all_drained(self) -> bool:
        return bool(self.drain_sources) and set(self.drain_sources) <= self.reported

    def _parse(self, value: bytes | None) -> Message | None:
        try:
            return decode(value or b"")
        except MessageError as exc:
            self.stats.bad_messages += 1
            log.error("linking process: dropped a malformed message: %s", exc)
            return None

    def apply_fetch(self, fetched: dict[TopicPartition, list[Any]]) -> StageOutput:
        """Stage A per observation message, then stage B once over everything of the fetch."""
        stage_b = self.stage_b
        assert stage_b is not None
        to_b: list[Message] = []
        started = time.perf_counter()
        for tp, records in fetched.items():
            from_observations = tp.topic == self.topics.observations
            for record in records:
                msg = self._parse(record.value)
                if isinstance(msg, EndMarker):
                    if not from_observations and msg.src in self.drain_sources:
                        self.sync_drains.add(msg.src)
                        if self.sync_drains >= set(self.drain_sources):  # every frame of the bounded input is in
                            to_b += self._sync_changes(self.sync.flush())
                    # Observations partition p's marker comes after its observations: tag it with p.
                    to_b.append(EndMarker(msg.src, tp.partition if from_observations else None))
                    self.watermark.end(msg.src, tp)
                elif isinstance(msg, ObservationBatch) and from_observations:
                    self.watermark.observe(msg.src, tp, msg.wm)
                    changes = self.stage_a.handle(msg)
                    if len(changes):
                        to_b.append(changes)
                elif isinstance(msg, AccountUpdates) and not from_observations:
                    self.watermark.observe(msg.src, tp, msg.wm)
                    to_b.append(msg)
                    to_b += self._sync_changes(self.sync.handle(msg))
                elif msg is not None:
                    self.stats.bad_messages += 1
                    log.error("linking process: a %s message in %s: dropped", type(msg).__name__, tp.topic)
            if records:
                self.offsets[tp] = records[-1].offset + 1
                self.read_messages += len(records)
                self.uncheckpointed += len(records)
        self.stats.stage_a_s += time.perf_counter() - started
        started = time.perf_counter()
        self.watermark_ms = self.watermark.value(self._inputs(), self._caught_up)
        out = stage_b.handle(to_b, watermark_ms=self.watermark_ms)
        self.stats.stage_b_s += time.perf_counter() - started
        return out

    def _alerts_held(self) -> int:
        return self.stage_b.alerts_held if self.stage_b is not None else 0

    def _inputs(self) -> set[TopicPartition]:
        """The input partitions assigned (without a consumer: those read from)."""
        consumer = self._consumer
        inputs = consumer.assignment() if consumer is not None else set(self.offsets)
        return {tp for tp in inputs if tp.topic in (self.topics.observations, self.topics.edges)}

    def _caught_up(self, tp: TopicPartition) -> bool:
        """Nothing of ``tp`` known to wait: read up to its high watermark as of the last fetch (or never
        fetched)."""
        highwater = self._consumer.highwater(tp) if self._consumer is not None else None
        return highwater is None or self.offsets.get(tp, 0) >= highwater

    def _sync_changes(self, batches: list[ObservationBatch]) -> list[Message]:
        """Stage A's changes from the sync tracker's observations (timing evidence)."""
        out: list[Message] = []
        for batch in batches:
            changes = self.stage_a.handle(batch)
            if len(changes):
                out.append(changes)
        return out

    def take_drained(self) -> list[str]:
        """Sources whose markers of every observations partition and of the edges topic are all in."""
        stage_b = self.stage_b
        assert stage_b is not None
        expected: set[int | None] = {*range(self.partitions), None}
        by_src: dict[str, set[int | None]] = {}
        for src, p in stage_b.markers:
            by_src.setdefault(src, set()).add(p)
        done = [src for src, seen in sorted(by_src.items()) if expected <= seen and src not in self.reported
                and (src not in self.drain_sources or stage_b.drained)]
        self.reported.update(done)
        return done

    async def _publish(self, out: StageOutput) -> bool:
        """Send what stage B produced (if anything) as results, acknowledged; whether anything was sent."""
        stage_b = self.stage_b
        assert stage_b is not None
        result = LinkResult(out.rows, out.alerts if out.alerts is not None else AlertRows(), out.transitions,
                            stage_b.take_cluster_changes(), self.take_drained(), self.stats_dict())
        if result.is_empty():
            return False
        await self._send(result)
        return True

    async def _send_stats(self) -> None:
        await self._send(LinkResult(stats=self.stats_dict()))

    async def _send(self, result: LinkResult) -> None:
        parts = split_result(result)
        await self._retrying("sending results", lambda: self._produce(
            [(self.topics.results, None, value) for _, value in parts]))
        self.results_sent += len(parts)

    async def _produce(self, records: list[tuple[str, str | None, bytes | None]]) -> list[Any]:
        """Send and wait for every ack; the records' metadata (offsets)."""
        producer = self._producer
        assert producer is not None
        pending = [await producer.send(topic, value, key=None if key is None else key.encode(), partition=0)
                   for topic, key, value in records]
        return list(await asyncio.gather(*pending))

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[object]]) -> None:
        """Run ``attempt()`` until Kafka accepts (the input waits meanwhile); Stopped when asked to stop."""
        try:
            await retry(attempt, KafkaError, f"linking process: {what} failed",
                        give_up=self.stop_requested.is_set)
        except KafkaError as exc:
            raise Stopped from exc

    # --- checkpoint -----------------------------------------------------------------------------

    async def checkpoint(self) -> bool:
        """Write the next generation (blocks, then manifest, acknowledged), then commit the input offsets.

        Only as a member of the group that still owns the partitions (``_still_member``): after an
        eviction the next owner may be writing its own. Whether the state is checkpointed now."""
        if not self.uncheckpointed and self.gen:
            return True
        if not await self._still_member():
            return False
        started = time.perf_counter()
        gen = self.gen + 1
        meta = self.checkpoint_meta()
        offsets = {offset_key(tp.topic, tp.partition): offset for tp, offset in self.offsets.items()}
        plan = plan_checkpoint(self.sections(), gen, offsets, meta, slot_blocks=self.slot_blocks[gen % 2],
                               writer=self.writer)
        await self._retrying("writing the checkpoint", lambda: self._write_checkpoint(plan))
        self.gen = gen
        self.uncheckpointed = 0
        await self._commit()
        self.checkpoints += 1
        self.last_checkpoint_s = time.perf_counter() - started
        self.last_checkpoint_bytes = plan.bytes
        self.checkpoint_s += self.last_checkpoint_s
        log.debug("linking checkpoint generation %d: %d records, %d bytes, %.3fs", gen, len(plan.blocks),
                  plan.bytes, self.last_checkpoint_s)
        return True

    def checkpoint_meta(self) -> dict[str, Any]:
        """The manifest's extra fields: drain markers, counters, the sync tracker's clock."""
        stage_b = self.stage_b
        return {"markers": sorted(([src, p] for src, p in (stage_b.markers if stage_b else ())),
                                  key=lambda m: (m[0], -1 if m[1] is None else m[1])),
                "stats": self.stats.as_dict(), "written_at": time.time(), "sync_clock": self.sync.clock()}

    async def _still_member(self) -> bool:
        """Commit the last checkpoint's offsets again: the group refuses it once it has moved on
        without this member (evicted: a standby may own the partitions and write checkpoints)."""
        consumer = self._consumer
        if consumer is None:
            return True
        try:
            await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in self.committed.items()})
        except KafkaError as exc:
            log.warning("linking: not checkpointing, the group membership is not confirmed (%s); the input since "
                        "generation %d is read again by the next owner", exc, self.gen)
            return False
        return True

    async def _write_checkpoint(self, plan: CheckpointPlan) -> None:
        state = self.topics.state
        await self._produce([(state, key, value) for key, value in plan.blocks])
        manifest = await self._produce([(state, "manifest", plan.manifest)])
        self.state_end = manifest[-1].offset + 1
        self.slot_blocks[plan.gen % 2] = sum(value is not None for _, value in plan.blocks)

    async def _commit(self) -> None:
        consumer = self._consumer
        if consumer is None or not self.offsets:
            return
        try:
            await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in self.offsets.items()})
            self.committed = dict(self.offsets)
        except KafkaError as exc:  # the checkpoint holds the offsets; the commit only shows progress
            log.warning("linking process: committing offsets failed: %s", exc)

    # --- reporting ----------------------------------------------------------------------------

    async def _measure_backlog(self) -> None:
        consumer = self._consumer
        if consumer is not None:
            stage_topics = {STAGE_FEATURES: self.topics.observations, STAGE_CLUSTERS: self.topics.edges}
            self.backlog = await stage_backlog(consumer, stage_topics)

    def stats_dict(self) -> dict[str, object]:
        return {**self.stats.as_dict(), **self.sync.as_dict(), **self.pooled.as_dict(), "backlog": dict(self.backlog),
                "watermark_ms": self.watermark_ms,
                "alerts_held": self._alerts_held(),
                "lag": sum(self.backlog.values()),
                "accounts": len(self.accounts), "features": len(self.features),
                "read_messages": self.read_messages, "uncheckpointed_messages": self.uncheckpointed,
                "checkpoint_generation": self.gen, "restored_generation": self.restored_gen,
                "checkpoints": self.checkpoints, "checkpoint_s": round(self.checkpoint_s, 3),
                "last_checkpoint_s": round(self.last_checkpoint_s, 3),
                "last_checkpoint_bytes": self.last_checkpoint_bytes, "results_sent": self.results_sent,
                "sources_drained": sorted(self.reported), "pid": os.getpid(), "role": self.role,
                "group_members": self.assignor.decision.members if self.assignor.decision else 0,
                "ownership_epoch": self.assignor.epoch, "activations": self.activations, "rss_mb": round(rss_mb(), 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "uptime_s": round(time.monotonic() - self.started, 1)}

    def progress(self) -> str:
        s = self.stats
        return (f"{self.read_messages} messages read, {len(self.accounts)} accounts, {s.clusters} clusters, "
                f"{s.cluster_alerts} cluster alerts, lag {sum(self.backlog.values())}, checkpoint gen {self.gen}, "
                f"rss {rss_mb():.0f} MB")


async def _within(timeout_s: float, what: str, step: Awaitable[object]) -> bool:
    """Run one shutdown step for at most ``timeout_s``; whether it finished (a timeout is logged)."""
    try:
        await asyncio.wait_for(step, timeout=timeout_s)
        return True
    except TimeoutError:
        log.warning("linking process: %s did not finish within %.0fs; going on without it", what, timeout_s)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # we are cancelled ourselves
        log.warning("linking process: %s was cancelled inside the client; going on without it", what)
    return False


async def run_linking_async(settings: Settings, *, bounded: bool, drain_sources: Sequence[str]) -> int:
    from pipeline.scoring import load_scoring_config  # numba and friends: only when the process runs

    alerting = AlertSetup.from_settings(settings, load_scoring_config(settings.scoring_config))
    topics = LinkTopics.for_group(settings.consumer_group)
    process = LinkingProcess(settings, bounded=bounded, drain_sources=drain_sources, topics=topics, alerting=alerting,
                             feedback=FeedbackReader(settings.bootstrap_servers, topics.feedback))
    return await process.run()


def run_linking(settings: Settings, *, bounded: bool, drain_sources: Sequence[str]) -> int:
    """Run the linking process until SIGTERM or (``bounded``) until every drain source drained; exit code."""
    try:
        return asyncio.run(run_linking_async(settings, bounded=bounded, drain_sources=drain_sources))
    except Exception:
        log.exception("linking process failed")
        return 1


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s [linking %(process)d] %(message)s")
    for client in ("aiokafka", "kafka"):  # their connection chatter at INFO drowns the progress lines
        logging.getLogger(client).setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.linking.process", description=__doc__.split("\n")[0])
    parser.add_argument("--bounded", action="store_true", help="exit 0 once every --drain-source has drained")
    parser.add_argument("--drain-source", action="append", default=[], dest="drain_sources",
                        help="a detect source whose end markers end the bounded run (repeatable)")
    parser.add_argument("--loglevel", default=os.environ.get("DW_LINKING_LOGLEVEL", "info"))
    args = parser.parse_args(argv)
    if args.bounded and not args.drain_sources:
        parser.error("--bounded needs at least one --drain-source")
    configure_logging(args.loglevel)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    return run_linking(settings, bounded=args.bounded, drain_sources=args.drain_sources)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

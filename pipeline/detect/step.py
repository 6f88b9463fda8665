"""The detect step: batch → decode → drop duplicates → detector → dead letters → ClickHouse → checkpoint → commit.

Every batch follows the commit order of docs/operations.md ("Commit order"): dead
letters, then ClickHouse inserts, outbox, actions and linking messages (``handle``),
then the state checkpoint and the offsets (``_checkpoint_and_ack``), the last two at
most every ``DW_CHECKPOINT_INTERVAL_S`` (``flush_if_due``) and before a revocation
(``begin_revoke``). With ``overlap_writes``, batch N's writes run while N+1 is
detected; a failed write stops every later checkpoint and commit.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from aiokafka.errors import KafkaError

from pipeline.alerting.actions import ActionPublisher, action_messages
from pipeline.alerting.outbox import Outbox
from pipeline.alerting.transitions import AlertTransition
from pipeline.decode.dispatch import decode_any_batch
from pipeline.decode.isolate import decode_isolating
from pipeline.decode.json_events import DecodedBatch
from pipeline.decode.rejects import Rejected
from pipeline.detect.detector import DetectionOutput, Detector
from pipeline.linking.messages import FRAME_COUNTERS
from pipeline.linking.publish import LinkPublisher, PreparedBatch
from pipeline.metrics import WorkerMetrics
from pipeline.retry import retry
from pipeline.settings import Settings
from pipeline.sinks.batch_outputs import batch_token, write_batch_outputs
from pipeline.sinks.clickhouse import ClickHouseUnavailable, ClickHouseWriter
from pipeline.sinks.dead_letter import DeadLetterSink
from pipeline.sources.fetched_batch import FetchedBatch
from pipeline.state.dedup import DUPLICATE, without_rows
from pipeline.state.manager import PreparedCheckpoint, StateManager
from pipeline.stats import PipelineStats

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None elsewhere (musl, macOS)."""
    libc = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None
    return (lambda: trim(0)) if trim is not None else None


# Decoding and writing a batch frees a batch's worth of small blocks in the heap and the worker
# threads' arenas; glibc keeps those pages. Handing them back after each batch keeps the worker's
# resident size near what it holds rather than at its high-water mark (docs/benchmarks.md, "Replay").
RELEASE_FREED_MEMORY = _malloc_trim()


@dataclass(frozen=True)
class Detected:
    decoded: DecodedBatch  # unique valid events, plus the decoder's rejects
    duplicates: list[Rejected]  # resent copies: recorded in rejected_events, not dead-lettered
    output: DetectionOutput
    links: PreparedBatch | None = None  # the batch's linking messages, packed (sent after its inserts)


class DetectStep:
    def __init__(
        self,
        settings: Settings,
        state: StateManager,
        writer: ClickHouseWriter,
        dead_letters: DeadLetterSink,
        stats: PipelineStats,
        on_drained: Callable[[], None],
        linking: LinkPublisher | None = None,
        metrics: WorkerMetrics | None = None,
        outbox: Outbox | None = None,
        actions: ActionPublisher | None = None,
        overlap_writes: bool = False,
    ) -> None:
        """``overlap_writes``: write batch N (steps 1-2) while batch N+1 is decoded and detected."""
        self.settings = settings
        self.overlap_writes = overlap_writes
        self.outbox = outbox
        self.actions = actions
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self.linking = linking
        self.state = state
        self.writer = writer
        self.dead_letters = dead_letters
        self.stats = stats
        self.on_drained = on_drained
        self._lock = asyncio.Lock()
        self._unacked: list[FetchedBatch] = []
        self._last_checkpoint = time.monotonic()
        self._urgent = False  # partitions are being revoked: checkpoint and commit every batch at once
        self._writing: asyncio.Task[None] | None = None  # steps 1-2 of the last batch, when overlapped
        self._failed: BaseException | None = None  # a batch's writes failed: nothing is committed after it

    @property
    def detector(self) -> Detector:
        return self.state.detector

    @property
    def checkpoint_age_s(self) -> float:
        """Seconds since the last successful checkpoint (since start before the first)."""
        return time.monotonic() - self._last_checkpoint

    @property
    def pending_batches(self) -> int:
        """Batches written but not yet checkpointed and committed."""
        return len(self._unacked) + (self._writing is not None)

    def decode(self, values: Sequence[bytes], keys: Sequence[bytes | None], partitions: Sequence[int],
               offsets: Sequence[int]) -> DecodedBatch:
        """Decode raw messages (also used to refill the duplicate windows on restore)."""
        s = self.settings
        max_ts_ms = int(time.time() * 1000) + s.max_future_skew_s * 1000

        def decode(v: Sequence[bytes], k: Sequence[bytes | None], p: Sequence[int], o: Sequence[int]) -> DecodedBatch:
            # JSON events and DWB1 batch containers (schemas/batch_encoding.md), told apart per message.
            return decode_any_batch(v, k, p, o, max_message_bytes=s.max_message_bytes, max_ts_ms=max_ts_ms)

        return decode_isolating(decode, values, keys, partitions, offsets)

    def detect(self, batch: FetchedBatch) -> Detected:
        decoded = self.decode(batch.values, batch.keys, batch.partitions, batch.offsets)
        dup = self.state.dedup.duplicates(decoded)
        unique = without_rows(decoded, dup)
        output = self.detector.process(unique, force_close=batch.drain)
        # Packed here, in batch order and against the detector's state after this batch, rather than in the
        # write task: the inserts' time is then not followed by this CPU work (docs/benchmarks.md).
        links = self._prepare_links(self.linking, unique, output, batch.behind) if self.linking is not None else None
        found = Detected(unique, _duplicate_rejects(batch, decoded, dup), output, links)
        # Everything after this reads the decoded columns (and the rejects' own copies), never the raw batch.
        batch.release_messages()
        return found

    async def handle(self, batch: FetchedBatch) -> None:
        async with self._lock:
            started = time.perf_counter()
            found = await asyncio.to_thread(self.detect, batch)  # overlaps the previous batch's writes
            await self._settle()
            if RELEASE_FREED_MEMORY is not None:  # the previous batch's writes and this one's decoding are done
                await asyncio.to_thread(RELEASE_FREED_MEMORY)
            at_once = batch.drain or self._urgent or not self.overlap_writes
            snapshot = None
            if self._checkpoint_due() and not at_once:
                # The state after this batch, encoded now: written behind the batch's rows, while the next is detected.
                offsets = self._offsets([*self._unacked, batch])
                snapshot = await asyncio.to_thread(self.state.prepare_checkpoint, offsets)
            self._writing = asyncio.create_task(self._write_batch(batch, found, started, snapshot))
            if at_once:
                await self._settle()
                if batch.drain or self._urgent or self._checkpoint_due():
                    await self._checkpoint_and_ack()
        if batch.drain:
            self.stats.drained = True
            log.info("drained: every frame closed, written, checkpointed and committed")
            self.on_drained()

    async def _write_batch(self, batch: FetchedBatch, found: Detected, started: float,
                           snapshot: PreparedCheckpoint | None) -> None:
        """Steps 1-2 of the commit order for one batch; then 3-4 with ``snapshot`` (the state after it)."""
        rejects = found.decoded.rejects
        if rejects:
            await retry(lambda: self.dead_letters.send(rejects), KafkaError, "writing to the dead-letter topic failed")
        recorded = DecodedBatch(found.decoded.account_ids, found.decoded.kernel, found.decoded.raw,
                                rejects + found.duplicates)
        insert_s = await self._write_with_retry(recorded, found.output, batch_token(batch.partitions, batch.offsets))
        if self.outbox is not None and found.output.transitions:
            await self._add_to_outbox(self.outbox, found.output.transitions)
        if self.actions is not None and found.output.transitions:
            await self._publish_actions(self.actions, found.output.transitions)
        if found.links is not None:
            await self._publish_links(found.links, drain=batch.drain)
        self._unacked.append(batch)
        self._count(batch, found, started, insert_s)
        if snapshot is not None:
            await self._checkpoint_and_ack(snapshot)

    async def _settle(self) -> None:
        """Wait for the batch being written; if its writes failed, raise, now and on every later call.

        A failed batch is never committed, and neither is any later one: the detector's
        state already holds their events, so no checkpoint may be taken after it.
        """
        if self._failed is not None:
            raise self._failed
        writing, self._writing = self._writing, None
        if writing is None:
            return
        try:
            await writing
        except BaseException as exc:
            self._failed = exc
            raise

    async def _add_to_outbox(self, outbox: Outbox, transitions: list[AlertTransition]) -> None:
        # Rows only (pending notifications): the delivery task sends them, this never waits for a receiver.
        async def add() -> None:
            await asyncio.to_thread(outbox.add, transitions)

        await retry(add, ClickHouseUnavailable, "writing to the alert outbox failed")

    async def _publish_actions(self, publisher: ActionPublisher, transitions: list[AlertTransition]) -> None:
        messages = action_messages(transitions, self.detector.alerting.rules)
        await retry(lambda: publisher.publish(messages), KafkaError, "writing to the actions topic failed")

    def _prepare_links(self, publisher: LinkPublisher, decoded: DecodedBatch, output: DetectionOutput,
                       behind: frozenset[int]) -> PreparedBatch:
        sig = output.signatures
        return publisher.prepare(decoded, sig["account_id"], np.asarray(sig["window_start"]), np.asarray(sig["score"]),
                                 self.detector.max_score, np.asarray(sig["calls"]),
                                 {name: np.asarray(sig[name]) for name in FRAME_COUNTERS},
                                 wm=self.detector.frames.read_up_to_ms(behind))

    async def _publish_links(self, prepared: PreparedBatch, *, drain: bool) -> None:
        publisher = self.linking
        assert publisher is not None  # detect packs links only when there is a publisher
        await retry(lambda: publisher.send(prepared, drain=drain), KafkaError, "writing to the linking topics failed")

    # --- checkpoint and commit ------------------------------------------------------------
    def _checkpoint_due(self) -> bool:
        return time.monotonic() - self._last_checkpoint >= self.settings.checkpoint_interval_s

    async def flush_if_due(self) -> None:
        """Checkpoint and commit what was written, if the interval passed (a timer calls this)."""
        if (self._unacked or self._writing) and self._checkpoint_due():
            async with self._lock:
                await self._settle()
                if self._unacked:
                    await self._checkpoint_and_ack()

    async def begin_revoke(self) -> None:
        """Partitions are about to be revoked: commit everything written, and each later batch at once."""
        self._urgent = True
        async with self._lock:
            await self._settle()
            if self._unacked:
                await self._checkpoint_and_ack()

    async def assign(self, assigned: set[int], committed: dict[int, int | None]) -> dict[int, int]:
        """New assignment: make the state match it (see StateManager.assign); returns seek offsets."""
        async with self._lock:
            await self._settle()
            self._urgent = False
            return await self.state.assign(assigned, committed)

    @staticmethod
    def _offsets(batches: list[FetchedBatch]) -> dict[int, int]:
        offsets: dict[int, int] = {}
        for b in batches:
            offsets.update(b.commit_offsets)  # later batches hold later offsets
        return offsets

    async def _checkpoint_and_ack(self, prepared: PreparedCheckpoint | None = None) -> None:
        """Steps 3-4 for every batch written so far; ``prepared``: their state, encoded when it was current."""
        started = time.perf_counter()
        if prepared is None:
            prepared = await asyncio.to_thread(self.state.prepare_checkpoint, self._offsets(self._unacked))
        await retry(lambda: self.state.write_checkpoint(prepared), KafkaError, "writing to the state checkpoint failed",
                    on_failure=self._checkpoint_failed)
        for b in self._unacked:
            await b.ack()
        self.stats.batches_committed += len(self._unacked)
        self.stats.last_commit_at = time.time()
        self._unacked = []
        self._last_checkpoint = time.monotonic()
        self.metrics.checkpoint_duration.observe(time.perf_counter() - started)

    # --- retries ---------------------------------------------------------------------------
    def _checkpoint_failed(self) -> None:
        self.stats.checkpoint_retries += 1

    def _clickhouse_failed(self) -> None:
        self.stats.clickhouse_available = False
        self.stats.clickhouse_retries += 1

    async def _write_with_retry(self, decoded: DecodedBatch, output: DetectionOutput, token: str) -> float:
        retries_before = self.stats.clickhouse_retries
        seconds = await retry(
            lambda: asyncio.to_thread(write_batch_outputs, self.writer, decoded, output, token,
                                      store_raw=self.settings.store_raw_events),
            ClickHouseUnavailable, "ClickHouse unavailable", on_failure=self._clickhouse_failed)
        if not self.stats.clickhouse_available:
            log.warning("ClickHouse is back after %d retries; resuming", self.stats.clickhouse_retries - retries_before)
        self.stats.clickhouse_available = True
        return seconds

    def _count(self, batch: FetchedBatch, found: Detected, started: float, insert_s: float) -> None:
        st = self.stats
        decoded, output = found.decoded, found.output
        st.batches += 1
        st.events_in += len(batch)
        st.events_valid += len(decoded)
        st.events_rejected += len(decoded.rejects)
        st.events_duplicate += len(found.duplicates)
        st.rejected_by_reason.update(r.reason for r in decoded.rejects)
        st.late_events += output.late_events
        st.signature_rows += output.signature_rows
        st.alerts += len(output.alerts)
        st.alerts_by_rule.update(zip(output.alerts.rule, output.alerts.severity, strict=True))
        st.alerts_suppressed.update(output.suppressed)
        st.accounts = len(self.detector.accounts)
        st.watermark_ms = max(st.watermark_ms, self.detector.frames.watermark_ms())
        st.last_batch_events = len(batch)
        elapsed = time.perf_counter() - started
        st.last_batch_seconds = round(elapsed, 4)
        st.last_insert_seconds = round(insert_s, 4)
        m = self.metrics
        m.batch_duration.observe(elapsed)
        m.batch_size.observe(len(decoded) + len(decoded.rejects) + len(found.duplicates))
        m.insert_duration.observe(insert_s)


def _duplicate_rejects(batch: FetchedBatch, decoded: DecodedBatch, dup: np.ndarray) -> list[Rejected]:
    rows = np.flatnonzero(dup).tolist()
    if not rows:
        return []
    where = {(p, o): i for i, (p, o) in enumerate(zip(batch.partitions, batch.offsets, strict=True))}
    raw = decoded.raw
    parts, offsets, ids = raw["kafka_partition"], raw["kafka_offset"], raw["event_id"]
    out = []
    for r in rows:
        p, o = int(parts[r]), int(offsets[r])  # type: ignore[arg-type]
        i = where[(p, o)]
        out.append(Rejected(p, o, batch.keys[i], batch.values[i], DUPLICATE, "event_id",
                            f"event {ids[r]!r} of account {decoded.account_ids[r]!r} repeats an earlier copy "
                            "(same account_id, ts and event_id within DW_DEDUP_WINDOW offsets)"))
    return out

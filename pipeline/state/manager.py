"""StateManager: the worker's per-partition state, checkpointed to and restored from the state topic.

Owns the Detector, the duplicate windows and per partition ``seq``, ``base_seq`` and
``positions``. ``checkpoint(offsets)`` runs after a batch's ClickHouse writes and before its
offsets are committed, and returns once Kafka acknowledged every record (on failure it raises
and can be called again); ``assign(assigned, committed)`` returns the offset each assigned
partition must be read from. Not thread-safe: one call at a time from the event loop.
Restore and rebalances: docs/operations.md ("The state topic", "Failures": Rebalance).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from pipeline.decode.json_events import DecodedBatch
from pipeline.detect.detector import Detector
from pipeline.state.blocks import BlockIndex
from pipeline.state.checkpoint import (
    ChosenState,
    Marker,
    PartitionLog,
    StoreLayout,
    decode_block,
    decode_marker,
    encode_marker,
    marker_key,
)
from pipeline.state.dedup import RecentEvents
from pipeline.state.snapshot import (
    copy_partitions,
    copy_places,
    encode_blocks,
    load_block,
    load_partition_rows,
    partition_rows,
    store_layouts,
)
from pipeline.state.state_topic import Record, StateTopic, read_range, read_to_end, restore_consumer

log = logging.getLogger(__name__)

DEDUP_REBUILD_CHUNK = 20_000

Decode = Callable[[list[bytes], list[bytes | None], list[int], list[int]], DecodedBatch]


@dataclass
class StateStats:
    checkpoints: int = 0
    checkpoint_records: int = 0
    last_checkpoint_bytes: int = 0
    last_checkpoint_seconds: float = 0.0
    restores: int = 0
    restored_entities: int = 0
    last_restore_seconds: float = 0.0


@dataclass(frozen=True)
class PreparedCheckpoint:
    entities: list[Record]
    markers: list[Record]

    @property
    def records(self) -> int:
        return len(self.entities) + len(self.markers)

    @property
    def bytes(self) -> int:
        return sum(len(k) + len(v or b"") for _, k, v in (*self.entities, *self.markers))


class StateManager:
    def __init__(self, *, make_detector: Callable[[], Detector], topic: StateTopic, events_topic: str,
                 bootstrap_servers: list[str], dedup_window: int, decode: Decode,
                 stall_timeout_s: float = 60.0) -> None:
        self.make_detector = make_detector
        self.detector = make_detector()
        self.topic = topic
        self.events_topic = events_topic
        self.bootstrap_servers = bootstrap_servers
        self.dedup = RecentEvents(dedup_window)
        self.decode = decode
        self.stall_timeout_s = stall_timeout_s
        self.owned: set[int] = set()
        self.positions: dict[int, int] = {}
        self.seq: dict[int, int] = {}
        self.base_seq: dict[int, int] = {}
        self._tombstones: dict[int, list[bytes]] = {}
        self.blocks: dict[str, BlockIndex] = {}  # store -> places of the detector's entities
        self._rewrite: dict[str, set[tuple[int, int]]] = {}  # store -> blocks due whether or not changed
        self.stats = StateStats()

    # --- checkpoint -------------------------------------------------------------------
    def _index(self, store: str, layout: StoreLayout) -> BlockIndex:
        if store not in self.blocks:
            self.blocks[store] = BlockIndex(layout.block_size)
        return self.blocks[store]

    def prepare_checkpoint(self, offsets: dict[int, int]) -> PreparedCheckpoint:
        """Records for the state changed since the last checkpoint; ``offsets``: partition -> next offset.

        Every block with a member changed since the last checkpoint is written
        whole. CPU work (run it in a thread); advances ``seq`` of every partition it writes.
        """
        self.positions.update(offsets)
        detector = self.detector
        layouts = store_layouts(detector)
        due: dict[str, set[tuple[int, int]]] = {}
        for store, (_, frames) in detector.state_stores().items():
            index = self._index(store, layouts[store])
            dirty = frames.take_dirty_slots()
            lost = index.place(dirty, frames.slot_arrays()["slot_part"][dirty])
            rewrite = self._rewrite.pop(store, set())
            self._rewrite[store] = {(p, b) for p, b in rewrite if p not in self.positions}  # position unknown: wait
            due[store] = index.blocks_of(dirty) | lost | (rewrite - self._rewrite[store])
            # A partition whose input position is not known yet (none of its batches handled since the
            # start or a rebalance) can still change through another partition's events, e.g. a key used
            # by accounts of both: its blocks wait for its first batch, as the rewrites above do, since a
            # marker needs the position. (This used to stop the worker.)
            waiting = {(p, b) for p, b in due[store] if p not in self.positions}
            if waiting:
                log.warning("%s: %d changed blocks of partitions %s wait for those partitions' first batch "
                            "(their input position is not known yet)", store, len(waiting),
                            sorted({p for p, _ in waiting}))
                self._rewrite[store] |= waiting
                due[store] -= waiting
        # Tombstones wait until their partition's position is known (its first batch).
        tombstones = {p: keys for p, keys in self._tombstones.items() if p in self.positions}
        self._tombstones = {p: keys for p, keys in self._tombstones.items() if p not in tombstones}
        touched = set(offsets) | {p for blocks in due.values() for p, _ in blocks} | set(tombstones)
        for p in touched:
            self.seq[p] = self.seq.get(p, 0) + 1
        entities: list[Record] = []
        for store, blocks in due.items():
            entities += encode_blocks(detector, store, self.blocks[store], blocks, self.seq, layouts[store])
        # A key written now is no longer dead (a block refilled after a crash): never delete it after.
        written = {key for _, key, _ in entities}
        entities += [(p, key, None) for p, keys in tombstones.items() for key in keys if key not in written]
        worker = detector.worker_state()
        markers: list[Record] = [
            (p, marker_key(p), encode_marker(Marker(p, self.seq[p], self.base_seq.get(p, 0), self.positions[p],
                                                    partition_rows(detector, p), layouts, worker)))
            for p in sorted(touched)
        ]
        return PreparedCheckpoint(entities, markers)

    async def write_checkpoint(self, prepared: PreparedCheckpoint) -> None:
        started = time.perf_counter()
        await self.topic.write(prepared.entities, prepared.markers)
        st = self.stats
        st.checkpoints += 1
        st.checkpoint_records += prepared.records
        st.last_checkpoint_bytes = prepared.bytes
        st.last_checkpoint_seconds = round(time.perf_counter() - started, 4)

    # --- assignment -------------------------------------------------------------------
    async def assign(self, assigned: set[int], committed: dict[int, int | None]) -> dict[int, int]:
        """Hold exactly ``assigned``; returns partition -> offset to read from (where known)."""
        started = time.perf_counter()
        kept = {p for p in self.owned & assigned if committed.get(p) == self.positions.get(p)}
        moved = (self.owned & assigned) - kept
        if moved:
            log.warning("partitions %s were committed by another member meanwhile: restoring them", sorted(moved))
        if self.owned - kept:
            self._keep_only(kept)
        gained = sorted(assigned - kept)
        if gained:
            await self._restore(gained, committed)
            self.stats.restores += 1
            self.stats.last_restore_seconds = round(time.perf_counter() - started, 3)
        self.owned = set(assigned)
        return {p: self.positions[p] for p in assigned if p in self.positions}

    def _keep_only(self, kept: set[int]) -> None:
        """Drop every partition but ``kept`` from memory (state moves to a fresh Detector)."""
        old = self.detector
        fresh = self.make_detector()
        layouts = store_layouts(fresh)
        for store, (old_slots, new_slots) in copy_partitions(old, fresh, kept).items():
            if store in self.blocks:
                index = BlockIndex(layouts[store].block_size)
                copy_places(self.blocks[store], index, old_slots, new_slots)
                self.blocks[store] = index
        for p in kept:
            load_partition_rows(fresh, p, partition_rows(old, p))
        fresh.load_worker_state(old.worker_state())  # the worker's, not a partition's: kept whole
        self.detector = fresh
        dropped = self.owned - kept
        self.dedup.drop_partitions(dropped | (self.dedup.partitions() - kept))
        self._rewrite = {store: {(p, b) for p, b in blocks if p in kept} for store, blocks in self._rewrite.items()}
        for p in dropped:
            self.positions.pop(p, None)
            self.seq.pop(p, None)
            self.base_seq.pop(p, None)
            self._tombstones.pop(p, None)
        self.owned = set(kept)
        log.info("dropped the state of partitions %s from memory; kept %s", sorted(dropped), sorted(kept))

    async def _restore(self, parts: list[int], committed: dict[int, int | None]) -> None:
        logs = {p: PartitionLog(p) for p in parts}
        consumer = restore_consumer(self.bootstrap_servers)
        await consumer.start()
        try:
            await read_to_end(consumer, self.topic.topic, parts,
                              lambda p, _o, k, v: logs[p].add(k, v), stall_timeout_s=self.stall_timeout_s)
            restored = await asyncio.to_thread(self._apply, [logs[p].chosen() for p in parts], committed)
            await self._rebuild_dedup(consumer, parts)
        finally:
            await consumer.stop()
        self.stats.restored_entities += restored

    def _apply(self, chosen: list[ChosenState], committed: dict[int, int | None]) -> int:
        detector = self.detector
        layouts = store_layouts(detector)
        restored = 0
        for state in chosen:
            p = state.part
            self.seq[p] = state.max_seq
            if state.tombstones:
                self._tombstones.setdefault(p, []).extend(state.tombstones)
            at = committed.get(p)
            if state.marker is None:
                self.base_seq[p] = 0
                if at is not None:
                    self.positions[p] = at
                    log.warning("partition %d: no checkpoint, committed offset %d: its state starts empty", p, at)
                continue
            marker = decode_marker(state.marker, layouts)
            self.base_seq[p] = marker.base_seq
            load_partition_rows(detector, p, marker.rows)
            detector.load_worker_state(marker.worker)
            rewrite = set(state.rewrite)
            entities = 0
            for key, value in state.blocks.items():
                record = decode_block(key, value, layouts)
                if record is None or record.part != p:
                    continue
                slots = load_block(detector, record)
                index = self._index(record.store, layouts[record.store])
                lost = index.restore(p, record.ordinals, slots)
                # An orphan hides this record: write the block again in the next checkpoint.
                if key in rewrite:
                    lost.add((p, record.block))
                self._rewrite.setdefault(record.store, set()).update(lost)
                entities += len(record)
            restored += entities
            if at is None or marker.next_offset >= at:
                self.positions[p] = marker.next_offset
            else:
                self.positions[p] = at
                log.warning("partition %d: committed offset %d is ahead of its checkpoint (%d): offsets were moved "
                            "forward; the state skips those events", p, at, marker.next_offset)
            log.info("partition %d: restored %d entities in %d blocks (checkpoint seq %d, %d orphans rewritten, "
                     "%d removed), resuming at offset %d", p, entities, len(state.blocks), marker.seq, len(rewrite),
                     len(state.tombstones),
                     self.positions[p])
        return restored

    async def _rebuild_dedup(self, consumer: AIOKafkaConsumer, parts: Sequence[int]) -> None:
        """Refill the duplicate windows from the input just before each resume point."""
        window = self.dedup.window
        ranges = {p: (max(0, self.positions[p] - window), self.positions[p])
                  for p in parts if window and p in self.positions}
        if not ranges:
            return
        chunk: tuple[list[bytes], list[bytes | None], list[int], list[int]] = ([], [], [], [])

        def observe() -> None:
            self.dedup.duplicates(self.decode(*chunk))
            for column in chunk:
                column.clear()

        def collect(p: int, offset: int, key: bytes | None, value: bytes | None) -> None:
            chunk[0].append(value if value is not None else b"")
            chunk[1].append(key)
            chunk[2].append(p)
            chunk[3].append(offset)
            if len(chunk[0]) >= DEDUP_REBUILD_CHUNK:
                observe()  # bounded memory; per partition the order is kept

        await read_range(consumer, self.events_topic, ranges, collect, stall_timeout_s=self.stall_timeout_s,
                         what="input (duplicate window)")
        observe()

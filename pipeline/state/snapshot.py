"""The Detector's state as block and partition records, and back. Pure: no Kafka.

Generic over the state: every keyed store of ``Detector.state_stores()``, every
array of its ``FrameStore.slot_arrays()`` / ``partition_arrays()`` and the
entity's ``Detector.entity_extras``. An array added to a store is checkpointed
and restored with no change here (and changes the layout fingerprint, so an old
checkpoint is refused rather than misread). Rows move with one NumPy gather or
scatter per array and block set, never one Python object per entity and array.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from pipeline.detect.detector import Detector
from pipeline.state.blocks import NONE, BlockIndex
from pipeline.state.checkpoint import BlockRecord, StoreLayout, array_layout, block_key, encode_block

# (state partition, key, value); value None is a tombstone. Same shape as state_topic.Record.
BlockValue = tuple[int, bytes, bytes]


def store_layouts(detector: Detector) -> dict[str, StoreLayout]:
    return {name: StoreLayout(array_layout(frames.slot_arrays()), array_layout(frames.partition_arrays()))
            for name, (_, frames) in detector.state_stores().items()}


def encode_blocks(detector: Detector, store: str, index: BlockIndex, blocks: Iterable[tuple[int, int]],
                  seq: dict[int, int], layout: StoreLayout) -> list[BlockValue]:
    """One record per (partition, block) of ``store``, holding every current member of the block."""
    registry, frames = detector.state_stores()[store]
    wanted = sorted(blocks)
    members = [index.members(p, b) for p, b in wanted]
    slots = np.concatenate([s for _, s in members]) if members else np.empty(0, np.int64)
    arrays = frames.slot_arrays()
    gathered = {name: arrays[name][slots] for name, _, _ in layout.slots}  # one gather per array
    names = registry.names_of(slots)
    extras = [detector.entity_extras(store, s) for s in slots.tolist()]
    out: list[BlockValue] = []
    at = 0
    for (p, b), (ordinals, mine) in zip(wanted, members, strict=True):
        end = at + len(mine)
        value = encode_block(seq[p], p, b, ordinals, names[at:end], extras[at:end],
                             {name: rows[at:end] for name, rows in gathered.items()}, layout)
        out.append((p, block_key(store, p, b), value))
        at = end
    return out


def load_block(detector: Detector, record: BlockRecord) -> np.ndarray:
    """Register the block's members (if new) and load their rows and extras; returns their slots.

    The slots are left clean (not dirty): they hold what the checkpoint has.
    """
    registry, frames = detector.state_stores()[record.store]
    slots = registry.slots_for(record.names)
    frames.ensure_slots(len(registry))
    arrays = frames.slot_arrays()  # after ensure_slots: growing replaces the arrays
    if set(arrays) != set(record.rows):
        raise ValueError(f"block rows {sorted(record.rows)} do not match the slot arrays {sorted(arrays)}")
    for name, rows in record.rows.items():
        arrays[name][slots] = rows
    frames.dirty[slots] = 0
    for slot, extras in zip(slots.tolist(), record.extras, strict=True):  # in slot order: new keys append
        detector.load_entity_extras(record.store, slot, dict(extras))
    return slots


def copy_partitions(old: Detector, fresh: Detector, parts: set[int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Copy every entity of ``parts`` (rows, extras, dirty flags) into ``fresh``; per store (old, new) slots."""
    wanted = np.array(sorted(parts), np.int64)
    fresh_stores = fresh.state_stores()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for store, (registry, frames) in old.state_stores().items():
        old_arrays = frames.slot_arrays()
        old_slots = np.flatnonzero(np.isin(old_arrays["slot_part"][:len(registry)], wanted))
        f_registry, f_frames = fresh_stores[store]
        new_slots = f_registry.slots_for(registry.names_of(old_slots)).astype(np.int64)
        f_frames.ensure_slots(len(f_registry))
        new_arrays = f_frames.slot_arrays()
        for name, arr in old_arrays.items():
            new_arrays[name][new_slots] = arr[old_slots]
        f_frames.dirty[new_slots] = frames.dirty[old_slots]  # unwritten changes stay due
        for o, n in zip(old_slots.tolist(), new_slots.tolist(), strict=True):
            fresh.load_entity_extras(store, n, old.entity_extras(store, o))
        out[store] = (old_slots, new_slots)
    return out


def copy_places(old: BlockIndex, fresh: BlockIndex, old_slots: np.ndarray, new_slots: np.ndarray) -> None:
    """Give ``new_slots`` in ``fresh`` the places ``old_slots`` have in ``old``."""
    parts, ordinals = old.places(old_slots)
    for p in np.unique(parts[parts != NONE]).tolist():
        mine = parts == p
        fresh.restore(p, ordinals[mine], new_slots[mine])


def partition_rows(detector: Detector, part: int) -> dict[str, dict[str, np.ndarray]]:
    """Partition ``part``'s row of every per-partition array, per store (copies)."""
    return {store: {name: np.array(arr[part]) for name, arr in frames.partition_arrays().items()}
            for store, (_, frames) in detector.state_stores().items()}


def load_partition_rows(detector: Detector, part: int, rows: dict[str, dict[str, np.ndarray]]) -> None:
    stores = detector.state_stores()
    for store, store_rows in rows.items():
        if store in stores:
            stores[store][1].load_partition(part, store_rows)

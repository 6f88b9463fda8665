"""FrameStore: owns the per-account state arrays and drives the Numba kernels.

Slots are handed out by ``AccountRegistry``; capacity grows by doubling (so the
arrays are not sized for a million accounts when there are a hundred) up to
``max_accounts``. Nothing here allocates per event.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

from pipeline.kernels.frames import (
    EVENT_DTYPES,
    EventArrays,
    OutArrays,
    StateArrays,
    collect_closed_frames,
    count_closed_frames,
    ingest_events,
)
from pipeline.kernels.layout import (
    AS_LAST_TS,
    AS_WINDOW_MINUTE,
    HLL_TOTAL,
    N_ACCOUNT_SCALARS,
    N_COUNTERS,
    N_FLOATS,
    N_TOKEN_COUNTERS,
    N_WINDOW_Q,
    N_WINDOWS,
    NO_FRAME,
    NO_TIME,
    RECENT_SIMHASHES,
    ring_size,
)
from pipeline.state.closed_frames import ClosedFrames, empty_closed_frames

# Kernel input columns, in the kernel's argument order, with their dtypes.
EVENT_COLUMNS: dict[str, type] = dict(zip(EventArrays._fields, EVENT_DTYPES, strict=True))


def _outputs(frames: ClosedFrames) -> OutArrays:
    return OutArrays(frames.slot, frames.minute, frames.counters, frames.floats, frames.distinct, frames.windows)


class FrameStore:
    """Per-account rolling frames and windows for one worker's partitions."""

    def __init__(self, *, n_partitions: int, allowed_lateness_ms: int, max_accounts: int,
                 initial_capacity: int = 1024) -> None:
        self.lateness_ms = int(allowed_lateness_ms)
        self.max_accounts = max_accounts
        self.n_ring = ring_size(self.lateness_ms)
        self.part_max_ts = np.full(n_partitions, NO_TIME, np.int64)
        self.part_late = np.zeros(n_partitions, np.int64)
        self.n_slots = 0  # slots in use: the kernels scan only these
        self._arrays: dict[str, np.ndarray] = {}
        self._allocate(min(initial_capacity, max_accounts))

    def _fresh(self, capacity: int) -> dict[str, np.ndarray]:
        acct = np.zeros((capacity, N_ACCOUNT_SCALARS), np.int64)
        acct[:, AS_LAST_TS] = NO_TIME
        acct[:, AS_WINDOW_MINUTE] = NO_FRAME
        return {
            "frame_minute": np.full((capacity, self.n_ring), NO_FRAME, np.int64),
            "counters": np.zeros((capacity, self.n_ring, N_COUNTERS), np.uint32),
            "token_carry": np.zeros((capacity, self.n_ring, N_TOKEN_COUNTERS), np.uint32),
            "floats": np.zeros((capacity, self.n_ring, N_FLOATS), np.float64),
            "hll": np.zeros((capacity, self.n_ring, HLL_TOTAL), np.uint8),
            "windows": np.zeros((capacity, N_WINDOWS, N_WINDOW_Q), np.float32),
            "acct": acct,
            "recent_sim": np.zeros((capacity, RECENT_SIMHASHES), np.uint64),
            "slot_part": np.zeros(capacity, np.int16),
        }

    def _allocate(self, capacity: int) -> None:
        fresh = self._fresh(capacity)
        dirty = np.zeros(capacity, np.uint8)
        if self._arrays:
            n = self.capacity
            for name, arr in self._arrays.items():
                fresh[name][:n] = arr
            dirty[:n] = self.dirty
        self._arrays = fresh
        self.dirty = dirty

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("_arrays")
        if arrays is not None and name in arrays:
            return arrays[name]
        raise AttributeError(name)

    @property
    def capacity(self) -> int:
        return int(self._arrays["frame_minute"].shape[0])

    def ensure_slots(self, n_slots: int) -> None:
        """Make room for slots [0, n_slots). Raises MemoryError past max_accounts."""
        if n_slots > self.max_accounts:
            raise MemoryError(
                f"{n_slots} active accounts exceed DW_MAX_ACCOUNTS={self.max_accounts}; "
                "raise it or add workers (partitions spread accounts)"
            )
        if n_slots > self.capacity:
            capacity = self.capacity
            while capacity < n_slots:
                capacity *= 2
            self._allocate(min(capacity, self.max_accounts))
        self.n_slots = max(self.n_slots, n_slots)

    def _state(self) -> StateArrays:
        a = self._arrays
        return StateArrays(a["frame_minute"], a["counters"], a["token_carry"], a["floats"], a["hll"], a["windows"],
                           a["acct"], a["recent_sim"], a["slot_part"], self.dirty, self.part_max_ts, self.part_late)

    def ingest(self, columns: dict[str, np.ndarray]) -> tuple[ClosedFrames, int]:
        """Fold one batch (``EVENT_COLUMNS``); returns frames it closed and the late count."""
        n = int(columns["slot"].shape[0])
        events = EventArrays(*(np.ascontiguousarray(columns[name], dtype) for name, dtype in EVENT_COLUMNS.items()))
        chunk = max(256, n // 4)
        parts: list[ClosedFrames] = []
        late = 0
        start = 0
        while True:
            out = empty_closed_frames(chunk)
            start, emitted, late_now = ingest_events(start, events, self._state(), self.lateness_ms, _outputs(out))
            late += int(late_now)
            parts.append(out.take(slice(0, emitted)))
            if start >= n:
                return ClosedFrames.concat(parts), late

    def close_frames(self, force: bool = False) -> ClosedFrames:
        """Emit frames the watermark has passed (every open frame when ``force``)."""
        a = self._arrays
        rows = count_closed_frames(self.n_slots, a["frame_minute"], a["slot_part"], self.part_max_ts,
                                   self.lateness_ms, force)
        out = empty_closed_frames(rows)
        if rows:
            collect_closed_frames(self.n_slots, self._state(), self.lateness_ms, force, _outputs(out))
        return out

    def watermark_ms(self) -> int:
        """Lowest partition watermark among partitions that have seen events."""
        seen = self.part_max_ts[self.part_max_ts > NO_TIME]
        return int(seen.min()) - self.lateness_ms if seen.size else NO_TIME

    def read_up_to_ms(self, behind: Collection[int] = ()) -> int | None:
        """How far in event time this worker has read its input: the newest event of each partition in
        ``behind`` (those with messages still waiting), their least; with none waiting, the newest event
        read. None before any event. The linking inputs' watermark is built on it (pipeline/linking/watermark.py)."""
        newest = self.part_max_ts
        waiting = [int(newest[p]) for p in behind if p < len(newest)]
        if waiting:
            return min(waiting)  # NO_TIME for one not read from yet: nothing is known complete
        seen = newest[newest > NO_TIME]
        return int(seen.max()) if seen.size else None

    @property
    def late_events(self) -> int:
        return int(self.part_late.sum())

    # --- the state as named arrays (for checkpoints; generic over the layout) -------
    def slot_arrays(self) -> dict[str, np.ndarray]:
        """Every per-account array; axis 0 is the slot. ``dirty`` is bookkeeping, not state."""
        return dict(self._arrays)

    def partition_arrays(self) -> dict[str, np.ndarray]:
        """Every per-partition array; axis 0 is the Kafka partition."""
        return {"part_max_ts": self.part_max_ts, "part_late": self.part_late}

    def take_dirty_slots(self) -> np.ndarray:
        """Slots changed since the last call (int32), clearing their flags."""
        slots = np.flatnonzero(self.dirty[: self.n_slots]).astype(np.int32)
        self.dirty[slots] = 0
        return slots

    def mark_dirty(self, slots: np.ndarray) -> None:
        """Flag ``slots`` as changed, so the next checkpoint writes them again."""
        self.dirty[np.asarray(slots, np.int64)] = 1

    def slot_rows(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """Copies of the rows of ``slots`` (axis 0 follows ``slots``) in every slot array."""
        index = np.asarray(slots, np.int64)
        return {name: arr[index] for name, arr in self._arrays.items()}

    def load_slot(self, slot: int, rows: Mapping[str, np.ndarray]) -> None:
        """Overwrite ``slot`` with one row per slot array (exactly the names of ``slot_arrays()``).

        The slot must be below ``capacity`` (``ensure_slots`` first); it is left
        clean (not dirty): it holds what a checkpoint already has. Raises
        ValueError when the names differ, or when a row's shape does not match.
        """
        if set(rows) != set(self._arrays):
            raise ValueError(f"slot rows {sorted(rows)} do not match the slot arrays {sorted(self._arrays)}")
        for name, arr in self._arrays.items():
            row = np.asarray(rows[name])
            if row.shape != arr.shape[1:]:
                raise ValueError(f"{name}: row shape {row.shape} != {arr.shape[1:]}")
            arr[slot] = row
        self.dirty[slot] = 0

    def load_partition(self, part: int, rows: Mapping[str, np.ndarray]) -> None:
        """Overwrite partition ``part`` of every per-partition array (names of ``partition_arrays()``)."""
        arrays = self.partition_arrays()
        if set(rows) != set(arrays):
            raise ValueError(f"partition rows {sorted(rows)} do not match {sorted(arrays)}")
        for name, arr in arrays.items():
            arr[part] = rows[name]

    def bytes_per_account(self) -> int:
        return int(sum(a[0].nbytes for a in self._arrays.values()))

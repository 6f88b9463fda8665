"""FrameStore: owns the per-account frame arrays and drives the Numba kernels.

Slots are handed out by ``AccountRegistry``; capacity grows by doubling (so the
arrays are not sized for a million accounts when there are a hundred) up to
``max_accounts``. Nothing here allocates per event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.kernels.frames import collect_closed_frames, count_closed_frames, ingest_events
from pipeline.kernels.layout import (
    HLL_IP_REGISTERS,
    HLL_PROMPT_REGISTERS,
    N_COUNTERS,
    NO_FRAME,
    NO_TIME,
    ring_size,
)


@dataclass(frozen=True)
class ClosedFrames:
    """Frames that will not change any more: one row per (account slot, minute)."""

    slot: np.ndarray  # int32
    minute: np.ndarray  # int64, minutes since the epoch (event time)
    counters: np.ndarray  # int64 [rows, N_COUNTERS], see kernels.layout
    distinct: np.ndarray  # int64 [rows, 2]: distinct prompts, distinct client IPs

    def __len__(self) -> int:
        return int(self.slot.shape[0])

    @staticmethod
    def concat(parts: list[ClosedFrames]) -> ClosedFrames:
        parts = [p for p in parts if len(p)]
        if not parts:
            return empty_closed_frames(0)
        return ClosedFrames(
            slot=np.concatenate([p.slot for p in parts]),
            minute=np.concatenate([p.minute for p in parts]),
            counters=np.concatenate([p.counters for p in parts]),
            distinct=np.concatenate([p.distinct for p in parts]),
        )


def empty_closed_frames(rows: int) -> ClosedFrames:
    return ClosedFrames(
        slot=np.empty(rows, np.int32),
        minute=np.empty(rows, np.int64),
        counters=np.empty((rows, N_COUNTERS), np.int64),
        distinct=np.empty((rows, 2), np.int64),
    )


def _truncate(frames: ClosedFrames, rows: int) -> ClosedFrames:
    return ClosedFrames(frames.slot[:rows], frames.minute[:rows], frames.counters[:rows], frames.distinct[:rows])


class FrameStore:
    """Per-account rolling one-minute frames for one worker's partitions."""

    def __init__(self, *, n_partitions: int, allowed_lateness_ms: int, max_accounts: int,
                 initial_capacity: int = 1024) -> None:
        self.lateness_ms = int(allowed_lateness_ms)
        self.max_accounts = max_accounts
        self.n_ring = ring_size(self.lateness_ms)
        self.part_max_ts = np.full(n_partitions, NO_TIME, np.int64)
        self.part_late = np.zeros(n_partitions, np.int64)
        self.n_slots = 0  # slots in use: the kernels scan only these
        self._allocate(min(initial_capacity, max_accounts))

    def _allocate(self, capacity: int) -> None:
        old = getattr(self, "frame_minute", None)
        frame_minute = np.full((capacity, self.n_ring), NO_FRAME, np.int64)
        counters = np.zeros((capacity, self.n_ring, N_COUNTERS), np.int64)
        hll_prompt = np.zeros((capacity, self.n_ring, HLL_PROMPT_REGISTERS), np.uint8)
        hll_ip = np.zeros((capacity, self.n_ring, HLL_IP_REGISTERS), np.uint8)
        slot_part = np.zeros(capacity, np.int16)
        dirty = np.zeros(capacity, np.uint8)
        if old is not None:
            n = old.shape[0]
            frame_minute[:n] = self.frame_minute
            counters[:n] = self.counters
            hll_prompt[:n] = self.hll_prompt
            hll_ip[:n] = self.hll_ip
            slot_part[:n] = self.slot_part
            dirty[:n] = self.dirty
        self.frame_minute, self.counters = frame_minute, counters
        self.hll_prompt, self.hll_ip, self.slot_part, self.dirty = hll_prompt, hll_ip, slot_part, dirty

    @property
    def capacity(self) -> int:
        return int(self.frame_minute.shape[0])

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

    def ingest(self, columns: dict[str, np.ndarray]) -> tuple[ClosedFrames, int]:
        """Fold one batch; returns frames pushed out by newer minutes and the late count."""
        n = int(columns["slot"].shape[0])
        out = empty_closed_frames(n)
        emitted, late = ingest_events(
            columns["slot"], columns["part"], columns["ts_ms"], columns["prompt_tokens"],
            columns["completion_tokens"], columns["reasoning_tokens"], columns["prompt_hash"],
            columns["ip_key"], columns["status"], columns["flags"],
            self.frame_minute, self.counters, self.hll_prompt, self.hll_ip, self.slot_part, self.dirty,
            self.part_max_ts, self.part_late, self.lateness_ms,
            out.slot, out.minute, out.counters, out.distinct,
        )
        return _truncate(out, emitted), int(late)

    def close_frames(self, force: bool = False) -> ClosedFrames:
        """Emit frames the watermark has passed (every open frame when ``force``)."""
        rows = count_closed_frames(
            self.n_slots, self.frame_minute, self.slot_part, self.part_max_ts, self.lateness_ms, force
        )
        out = empty_closed_frames(rows)
        if rows:
            collect_closed_frames(
                self.n_slots, self.frame_minute, self.counters, self.hll_prompt, self.hll_ip,
                self.slot_part, self.dirty, self.part_max_ts, self.lateness_ms, force,
                out.slot, out.minute, out.counters, out.distinct,
            )
        return out

    def watermark_ms(self) -> int:
        """Lowest partition watermark among partitions that have seen events."""
        seen = self.part_max_ts[self.part_max_ts > NO_TIME]
        return int(seen.min()) - self.lateness_ms if seen.size else NO_TIME

    @property
    def late_events(self) -> int:
        return int(self.part_late.sum())

    # --- the state as named arrays (for checkpoints; generic over the layout) -------
    def slot_arrays(self) -> dict[str, np.ndarray]:
        """Every per-account array; axis 0 is the slot. ``dirty`` is bookkeeping, not state."""
        return {
            "frame_minute": self.frame_minute,
            "counters": self.counters,
            "hll_prompt": self.hll_prompt,
            "hll_ip": self.hll_ip,
            "slot_part": self.slot_part,
        }

    def partition_arrays(self) -> dict[str, np.ndarray]:
        """Every per-partition array; axis 0 is the Kafka partition."""
        return {"part_max_ts": self.part_max_ts, "part_late": self.part_late}

    def take_dirty_slots(self) -> np.ndarray:
        """Slots changed since the last call (int32), clearing their flags."""
        slots = np.flatnonzero(self.dirty[: self.n_slots]).astype(np.int32)
        self.dirty[slots] = 0
        return slots

    def bytes_per_account(self) -> int:
        return int(sum(a[0].nbytes for a in self.slot_arrays().values()))

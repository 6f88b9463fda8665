"""Per-account counters per minute in NumPy arrays: the one ring the timing evidence (``sync_tracker``: calls
per minute) and the pooled cluster evidence (``pooled``: every counter) both read.

The detect worker's account updates carry every frame it closed (account, minute, calls and, since message
version 3, the frame's ``FRAME_COUNTERS``; ``messages.AccountUpdates``). ``CounterRing`` keeps, per account,
a ring of ``width`` cells indexed by ``minute % width``, each cell ``len(COLUMNS)`` uint32 counters (column 0:
calls) tagged with the minute it holds, so a cell left over from an older minute reads as 0 and a late or
repeated frame lands in its own cell (setting, not adding: a batch re-read after a crash sends the same
frames again and changes nothing). A frame of a version-2 message has its calls only: its cell is marked
``CALLS_ONLY`` (column 0's top bit), read by the timing evidence and skipped by the pooled evidence.
Memory is ``width × (4 × len(COLUMNS) + 4) + 8`` bytes per account, for the accounts some reader still
needs: each reader ``evict``s up to its own minute, and a slot is freed once no reader needs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.linking.messages import FRAME_COUNTERS, AccountUpdates

COLUMNS = ("calls", *FRAME_COUNTERS)  # a cell's counters, in this order
CALLS_ONLY = 1 << 31  # column 0's top bit: a frame without its counters (calls clipped below it)
_MAX_COUNT = np.iinfo(np.uint16).max  # calls of one account in one minute as the timing evidence reads them
_MAX_COUNTER = np.iinfo(np.uint32).max  # a counter of one account in one minute, clipped


def frame_values(updates: AccountUpdates) -> tuple[np.ndarray, bool]:
    """The message's frames as cells (int64 ``[frames, len(COLUMNS)]``) and whether they are calls only (a
    version-2 message: the other columns 0)."""
    calls = np.asarray(updates.frame_calls, np.int64)
    if not updates.frame_counters:
        return np.column_stack([calls, np.zeros((len(calls), len(FRAME_COUNTERS)), np.int64)]), True
    return np.column_stack([calls, *(np.asarray(updates.frame_counters[n], np.int64) for n in FRAME_COUNTERS)]), False


class CounterRing:
    """Ring of ``columns`` additive counters per minute per account (slots reused once no reader needs them)."""

    def __init__(self, width: int, columns: int = len(COLUMNS), capacity: int = 64) -> None:
        if width < 2:
            raise ValueError("a ring needs at least two cells")
        self.width = width
        self.columns = columns
        self.slots: dict[str, int] = {}
        self.names: list[str] = []  # slot -> account ("" when free)
        self.free: list[int] = []
        self.counts = np.zeros((capacity, width, columns), np.uint32)
        self.tags = np.full((capacity, width), -1, np.int32)  # the minute each cell holds (-1: none)
        self.last = np.full(capacity, -1, np.int32)  # newest minute per slot (-1: free)
        # The slot's first frame since the timing evidence last let it go: earlier minutes are unknown to it.
        self.first = np.full(capacity, -1, np.int32)
        self.holds: dict[str, int] = {}  # reader -> its last ``evict``'s minute: slots idle since then it needs not

    def __len__(self) -> int:
        return len(self.slots)

    def nbytes(self) -> int:
        """Bytes of the arrays (the account dictionary is extra: about 100 B per account)."""
        return self.counts.nbytes + self.tags.nbytes + self.last.nbytes + self.first.nbytes

    def _slot(self, account: str) -> int:
        slot = self.slots.get(account)
        if slot is not None:
            return slot
        if self.free:
            slot = self.free.pop()
            self.names[slot] = account
        else:
            slot = len(self.names)
            self.names.append(account)
            if slot == len(self.last):
                self.counts = np.concatenate([self.counts, np.zeros_like(self.counts)])
                self.tags = np.concatenate([self.tags, np.full_like(self.tags, -1)])
                self.last = np.concatenate([self.last, np.full_like(self.last, -1)])
                self.first = np.concatenate([self.first, np.full_like(self.first, -1)])
        self.slots[account] = slot
        return slot

    def slots_of(self, accounts: Iterable[str]) -> np.ndarray:
        return np.fromiter((self._slot(a) for a in accounts), dtype=np.int64)

    def put_many(self, slots: np.ndarray, minutes: np.ndarray, values: np.ndarray, calls_only: bool = False) -> None:
        """Frames of any minutes (``values`` ``[n, columns]``; ``calls_only``: marked ``CALLS_ONLY``): each sets
        its cell unless the cell holds a newer minute; the same minute again is overwritten (idempotent)."""
        cells = np.minimum(np.asarray(values, np.int64), _MAX_COUNTER)
        cells[:, 0] = np.minimum(cells[:, 0], CALLS_ONLY - 1) | (CALLS_ONLY if calls_only else 0)
        self._set(slots, np.asarray(minutes, np.int64), cells.astype(np.uint32))

    def _set(self, slots: np.ndarray, minutes: np.ndarray, cells: np.ndarray) -> None:
        order = np.argsort(minutes, kind="stable")  # a later minute of the same cell is written last
        slots, minutes, cells = slots[order], minutes[order], cells[order]
        index = minutes % self.width
        newer = self.tags[slots, index] <= minutes
        slots, minutes, index = slots[newer], minutes[newer], index[newer]
        self.counts[slots, index] = cells[newer]
        self.tags[slots, index] = minutes
        np.maximum.at(self.last, slots, minutes.astype(np.int32))
        self.first[slots[self.first[slots] < 0]] = np.iinfo(np.int32).max
        np.minimum.at(self.first, slots, minutes.astype(np.int32))

    # --- the timing evidence's view: calls, NaN before the first frame -------------------------

    def active(self, since: int, known_by: int | None = None) -> np.ndarray:
        """Slots with a frame at ``since`` or later, first seen by ``known_by`` (default ``since``: known over
        the whole span)."""
        n = len(self.names)
        known_by = since if known_by is None else known_by
        return np.flatnonzero((self.last[:n] >= since) & (self.first[:n] <= known_by) & (self.first[:n] >= 0))

    def window(self, slots: np.ndarray, start: int, length: int) -> np.ndarray:
        """Calls per minute (uint16-clipped) of ``slots`` over minutes ``start .. start + length - 1`` as a float
        array ``[len(slots), length]``: 0 where no frame, NaN before the slot's first frame (unknown: the
        account was not seen yet, or the process started since). The ring must still hold them: ``length <=
        width``."""
        minutes = np.arange(start, start + length, dtype=np.int32)
        index = minutes % self.width
        held = self.tags[np.ix_(slots, index)] == minutes
        calls = np.minimum(self.counts[:, :, 0][np.ix_(slots, index)] & (CALLS_ONLY - 1), _MAX_COUNT)
        out = np.where(held, calls, 0).astype(np.float64)
        out[minutes[None, :] < self.first[slots, None]] = np.nan
        return out

    # --- the pooled evidence's view: every counter of the frames that brought them -------------

    def matrix(self, slots: np.ndarray, start: int, length: int) -> np.ndarray:
        """Counters of ``slots`` over minutes ``start .. start + length - 1``: float64 ``[len(slots), length,
        columns]``, 0 where the ring holds no frame of that minute with its counters."""
        minutes = np.arange(start, start + length, dtype=np.int64)
        index = minutes % self.width
        cells = self.counts[np.ix_(slots, index)]
        held = (self.tags[np.ix_(slots, index)] == minutes) & ((cells[..., 0] & CALLS_ONLY) == 0)
        return np.where(held[..., None], cells, 0).astype(np.float64)

    def newest_counted(self) -> int:
        """The newest minute held with its counters (-1: none)."""
        n = len(self.names)
        counted = self.tags[:n][(self.counts[:n, :, 0] & CALLS_ONLY) == 0]
        return int(counted.max(initial=-1))

    def evict(self, before: int, reader: str = "", *, forget: bool = False) -> int:
        """``reader`` no longer needs the slots whose newest frame is older than ``before``: free those no
        reader needs (older than every reader's ``before``); how many. ``forget``: for ``reader``, minutes
        before such a slot's next frame are unknown again (``first``), as if freed, though another reader
        keeps it."""
        self.holds[reader] = before
        n = len(self.names)
        if forget:
            self.first[:n][self.last[:n] < before] = -1
        before = min(self.holds.values())
        idle = np.flatnonzero((self.last[:n] < before) & (self.last[:n] >= 0))
        for slot in idle.tolist():
            del self.slots[self.names[slot]]
            self.names[slot] = ""
        self.counts[idle] = 0
        self.tags[idle] = -1
        self.last[idle] = -1
        self.first[idle] = -1
        self.free.extend(idle.tolist())
        return len(idle)

    # --- checkpoint ----------------------------------------------------------------------------

    def section(self) -> dict[str, list[Any]]:
        """Account -> ``[first frame, [[minute, c1, c2, ...], ...]]``, the minutes it holds (JSON-able; column 0
        with its ``CALLS_ONLY`` bit)."""
        out: dict[str, list[Any]] = {}
        for account, slot in self.slots.items():
            held = np.flatnonzero(self.tags[slot] >= 0)
            rows = np.column_stack([self.tags[slot, held].astype(np.int64), self.counts[slot, held].astype(np.int64)])
            out[account] = [int(self.first[slot]), rows[np.argsort(rows[:, 0])].tolist()]
        return out

    def restore(self, section: Mapping[str, Sequence[Any]]) -> None:
        """Load a ``section`` (as written by ``section``; rows of another column count are skipped) into this
        (empty) ring; a narrower ring keeps each account's newest minutes."""
        rows = [(a, row) for a, (_, held) in section.items() for row in held if len(row) == self.columns + 1]
        if not rows:
            return
        values = np.asarray([r for _, r in rows], np.int64)
        self._set(self.slots_of(a for a, _ in rows), values[:, 0], values[:, 1:].astype(np.uint32))
        kept = [a for a in section if a in self.slots]
        self.first[self.slots_of(kept)] = [int(section[a][0]) for a in kept]

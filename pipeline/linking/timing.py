"""Per-account calls per minute, the last few dozen minutes of them, in NumPy arrays: the input of ``sync``.

The detect worker's account updates carry the calls of every frame it closed (account,
minute, calls; ``messages.AccountUpdates``). ``CountRing`` keeps, per account, a ring of
``width`` cells indexed by ``minute % width``, each cell tagged with the minute it holds, so
a cell left over from an older minute reads as 0 and a late or repeated frame lands in its
own cell (setting, not adding: a batch re-read after a crash sends the same frames again and
changes nothing). Memory is ``width × 6`` bytes per account (uint16 counts, int32 tags), for
the accounts active in the last ``width`` minutes only: ``evict`` frees the others' slots.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

_MAX_COUNT = np.iinfo(np.uint16).max  # calls of one account in one minute, clipped
_MAX_COUNTER = np.iinfo(np.uint32).max  # CounterRing's cells (tokens of one account in one minute), clipped


class CountRing:
    """Ring of per-minute call counts per account (slots reused once an account goes quiet)."""

    def __init__(self, width: int, capacity: int = 64) -> None:
        if width < 2:
            raise ValueError("a ring needs at least two cells")
        self.width = width
        self.slots: dict[str, int] = {}
        self.names: list[str] = []  # slot -> account ("" when free)
        self.free: list[int] = []
        self.counts = np.zeros((capacity, width), np.uint16)
        self.tags = np.full((capacity, width), -1, np.int32)  # the minute each cell holds (-1: none)
        self.last = np.full(capacity, -1, np.int32)  # newest minute per slot (-1: free)
        self.first = np.full(capacity, -1, np.int32)  # the slot's first frame: earlier minutes are unknown

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

    def put(self, slots: np.ndarray, minute: int, calls: np.ndarray) -> None:
        """Frames of one ``minute`` (one per slot). A cell holding a newer minute is kept (the frame is too
        old for the ring); the same minute again is overwritten (idempotent)."""
        cell = minute % self.width
        newer = self.tags[slots, cell] <= minute
        slots = slots[newer]
        self.counts[slots, cell] = np.minimum(calls[newer], _MAX_COUNT)
        self.tags[slots, cell] = minute
        self.last[slots] = np.maximum(self.last[slots], minute)
        first = self.first[slots]
        self.first[slots] = np.where((first < 0) | (first > minute), minute, first)

    def active(self, since: int) -> np.ndarray:
        """Slots seen since ``since`` or earlier (known over the whole span) with a frame at ``since`` or later."""
        n = len(self.names)
        return np.flatnonzero((self.last[:n] >= since) & (self.first[:n] <= since) & (self.first[:n] >= 0))

    def window(self, slots: np.ndarray, start: int, length: int) -> np.ndarray:
        """Calls per minute of ``slots`` over minutes ``start .. start + length - 1`` as a float array
        ``[len(slots), length]``: 0 where no frame, NaN before the slot's first frame (unknown: the account
        was not seen yet, or the process started since). The ring must still hold them: ``length <= width``."""
        minutes = np.arange(start, start + length, dtype=np.int32)
        cells = minutes % self.width
        held = self.tags[np.ix_(slots, cells)] == minutes
        out = np.where(held, self.counts[np.ix_(slots, cells)], 0).astype(np.float64)
        out[minutes[None, :] < self.first[slots, None]] = np.nan
        return out

    def evict(self, before: int) -> int:
        """Free the slots whose newest frame is older than ``before``; how many."""
        idle = np.flatnonzero((self.last[: len(self.names)] < before) & (self.last[: len(self.names)] >= 0))
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
        """Account -> ``[first minute, [calls per minute ...], first frame]``, the calls up to its newest
        frame (JSON-able)."""
        out: dict[str, list[Any]] = {}
        if not self.slots:
            return out
        slots = np.fromiter(self.slots.values(), dtype=np.int64, count=len(self.slots))
        last = self.last[slots].astype(np.int64)
        minutes = last[:, None] - np.arange(self.width - 1, -1, -1)  # oldest first
        cells = minutes % self.width
        rows = np.take_along_axis(self.tags[slots], cells, 1) == minutes
        counts = np.where(rows, np.take_along_axis(self.counts[slots], cells, 1), 0)
        nonzero = counts > 0
        first = np.where(nonzero.any(1), nonzero.argmax(1), self.width - 1)
        seen = self.first[slots].tolist()
        for account, row, lead, newest, since in zip(self.slots, counts.tolist(), first.tolist(), last.tolist(),
                                                     seen, strict=True):
            out[account] = [newest - (self.width - 1) + lead, row[lead:], since]
        return out

    def restore(self, section: Mapping[str, Sequence[Any]]) -> None:
        """Load a ``section`` (as written by ``section``) into this (empty) ring; an entry longer than the ring
        (a narrower window configured since) keeps its newest minutes."""
        if not section:
            return
        slots = self.slots_of(section)
        firsts = np.fromiter((int(v[0]) for v in section.values()), dtype=np.int64, count=len(section))
        lengths = np.fromiter((len(v[1]) for v in section.values()), dtype=np.int64, count=len(section))
        calls = np.fromiter((int(c) for v in section.values() for c in v[1]), dtype=np.int64, count=int(lengths.sum()))
        last = firsts + lengths - 1
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        minute = np.repeat(firsts, lengths) + np.arange(len(calls)) - starts
        owner = np.repeat(slots, lengths)
        kept = minute > np.repeat(last, lengths) - self.width
        owner, minute, calls = owner[kept], minute[kept], calls[kept]
        self.counts[owner, minute % self.width] = np.minimum(calls, _MAX_COUNT)
        self.tags[owner, minute % self.width] = minute
        self.last[slots] = last
        self.first[slots] = np.fromiter((int(v[2]) if len(v) > 2 else int(v[0]) for v in section.values()),
                                        dtype=np.int64, count=len(section))


class CounterRing(CountRing):
    """Ring of several additive counters per minute per account (``columns`` of them, uint32, clipped): the
    pooled cluster evidence's input (``pooled``). Slots, tags and eviction as ``CountRing``; memory
    ``width × (4 × columns + 4)`` bytes per account."""

    def __init__(self, width: int, columns: int, capacity: int = 64) -> None:
        super().__init__(width, capacity)
        self.columns = columns
        self.counts = np.zeros((capacity, width, columns), np.uint32)  # type: ignore[assignment]

    def put_many(self, slots: np.ndarray, minutes: np.ndarray, values: np.ndarray) -> None:
        """Frames of any minutes (``values`` ``[n, columns]``): each sets its cell unless the cell holds a newer
        minute; the same minute again is overwritten (idempotent)."""
        order = np.argsort(minutes, kind="stable")  # a later minute of the same cell is written last
        slots, minutes, values = slots[order], np.asarray(minutes, np.int64)[order], values[order]
        cells = minutes % self.width
        newer = self.tags[slots, cells] <= minutes
        slots, minutes, cells, values = slots[newer], minutes[newer], cells[newer], values[newer]
        self.counts[slots, cells] = np.minimum(values, _MAX_COUNTER).astype(np.uint32)
        self.tags[slots, cells] = minutes
        np.maximum.at(self.last, slots, minutes.astype(np.int32))
        self.first[slots[self.first[slots] < 0]] = np.iinfo(np.int32).max
        np.minimum.at(self.first, slots, minutes.astype(np.int32))

    def matrix(self, slots: np.ndarray, start: int, length: int) -> np.ndarray:
        """Counters of ``slots`` over minutes ``start .. start + length - 1``: float64 ``[len(slots), length,
        columns]``, 0 where the ring holds no frame of that minute."""
        minutes = np.arange(start, start + length, dtype=np.int64)
        cells = minutes % self.width
        held = self.tags[np.ix_(slots, cells)] == minutes
        return np.where(held[..., None], self.counts[np.ix_(slots, cells)], 0).astype(np.float64)

    def section(self) -> dict[str, list[Any]]:
        """Account -> ``[[minute, c1, c2, ...], ...]``, the minutes it holds (JSON-able)."""
        out: dict[str, list[Any]] = {}
        for account, slot in self.slots.items():
            held = np.flatnonzero(self.tags[slot] >= 0)
            rows = np.column_stack([self.tags[slot, held].astype(np.int64), self.counts[slot, held].astype(np.int64)])
            out[account] = rows[np.argsort(rows[:, 0])].tolist()
        return out

    def restore(self, section: Mapping[str, Sequence[Any]]) -> None:
        """Load a ``section`` (as written by ``section``; rows of another column count are skipped)."""
        rows = [(account, row) for account, held in section.items() for row in held if len(row) == self.columns + 1]
        if not rows:
            return
        slots = self.slots_of(a for a, _ in rows)
        values = np.asarray([r for _, r in rows], np.int64)
        self.put_many(slots, values[:, 0], values[:, 1:])

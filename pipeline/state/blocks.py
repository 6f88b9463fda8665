"""BlockIndex: where each entity of one keyed store lives in the state topic.

An entity is placed once, when first checkpointed: partition ``p`` (its
``slot_part``) and the next free *ordinal* of ``p``; its block is
``ordinal // size``. The place is stable for as long as the state of ``p``
exists, including across restores (the block records carry the ordinals), so a
block key always names the same members and rewriting a block whole keeps
compaction safe. Slots are this process's (``AccountRegistry``); everything here
is vectorised over slots.
"""

from __future__ import annotations

import numpy as np

NONE = -1


class BlockIndex:
    def __init__(self, size: int) -> None:
        self.size = size
        self.part = np.full(0, NONE, np.int32)  # slot -> partition of its place
        self.ordinal = np.full(0, NONE, np.int64)  # slot -> ordinal in that partition
        self._slots: dict[int, np.ndarray] = {}  # partition -> slot of each ordinal (NONE: a hole)
        self._next: dict[int, int] = {}  # partition -> first ordinal never used

    def _grow(self, n_slots: int) -> None:
        if n_slots > len(self.part):
            n = max(n_slots, 2 * len(self.part), 1024)
            self.part = np.concatenate([self.part, np.full(n - len(self.part), NONE, np.int32)])
            self.ordinal = np.concatenate([self.ordinal, np.full(n - len(self.ordinal), NONE, np.int64)])

    def _put(self, part: int, ordinals: np.ndarray, slots: np.ndarray) -> None:
        if not len(slots):
            return
        need = int(ordinals.max()) + 1
        by_ordinal = self._slots.get(part, np.full(0, NONE, np.int64))
        if need > len(by_ordinal):
            grown = np.full(max(need, 2 * len(by_ordinal)), NONE, np.int64)
            grown[:len(by_ordinal)] = by_ordinal
            by_ordinal = self._slots[part] = grown
        by_ordinal[ordinals] = slots
        self.part[slots] = part
        self.ordinal[slots] = ordinals
        self._next[part] = max(self._next.get(part, 0), need)

    def _release(self, slots: np.ndarray) -> set[tuple[int, int]]:
        """Take placed ``slots`` out of their blocks; returns those blocks (they must be rewritten)."""
        lost: set[tuple[int, int]] = set()
        for p in np.unique(self.part[slots]).tolist():
            mine = slots[self.part[slots] == p]
            ordinals = self.ordinal[mine]
            self._slots[p][ordinals] = NONE
            lost.update((p, b) for b in np.unique(ordinals // self.size).tolist())
        self.part[slots] = NONE
        self.ordinal[slots] = NONE
        return lost

    def place(self, slots: np.ndarray, parts: np.ndarray) -> set[tuple[int, int]]:
        """Give ``slots`` (unique) in partitions ``parts`` a place, if they lack one there.

        New places take the next ordinals in the order of ``slots``. A slot placed in
        another partition moves; returns the blocks it left (to be rewritten without it).
        """
        slots = np.asarray(slots, np.int64)
        parts = np.asarray(parts, np.int32)
        if not len(slots):
            return set()
        self._grow(int(slots.max()) + 1)
        placed = self.part[slots]
        moved = (placed != NONE) & (placed != parts)
        lost = self._release(slots[moved]) if moved.any() else set()
        new = self.part[slots] == NONE
        for p in np.unique(parts[new]).tolist():
            mine = slots[new & (parts == p)]
            first = self._next.get(p, 0)
            self._put(p, np.arange(first, first + len(mine), dtype=np.int64), mine)
        return lost

    def restore(self, part: int, ordinals: np.ndarray, slots: np.ndarray) -> set[tuple[int, int]]:
        """Put ``slots`` at the ordinals a checkpoint gave them.

        Returns the previous blocks of slots already placed (an entity listed twice:
        the later record wins, the earlier block must be rewritten without it).
        Raises ValueError when an ordinal is taken by another slot.
        """
        slots = np.asarray(slots, np.int64)
        ordinals = np.asarray(ordinals, np.int64)
        if not len(slots):
            return set()
        self._grow(int(slots.max()) + 1)
        placed = self.part[slots] != NONE
        lost = self._release(slots[placed]) if placed.any() else set()
        taken = self._slots.get(part, np.full(0, NONE, np.int64))
        inside = ordinals[ordinals < len(taken)]
        if (taken[inside] != NONE).any():
            raise ValueError(f"partition {part}: ordinals {inside[taken[inside] != NONE][:5].tolist()} are taken")
        self._put(part, ordinals, slots)
        return lost

    def blocks_of(self, slots: np.ndarray) -> set[tuple[int, int]]:
        """The (partition, block) of placed ``slots``."""
        slots = np.asarray(slots, np.int64)
        slots = slots[self.part[slots] != NONE] if len(slots) else slots
        codes = np.unique((self.part[slots].astype(np.int64) << 40) | (self.ordinal[slots] // self.size))
        return {(int(c >> 40), int(c & ((1 << 40) - 1))) for c in codes.tolist()}

    def members(self, part: int, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Ordinals and slots of the members of one block, in ordinal order."""
        by_ordinal = self._slots.get(part, np.full(0, NONE, np.int64))
        lo = block * self.size
        window = by_ordinal[lo:lo + self.size]
        present = np.flatnonzero(window != NONE)
        return present + lo, window[present]

    def places(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Partition and ordinal of each slot (NONE where unplaced)."""
        slots = np.asarray(slots, np.int64)
        self._grow(int(slots.max()) + 1 if len(slots) else 0)
        return self.part[slots], self.ordinal[slots]

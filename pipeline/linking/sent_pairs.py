"""SentPairs: which (feature, account) pairs this publisher has already sent to stage A.

Stage A ignores a member it already holds, and an account's features barely change between
batches, so the publisher drops pairs already sent before packing. A lossy two-way
set-associative table of 64-bit pair keys with LRU replacement, vectorised in NumPy, fixed
memory ``8 << slots_log2`` bytes. Invariant: forgetting a pair only re-sends it (stage A ignores
it); a wrong "sent" needs two pairs with one 64-bit key. Why two ways: docs/linking.md
("Topology": Only new pairs are sent).
"""

from __future__ import annotations

import numpy as np

DEFAULT_SLOTS_LOG2 = 21


class SentPairs:
    def __init__(self, slots_log2: int = DEFAULT_SLOTS_LOG2) -> None:
        if slots_log2 < 1:
            raise ValueError("SentPairs needs at least one bucket of two slots (slots_log2 >= 1)")
        self.table = np.zeros((1 << (slots_log2 - 1), 2), np.uint64)  # [bucket, way]; way 0 most recent
        self.shift = np.uint64(64 - (slots_log2 - 1))
        self.seen = 0  # pairs offered
        self.skipped = 0  # pairs found already sent

    def take_new(self, keys: np.ndarray) -> np.ndarray:
        """Mask of the pair ``keys`` (uint64, distinct; ``observations.Pairs.key``) not sent before; marks them sent."""
        keys = keys | np.uint64(1)  # 0 marks an empty slot
        # The top bits pick the bucket: a multiplicative hash mixes best into them.
        bucket = (keys >> self.shift).astype(np.int64) if self.shift < 64 else np.zeros(len(keys), np.int64)
        recent, older = self.table[bucket, 0], self.table[bucket, 1]
        new = (recent != keys) & (older != keys)
        # A hit in way 1 and a new key both become way 0, pushing way 0 down (LRU of two).
        moved = np.flatnonzero(new | (older == keys))
        self.table[bucket[moved], 1] = recent[moved]
        self.table[bucket[moved], 0] = keys[moved]
        self.seen += len(keys)
        self.skipped += len(keys) - int(new.sum())
        return new

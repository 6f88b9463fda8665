"""SentPairs: which (feature, account) pairs this publisher has already sent to stage A.

Stage A ignores a member it already holds (``membership``: observing again changes
nothing), and an account's features barely change from batch to batch (its /24, its
card, its SDK, its ASN), so after an account's first batch nearly every observation
would be a no-op that still costs packing, a Kafka message and stage A's time. The
publisher drops those before packing.

A lossy table of 64-bit pair keys, vectorised in NumPy: two-way set-associative
with least-recently-used replacement (a bucket of two slots, the most recent
first), so two steady pairs landing in one bucket do not evict each other on
every batch as they would in a direct-mapped table (at 20% load about one pair in
ten shares its slot). A pair is "sent" only when its key is in its bucket.
Forgetting (an eviction, two keys of one bucket in one call, a restart, a
partition moving to another worker) only means sending a pair again, which stage
A ignores; a wrong "sent" needs two pairs with one 64-bit key. Fixed memory:
``8 << slots_log2`` bytes (16 MB by default).
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

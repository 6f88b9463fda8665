"""SentPairs: which (feature, account) pairs this publisher has already sent to stage A.

Stage A ignores a member it already holds (``membership``: observing again changes
nothing), and an account's features barely change from batch to batch (its /24, its
card, its SDK, its ASN), so after an account's first batch nearly every observation
would be a no-op that still costs packing, a Kafka message and stage A's time. The
publisher drops those before packing.

A lossy, direct-mapped table of 64-bit pair keys, vectorised in NumPy: a pair is
"sent" only when its key is in its slot. Forgetting (a slot overwritten, a restart,
a partition moving to another worker) only means sending a pair again, which stage A
ignores; a wrong "sent" needs two pairs with one 64-bit key. Fixed memory:
``8 << slots_log2`` bytes (16 MB by default).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_SLOTS_LOG2 = 21
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant: spreads feature hashes before the xor


def _hashes(values: Sequence[str]) -> np.ndarray:
    # Python's str hash: computed in C, cached on each string; stable within this process,
    # which is all an in-memory table needs.
    return np.fromiter(map(hash, values), np.int64, len(values)).view(np.uint64)


class SentPairs:
    def __init__(self, slots_log2: int = DEFAULT_SLOTS_LOG2) -> None:
        self.table = np.zeros(1 << slots_log2, np.uint64)
        self.mask = np.uint64((1 << slots_log2) - 1)
        self.seen = 0  # pairs offered
        self.skipped = 0  # pairs found already sent

    def take_new(self, features: Sequence[str], accounts: Sequence[str], feature_index: np.ndarray,
                 account_index: np.ndarray) -> np.ndarray:
        """Mask of the (feature, account) rows not sent before; marks them sent (rows must be distinct)."""
        keys = (_hashes(features)[feature_index] * _MIX) ^ _hashes(accounts)[account_index]
        keys |= np.uint64(1)  # 0 marks an empty slot
        slots = (keys & self.mask).astype(np.int64)
        new = self.table[slots] != keys
        self.table[slots[new]] = keys[new]
        self.seen += len(keys)
        self.skipped += len(keys) - int(new.sum())
        return new

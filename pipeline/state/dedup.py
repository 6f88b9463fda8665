"""Duplicate suppression: an event already seen in the recent offsets of its partition counts once.

``RecentEvents`` drops an event when the same ``(account_id, ts, event_id)`` occurred at an offset in
``[o - window, o]`` of its partition (a batch container's events share its offset). The rule depends
only on the partition's log, so after a restart the window is rebuilt by re-reading it
(``StateManager._rebuild_dedup``): nothing to checkpoint. One 64-bit hash and offset per recent event.
docs/operations.md, "Failures" ("Duplicates").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.decode.json_events import DecodedBatch

# Reason recorded in rejected_events for a dropped copy (not dead-lettered: a resend is not bad input).
DUPLICATE = "duplicate"


class RecentEvents:
    """Per-partition windows of recent event keys. ``window`` 0 switches suppression off."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._seen: dict[int, dict[int, int]] = {}  # partition -> key hash -> last offset
        self._low: dict[int, int] = {}  # partition -> lowest offset that may still be in _seen

    def partitions(self) -> set[int]:
        return set(self._seen)

    def drop_partitions(self, parts: set[int]) -> None:
        for p in parts:
            self._seen.pop(p, None)
            self._low.pop(p, None)

    def duplicates(self, decoded: DecodedBatch) -> np.ndarray:
        """Mark rows whose key is in their partition's window (bool per row), then add every row to it.

        Rows must come in log order within each partition (a fetched batch does).
        """
        n = len(decoded)
        dup = np.zeros(n, np.bool_)
        if not self.window or n == 0:
            return dup
        raw = decoded.raw
        parts = np.asarray(raw["kafka_partition"], np.int64)
        offsets = np.asarray(raw["kafka_offset"], np.int64)
        keys = list(map(hash, zip(decoded.account_ids, np.asarray(raw["ts"]).tolist(), raw["event_id"],
                                  strict=True)))
        for p in np.unique(parts).tolist():
            rows = np.flatnonzero(parts == p)
            self._check(p, rows.tolist(), offsets[rows].tolist(), keys, dup)
        return dup

    def _check(self, part: int, rows: list[int], offsets: list[int], keys: list[int], dup: np.ndarray) -> None:
        seen = self._seen.setdefault(part, {})
        get = seen.get
        window = self.window
        for row, offset in zip(rows, offsets, strict=True):
            key = keys[row]
            last = get(key)
            if last is not None and last >= offset - window:
                dup[row] = True
            seen[key] = offset
        self._prune(part, offsets[-1] - window)

    def _prune(self, part: int, low: int) -> None:
        # Amortised: rebuild the dict once the oldest entries fall a whole window behind.
        if low - self._low.get(part, low) < self.window:
            self._low.setdefault(part, low)
            return
        seen = self._seen[part]
        self._seen[part] = {k: o for k, o in seen.items() if o >= low}
        self._low[part] = low


def without_rows(decoded: DecodedBatch, drop: np.ndarray) -> DecodedBatch:
    """``decoded`` minus the rows where ``drop`` is True (columns keep their kinds; rejects kept)."""
    if not drop.any():
        return decoded
    keep = ~drop
    index = np.flatnonzero(keep).tolist()

    def take(column: Sequence[object] | np.ndarray) -> Sequence[object] | np.ndarray:
        if isinstance(column, np.ndarray):
            return column[keep]
        return [column[i] for i in index]

    return DecodedBatch(
        [decoded.account_ids[i] for i in index],
        {name: col[keep] for name, col in decoded.kernel.items()},
        {name: take(col) for name, col in decoded.raw.items()},
        decoded.rejects,
    )

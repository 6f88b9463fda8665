"""Per-partition progress: lag, and partitions that stopped moving while messages wait.

The source feeds this watch with each assigned partition's position and high watermark; a partition
whose lag stays above zero with no progress for ``stall_after_s`` is *stalled*. Time blocked by
back-pressure never counts as a stall. Pure bookkeeping, no Kafka here. docs/operations.md, "Failures".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Partition:
    position: int
    lag: int
    moved_at: float  # monotonic time the position last changed (or lag was 0)


class ProgressWatch:
    def __init__(self, stall_after_s: float) -> None:
        self.stall_after_s = stall_after_s
        self._parts: dict[int, _Partition] = {}
        self.stalled: set[int] = set()

    def observe(self, partition: int, position: int, highwater: int | None, now: float) -> None:
        """Record one partition's state; ``highwater`` None means no fetch answered yet."""
        lag = max(0, (highwater if highwater is not None else position) - position)
        seen = self._parts.get(partition)
        if seen is None or seen.position != position or lag == 0:
            self._parts[partition] = _Partition(position, lag, now)
        else:
            seen.lag = lag

    def blocked(self, now: float) -> None:
        """Back-pressure held the source: nobody was expected to move, restart every clock."""
        for p in self._parts.values():
            p.moved_at = now

    def keep_only(self, partitions: set[int], now: float) -> None:
        """After a rebalance: forget lost partitions; clocks of kept ones start again."""
        self._parts = {p: _Partition(s.position, s.lag, now) for p, s in self._parts.items() if p in partitions}
        self.stalled &= partitions

    def evaluate(self, now: float) -> tuple[set[int], set[int]]:
        """Returns (newly stalled, newly recovered) partitions and updates ``stalled``."""
        stalled = {p for p, s in self._parts.items() if s.lag > 0 and now - s.moved_at >= self.stall_after_s}
        new, recovered = stalled - self.stalled, self.stalled - stalled
        self.stalled = stalled
        return new, recovered

    def lags(self) -> dict[int, int]:
        return {p: s.lag for p, s in sorted(self._parts.items())}

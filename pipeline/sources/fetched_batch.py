"""FetchedBatch: whole fetches from Kafka, handed to the detect step as one item.

Moving a fetch as one object (lists of raw values, partitions, offsets) instead
of one Faust event per message is what lets the hot path run at fetch speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class FetchedBatch:
    values: list[bytes]
    keys: list[bytes | None]
    partitions: list[int]
    offsets: list[int]
    # Offsets to commit once this batch's effects are written: partition -> next offset.
    commit_offsets: dict[int, int]
    fetched_at: float  # wall clock, seconds
    # True on the last item of bounded input: close every frame, then stop.
    drain: bool = False
    # Partitions with messages still waiting when the batch was cut (how far the input is read:
    # FrameStore.read_up_to_ms); empty when all are read, or not known.
    behind: frozenset[int] = frozenset()
    _ack: Callable[[FetchedBatch], Awaitable[None]] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def __len__(self) -> int:
        """Messages in the batch; still counted after ``release_messages``."""
        return len(self.offsets)

    def release_messages(self) -> None:
        """Drop the raw values and keys once the batch is decoded: only its offsets are needed until
        the commit, and at replay speed the raw bytes of batches waiting for it were 100+ MB."""
        self.values = []
        self.keys = []

    async def ack(self) -> None:
        """The batch's effects are durable: commit its offsets (in order, by the source)."""
        if self._ack is not None:
            await self._ack(self)
        self.done.set()

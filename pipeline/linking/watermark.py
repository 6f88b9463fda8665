"""How far in event time the linking process has every detect source's evidence (its watermark).

Why: a cluster alert is due at its members' qualifying time plus ``for``, in event time, and stage B
fires it as soon as its evidence reaches that time. But the evidence that makes the cluster another
(the observation linking a fleet's two halves) may not be read yet: a detect worker reads its event
partitions at different speeds, and the linking process reads the observations partitions and the
edges topic with one consumer, so one input can run minutes of event time ahead of another. Stage B
then sees a fragment that never was one and pages it under its own id. So a cluster alert fires at
an event time only once every input is known complete up to it (Flink's and Kafka Streams' rule:
the minimum over the inputs).

- Each detect batch's messages carry ``wm`` (messages version 4): how far the source has read its
  events (``FrameStore.read_up_to_ms``: the newest event of its least-read partition that still has
  messages waiting, else its newest event). The publisher sends every observations partition a
  message per batch (an empty one where the batch has no observations there), so every input carries
  every batch's ``wm``.
- A source's watermark is the least over the inputs of the latest ``wm`` read there from it: an input
  read behind the others holds it back. An input where the source sent its end marker, or one never
  carrying a ``wm`` of it and read to its end, holds nothing back; one with messages waiting and no
  ``wm`` of the source read yet holds it back entirely.
- The watermark is the least over the sources; one none of whose messages was read for ``idle_s`` is
  forgotten (a worker that stopped, or restarted under a new source id), and so is one whose end
  markers are all read. ``None``: no source stamps its messages (older workers): nothing is held.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Hashable

IDLE_S = 30.0  # wall seconds without a message after which a source no longer holds the watermark back
HOLD = -(2**62)  # a source's watermark while an input with messages waiting has given none of its wm


class InputWatermark:
    def __init__(self, idle_s: float = IDLE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.clock = clock
        self._wm: dict[str, dict[Hashable, int]] = {}  # source -> input -> latest wm read there
        self._ended: dict[str, set[Hashable]] = {}  # source -> inputs it sent its end marker to
        self._heard: dict[str, float] = {}  # source -> when its latest message was read (clock)

    def observe(self, src: str, source_input: Hashable, wm: int | None) -> None:
        """A message of ``src`` read from ``source_input``, stamped ``wm`` (None: an older message).
        Messages of one input are read in the order sent: the latest is the newest."""
        if wm is not None:
            self._wm.setdefault(src, {})[source_input] = wm
        if src in self._wm:
            self._heard[src] = self.clock()

    def end(self, src: str, source_input: Hashable) -> None:
        """``src``'s end marker read from ``source_input``: nothing more of it comes there."""
        if src in self._wm:
            self._ended.setdefault(src, set()).add(source_input)
            self._heard[src] = self.clock()

    def value(self, inputs: Collection[Hashable], caught_up: Callable[[Hashable], bool]) -> int | None:
        """The event time up to which every source's evidence is read, over ``inputs``; ``caught_up(i)``:
        nothing waits in input ``i``. None when no source holds it back."""
        now = self.clock()
        for src in [s for s, heard in self._heard.items()
                    if now - heard >= self.idle_s or set(inputs) <= self._ended.get(s, set())]:
            del self._wm[src], self._heard[src]
            self._ended.pop(src, None)
        low: int | None = None
        for src, seen in self._wm.items():
            ended = self._ended.get(src, set())
            for i in inputs:
                if i in ended:
                    continue
                w = seen.get(i)
                if w is None and not caught_up(i):
                    w = HOLD
                if w is not None:
                    low = w if low is None else min(low, w)
        return low

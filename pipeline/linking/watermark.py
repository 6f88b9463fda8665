"""How far in event time the linking process has every detect source's evidence (its watermark).

A cluster alert fires at an event time only once every input is known complete up to it: the least
over the sources of the least over the inputs of the latest ``wm`` read there (Flink's and Kafka
Streams' rule). Why, and the rules for end markers, idle sources and unstamped inputs:
docs/linking.md, "The inputs' watermark".
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

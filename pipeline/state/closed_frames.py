"""ClosedFrames: a batch of finished account-minute frames, the frame kernels' output and scoring's input.

Apart from ``pipeline.state.frames`` (which re-exports it) because that module drives the Numba
kernels: the linking process builds ClosedFrames for the pooled evidence's scoring and must not load
Numba and LLVM for it (about 65 MB resident: docs/benchmarks.md, "Replay").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.kernels.layout import N_COUNTERS, N_DISTINCT, N_FLOATS, N_WINDOW_Q, N_WINDOWS


@dataclass(frozen=True)
class ClosedFrames:
    """Frames that will not change any more: one row per (account slot, minute)."""

    slot: np.ndarray  # int32
    minute: np.ndarray  # int64, minutes since the epoch (event time)
    counters: np.ndarray  # int64 [rows, N_COUNTERS], see kernels.layout
    floats: np.ndarray  # float64 [rows, N_FLOATS]
    distinct: np.ndarray  # int64 [rows, N_DISTINCT]: prompts, IPs, user agents, ASNs, topics
    windows: np.ndarray  # float32 [rows, N_WINDOWS, N_WINDOW_Q], after folding this frame

    def __len__(self) -> int:
        return int(self.slot.shape[0])

    def take(self, index: np.ndarray | slice) -> ClosedFrames:
        return ClosedFrames(self.slot[index], self.minute[index], self.counters[index], self.floats[index],
                            self.distinct[index], self.windows[index])

    @staticmethod
    def concat(parts: list[ClosedFrames]) -> ClosedFrames:
        parts = [p for p in parts if len(p)]
        if not parts:
            return empty_closed_frames(0)
        if len(parts) == 1:
            return parts[0]
        return ClosedFrames(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                              ("slot", "minute", "counters", "floats", "distinct", "windows")))


def empty_closed_frames(rows: int) -> ClosedFrames:
    return ClosedFrames(
        slot=np.empty(rows, np.int32),
        minute=np.empty(rows, np.int64),
        counters=np.empty((rows, N_COUNTERS), np.int64),
        floats=np.empty((rows, N_FLOATS), np.float64),
        distinct=np.empty((rows, N_DISTINCT), np.int64),
        windows=np.empty((rows, N_WINDOWS, N_WINDOW_Q), np.float32),
    )

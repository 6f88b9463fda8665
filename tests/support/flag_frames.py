"""One account's closed frames from per-call flags (one partition, no lateness): for share and signal tests."""

from __future__ import annotations

import numpy as np

from pipeline.state.frames import EVENT_COLUMNS, ClosedFrames, FrameStore

T0 = 1_770_000_000_000


def flagged_frames(flags: np.ndarray, every_ms: int, **columns: int) -> ClosedFrames:
    """Calls ``every_ms`` apart carrying ``flags`` (one per call) and constant ``columns`` (e.g. token counts)."""
    n = len(flags)
    cols: dict[str, np.ndarray] = {name: np.zeros(n, dtype) for name, dtype in EVENT_COLUMNS.items()}
    cols["ts_ms"] = T0 + np.arange(n, dtype=np.int64) * every_ms
    cols["temperature"] = np.full(n, np.nan, np.float32)
    for name, value in columns.items():
        cols[name][:] = value
    cols["flags"] = np.asarray(flags, np.uint16)
    store = FrameStore(n_partitions=1, allowed_lateness_ms=0, max_accounts=2)
    store.ensure_slots(1)
    evicted, _ = store.ingest(cols)
    return ClosedFrames.concat([evicted, store.close_frames(force=True)])

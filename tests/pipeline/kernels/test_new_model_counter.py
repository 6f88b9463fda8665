"""The new-model flag bit (bit 9 of the uint16 flags) counted per frame (random bits against the reference:
test_client_mismatch_counter.py)."""

from __future__ import annotations

import numpy as np

from pipeline.kernels import layout as L
from pipeline.state.frames import EVENT_COLUMNS, FrameStore


def test_only_flagged_calls_are_counted_per_frame() -> None:
    n = 120  # one account, one call a second: minutes 0 and 1
    cols: dict[str, np.ndarray] = {name: np.zeros(n, dtype) for name, dtype in EVENT_COLUMNS.items()}
    cols["ts_ms"] = 1_770_000_000_000 + np.arange(n, dtype=np.int64) * 1000
    cols["temperature"] = np.full(n, np.nan, np.float32)
    new = np.arange(n) >= 75  # moved to the new model 75 s in
    cols["flags"] = np.where(new, L.FLAG_NEW_MODEL | L.FLAG_CLIENT_MISMATCH, L.FLAG_CLIENT_MISMATCH).astype(np.uint16)
    store = FrameStore(n_partitions=1, allowed_lateness_ms=60_000, max_accounts=4)
    store.ensure_slots(1)
    evicted, _ = store.ingest(cols)
    frames = store.close_frames(force=True)
    assert len(evicted) == 0 and len(frames) == 2
    assert frames.counters[:, L.NEW_MODEL_CALLS].tolist() == [0, 45]
    assert frames.counters[:, L.CLIENT_MISMATCH_CALLS].tolist() == [60, 60]  # the neighbouring bit is intact
    assert L.COUNTER_NAMES[L.NEW_MODEL_CALLS] == "new_model_calls" and L.NEW_MODEL_CALLS == L.N_COUNTERS - 1

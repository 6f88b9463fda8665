"""The flag bits above the first byte (client mismatch, new model: flags are uint16) through the frame kernel and
its reference."""

from __future__ import annotations

import numpy as np

from pipeline.kernels import layout as L
from pipeline.kernels.reference import ReferenceFrames
from pipeline.state.frames import EVENT_COLUMNS, FrameStore
from tests.support.kernel_events import as_rows, random_events


def _store(n_accounts: int) -> FrameStore:
    store = FrameStore(n_partitions=2, allowed_lateness_ms=60_000, max_accounts=64)
    store.ensure_slots(n_accounts)
    return store


def test_flags_above_the_first_byte_reach_the_kernel_and_equal_the_reference() -> None:
    # bit 8 (client mismatch) and bit 9 (new model, pipeline/decode/model_release.py)
    assert EVENT_COLUMNS["flags"] == np.uint16 and 255 < L.FLAG_CLIENT_MISMATCH < L.FLAG_NEW_MODEL
    rng = np.random.default_rng(11)
    n, n_accounts = 3000, 13
    events = random_events(rng, n, n_accounts, 2)
    events["flags"] = rng.integers(0, 2 * L.FLAG_NEW_MODEL, n).astype(np.uint16)  # every bit at random
    store = _store(n_accounts)
    evicted, late = store.ingest(events)
    got = as_rows(evicted) | as_rows(store.close_frames(force=True))
    ref = ReferenceFrames(lateness_ms=60_000, n_partitions=2)
    ref_late = ref.ingest([{k: events[k][i] for k in EVENT_COLUMNS} for i in range(n)])
    assert got == set(ref.close(force=True)) and late == ref_late
    mismatch = sum(row[2][L.CLIENT_MISMATCH_CALLS] for row in got)
    new = sum(row[2][L.NEW_MODEL_CALLS] for row in got)
    assert 0 < mismatch < n - late and 0 < new < n - late and new != mismatch  # each its own bit


def test_an_accounts_mismatching_calls_are_counted_per_frame() -> None:
    n = 90  # one account, one call a second: minutes 0 and 1
    cols: dict[str, np.ndarray] = {name: np.zeros(n, dtype) for name, dtype in EVENT_COLUMNS.items()}
    cols["ts_ms"] = 1_770_000_000_000 + np.arange(n, dtype=np.int64) * 1000
    cols["temperature"] = np.full(n, np.nan, np.float32)
    mismatching = np.arange(n) % 3 == 0
    cols["flags"] = np.where(mismatching, L.FLAG_CLIENT_MISMATCH | L.FLAG_STREAM, L.FLAG_STREAM).astype(np.uint16)
    store = _store(1)
    evicted, _ = store.ingest(cols)
    frames = store.close_frames(force=True)
    assert len(evicted) == 0
    per_minute = (cols["ts_ms"] // L.FRAME_MS).astype(np.int64)
    for row in range(len(frames)):
        in_minute = per_minute == frames.minute[row]
        assert frames.counters[row, L.CLIENT_MISMATCH_CALLS] == int((mismatching & in_minute).sum())
        assert frames.counters[row, L.STREAM_CALLS] == int(in_minute.sum())  # the low byte is intact
    assert int(frames.counters[:, L.CLIENT_MISMATCH_CALLS].sum()) == 30
    assert L.COUNTER_NAMES[L.CLIENT_MISMATCH_CALLS] == "client_mismatch_calls"

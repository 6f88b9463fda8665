"""The frame kernel's shortcuts against their plain definitions: bit intrinsics, exact sketch sums, decay table."""

from __future__ import annotations

import numpy as np
from numba import njit

from pipeline.kernels.bits import clz64, popcount64
from pipeline.kernels.hll import hll_estimate, hll_estimate_at
from pipeline.kernels.layout import FRAME_MS
from pipeline.kernels.reference import ReferenceFrames, ref_hll_estimate
from pipeline.state.frames import EVENT_COLUMNS, FrameStore
from tests.support.kernel_events import as_rows, random_events


@njit(cache=True)
def _bits(x: np.uint64) -> tuple[int, int]:
    return popcount64(x), clz64(x)


def test_bit_intrinsics_match_python() -> None:
    rng = np.random.default_rng(3)
    values = [0, 1, 2**63, 2**64 - 1, *rng.integers(0, 2**63, 200, dtype=np.int64).tolist()]
    for x in values:
        assert _bits(np.uint64(x)) == (bin(x).count("1"), 64 - x.bit_length())


def test_estimate_fast_path_and_fallback_equal_the_reference() -> None:
    rng = np.random.default_rng(11)
    for bits in (4, 5, 6, 10):
        m = 1 << bits
        for high in (3, 12, 40, 64 - bits + 1):  # past 52 - bits the ordered float sum is taken
            regs = rng.integers(0, high + 1, m).astype(np.uint8)
            regs[rng.random(m) < 0.3] = 0
            want = ref_hll_estimate(regs.tolist())
            assert hll_estimate(regs) == want
            sketches = np.zeros((2, 3, m + 7), np.uint8)
            sketches[1, 2, 5:5 + m] = regs
            assert hll_estimate_at(sketches, 1, 2, 5, m) == want


def test_long_gaps_between_frames_equal_the_reference() -> None:
    """Frames hours apart (past the decay table) and late, jittered events, in random batches."""
    rng = np.random.default_rng(5)
    n, n_accounts, n_parts = 3000, 23, 2
    events = random_events(rng, n, n_accounts, n_parts)
    # spread over 25 days: an account's frames are from 1 minute to days apart
    events["ts_ms"] = (events["ts_ms"] + np.sort(rng.integers(0, 25 * 1440, n)) * FRAME_MS).astype(np.int64)
    store = FrameStore(n_partitions=n_parts, allowed_lateness_ms=60_000, max_accounts=32, initial_capacity=4)
    store.ensure_slots(n_accounts)
    ref = ReferenceFrames(lateness_ms=60_000, n_partitions=n_parts)
    got: set[tuple] = set()
    want: set[tuple] = set()
    cuts = np.sort(rng.choice(np.arange(1, n), 7, replace=False))
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, n], strict=True):
        batch = {k: v[lo:hi] for k, v in events.items()}
        evicted, late = store.ingest(batch)
        got |= as_rows(evicted) | as_rows(store.close_frames())
        assert late == ref.ingest([{k: batch[k][i] for k in EVENT_COLUMNS} for i in range(hi - lo)])
        want |= set(ref.close())
    got |= as_rows(store.close_frames(force=True))
    want |= set(ref.close(force=True))
    assert got == want
    gaps = np.concatenate([np.diff(np.unique(events["ts_ms"][events["slot"] == s] // FRAME_MS))
                           for s in range(n_accounts)])
    assert gaps.min() < 256 <= gaps.max()  # both the decay table and the exp past it ran

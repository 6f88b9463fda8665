"""The Numba frame kernels against the plain-Python reference, on random inputs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.kernels.hll import hll_add, hll_estimate, mix64
from pipeline.kernels.layout import (
    AS_LAST_TS,
    CALLS,
    COMPLETION_TOKENS,
    N_COUNTERS,
    NO_TIME,
    PROMPT_TOKENS,
    REASONING_TOKENS,
    WATERMARK_ONLY,
)
from pipeline.kernels.reference import (
    ReferenceFrames,
    ref_hll_add,
    ref_hll_estimate,
    ref_mix64,
)
from pipeline.state.frames import EVENT_COLUMNS, ClosedFrames, FrameStore
from tests.support.kernel_events import as_rows, random_events

COLUMNS = tuple(EVENT_COLUMNS)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("lateness_ms", [0, 60_000, 120_000])
def test_kernel_equals_reference_on_random_batches(seed: int, lateness_ms: int) -> None:
    rng = np.random.default_rng(seed)
    n, n_accounts, n_parts = 4000, 37, 3
    events = random_events(rng, n, n_accounts, n_parts)
    store = FrameStore(n_partitions=n_parts, allowed_lateness_ms=lateness_ms, max_accounts=64,
                       initial_capacity=4)
    store.ensure_slots(n_accounts)
    ref = ReferenceFrames(lateness_ms=lateness_ms, n_partitions=n_parts)
    got: set[tuple] = set()
    want: set[tuple] = set()
    cuts = np.sort(rng.choice(np.arange(1, n), 9, replace=False))
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, n], strict=True):
        batch = {k: v[lo:hi] for k, v in events.items()}
        evicted, late = store.ingest(batch)
        got |= as_rows(evicted) | as_rows(store.close_frames())
        ref_late = ref.ingest([{k: batch[k][i] for k in COLUMNS} for i in range(hi - lo)])
        want |= set(ref.close())
        assert late == ref_late
        assert got == want  # the same frames are final at every batch boundary
    got |= as_rows(store.close_frames(force=True))
    want |= set(ref.close(force=True))
    assert got == want
    assert store.late_events == sum(ref.part_late)
    total_calls = sum(row[2][CALLS] for row in got)
    assert total_calls + store.late_events == n  # every event is counted or late
    if lateness_ms == 0:
        assert store.late_events > 0  # the jitter really exercises lateness


@pytest.mark.parametrize("lateness_ms", [0, 120_000])
def test_watermark_only_events_move_the_watermark_and_no_slot(lateness_ms: int) -> None:
    # The API-key store gets every event; those of keys whose frames are their account's
    # come as WATERMARK_ONLY. Its watermarks, late counts and the other slots' frames must
    # be exactly those of a store that folded every event.
    rng = np.random.default_rng(11)
    n, n_parts = 4000, 3
    events = random_events(rng, n, 30, n_parts)
    hidden = events["slot"] % 4 == 0  # these slots' events carry no state
    partial = {**events, "slot": np.where(hidden, WATERMARK_ONLY, events["slot"]).astype(np.int32)}

    def run(columns: dict[str, np.ndarray]) -> tuple[FrameStore, set[tuple], list[int]]:
        store = FrameStore(n_partitions=n_parts, allowed_lateness_ms=lateness_ms, max_accounts=64)
        store.ensure_slots(30)
        rows: set[tuple] = set()
        lates = []
        for lo in range(0, n, 700):
            closed, late = store.ingest({k: v[lo:lo + 700] for k, v in columns.items()})
            rows |= as_rows(closed) | as_rows(store.close_frames())
            lates.append(late)
        return store, rows | as_rows(store.close_frames(force=True)), lates

    full, all_rows, full_late = run(events)
    part, rows, part_late = run(partial)
    assert rows == {r for r in all_rows if r[0] % 4 != 0} and rows
    assert part.part_max_ts.tolist() == full.part_max_ts.tolist()
    assert part.part_late.tolist() == full.part_late.tolist() and part_late == full_late
    assert full.windows[0].any() and not part.windows[0].any()  # slot 0 had only hidden events
    assert part.acct[0, AS_LAST_TS] == NO_TIME != full.acct[0, AS_LAST_TS]
    ref = ReferenceFrames(lateness_ms=lateness_ms, n_partitions=n_parts)
    assert ref.ingest([{k: partial[k][i] for k in COLUMNS} for i in range(n)]) == sum(part_late)
    assert set(ref.close(force=True)) == rows and ref.part_max_ts == part.part_max_ts.tolist()


def test_token_sums_past_32_bits_are_exact() -> None:
    # Counters are uint32 with a carry word per token column: sums past 2**32 stay exact.
    rng = np.random.default_rng(5)
    events = random_events(rng, 600, 3, 1)
    events["ts_ms"] = np.sort(events["ts_ms"])  # nothing late: every token counts
    for name in ("prompt_tokens", "completion_tokens", "reasoning_tokens"):
        events[name] = (np.uint32(2**32 - 1) - rng.integers(0, 3, 600).astype(np.uint32)).astype(np.uint32)
    store = FrameStore(n_partitions=1, allowed_lateness_ms=0, max_accounts=4)
    store.ensure_slots(3)
    closed, _ = store.ingest(events)
    frames = ClosedFrames.concat([closed, store.close_frames(force=True)])
    ref = ReferenceFrames(lateness_ms=0, n_partitions=1)
    ref.ingest([{k: events[k][i] for k in COLUMNS} for i in range(600)])
    assert as_rows(frames) == set(ref.close(force=True))
    for c, name in ((PROMPT_TOKENS, "prompt_tokens"), (COMPLETION_TOKENS, "completion_tokens"),
                    (REASONING_TOKENS, "reasoning_tokens")):
        assert int(frames.counters[:, c].sum()) == int(events[name].astype(np.int64).sum())
    assert int(frames.counters[:, PROMPT_TOKENS].max()) > 2**32 * 10  # well past one 32-bit word


def test_batching_does_not_change_results() -> None:
    rng = np.random.default_rng(42)
    events = random_events(rng, 3000, 20, 2)

    def run(cuts: list[int]) -> set[tuple]:
        store = FrameStore(n_partitions=2, allowed_lateness_ms=60_000, max_accounts=32)
        store.ensure_slots(20)
        rows: set[tuple] = set()
        for lo, hi in zip([0, *cuts], [*cuts, 3000], strict=True):
            evicted, _ = store.ingest({k: v[lo:hi] for k, v in events.items()})
            rows |= as_rows(evicted) | as_rows(store.close_frames())
        return rows | as_rows(store.close_frames(force=True))

    assert run([]) == run([1, 2, 500, 1500, 2999]) == run(list(range(100, 3000, 100)))


def test_hll_matches_reference_and_is_accurate() -> None:
    rng = np.random.default_rng(7)
    for bits in (5, 6, 10):
        for n_items in (0, 1, 5, 40, 300, 5000):
            regs = np.zeros(1 << bits, np.uint8)
            ref = [0] * (1 << bits)
            for x in rng.integers(0, 2**62, n_items).tolist():
                hll_add(regs, np.uint64(mix64(np.uint64(x))), bits)
                ref_hll_add(ref, ref_mix64(x), bits)
            assert regs.tolist() == ref
            est = hll_estimate(regs)
            assert est == ref_hll_estimate(ref)
            if n_items:
                assert abs(est - n_items) / n_items < 4 * 1.04 / np.sqrt(1 << bits)
            else:
                assert est == 0


def test_mix_matches_the_reference() -> None:  # leading zeros: test_kernel_fast_paths (the intrinsic itself)
    for x in [0, 1, 2, 3, 2**31, 2**32, 2**63, 2**64 - 1, 12345678901234]:
        assert int(mix64(np.uint64(x))) == ref_mix64(x)


def test_store_grows_and_refuses_past_max_accounts() -> None:
    store = FrameStore(n_partitions=1, allowed_lateness_ms=0, max_accounts=100, initial_capacity=2)
    store.ensure_slots(70)
    assert store.capacity >= 70
    with pytest.raises(MemoryError, match="DW_MAX_ACCOUNTS=100"):
        store.ensure_slots(101)
    assert store.bytes_per_account() < 2048
    assert store.counters.shape[2] == N_COUNTERS


def test_read_up_to_is_the_least_read_partition_with_messages_waiting_else_the_newest_event() -> None:
    store = FrameStore(n_partitions=3, allowed_lateness_ms=60_000, max_accounts=4)
    assert store.read_up_to_ms() is None  # nothing read
    rng = np.random.default_rng(3)
    events = random_events(rng, 40, 3, 2)  # partitions 0 and 1
    store.ensure_slots(3)
    store.ingest(events)
    newest = {p: int(events["ts_ms"][events["part"] == p].max()) for p in (0, 1)}
    assert store.read_up_to_ms() == max(newest.values())  # nothing waits: all of it is read
    assert store.read_up_to_ms({0}) == newest[0] and store.read_up_to_ms({0, 1}) == min(newest.values())
    assert store.read_up_to_ms({2}) == NO_TIME  # partition 2 waits and nothing of it is read yet

"""The ring of counters per minute: cells tagged with their minute, idempotent writes, the timing evidence's
calls (NaN before the first frame) and the pooled evidence's counters, eviction by every reader, checkpoint."""

from __future__ import annotations

import numpy as np
import orjson

from pipeline.linking.timing import COLUMNS, CounterRing


def put(ring: CounterRing, account: str, minute: int, calls: int, *, counters: int = 0,
        calls_only: bool = False) -> None:
    values = np.array([[calls, *[counters] * (ring.columns - 1)]])
    ring.put_many(ring.slots_of([account]), np.array([minute]), values, calls_only)


def test_a_window_reads_the_minutes_held_zero_for_none_and_nan_before_the_first_frame() -> None:
    ring = CounterRing(8)
    for minute, calls in ((100, 3), (101, 5), (103, 2)):
        put(ring, "a", minute, calls)
    put(ring, "b", 102, 7)
    window = ring.window(ring.slots_of(["a", "b"]), 99, 6)
    assert np.array_equal(window[0], [np.nan, 3, 5, 0, 2, 0], equal_nan=True)
    assert np.array_equal(window[1], [np.nan] * 3 + [7, 0, 0], equal_nan=True)
    # Overwritten cells (minute 100 + 8) read as 0 for the old minute, never as the new one's calls.
    put(ring, "a", 108, 9)
    assert ring.window(ring.slots_of(["a"]), 100, 1)[0, 0] == 0
    assert ring.active(100).tolist() == [ring.slots["a"]]  # b: first seen after minute 100


def test_writes_set_the_minute_so_a_resent_frame_changes_nothing_and_a_too_old_one_is_ignored() -> None:
    ring = CounterRing(4)
    put(ring, "a", 10, 4)
    put(ring, "a", 10, 4)  # a batch re-read after a crash
    put(ring, "a", 11, 1)
    put(ring, "a", 15, 2)  # cell of minute 11 now holds 15
    put(ring, "a", 11, 6)  # too late for the ring: ignored
    assert ring.window(ring.slots_of(["a"]), 12, 4).tolist() == [[0, 0, 0, 2]]
    put(ring, "a", 70_000, 70_000, counters=5_000_000_000)
    assert ring.window(ring.slots_of(["a"]), 70_000, 1)[0, 0] == 65_535  # the timing evidence clips to uint16
    assert ring.matrix(ring.slots_of(["a"]), 70_000, 1)[0, 0].tolist() == [70_000] + [2**32 - 1] * 6


def test_frames_without_their_counters_are_calls_for_the_timing_evidence_and_nothing_for_the_pooled() -> None:
    ring = CounterRing(8)
    put(ring, "a", 100, 3, counters=7)
    put(ring, "a", 101, 5, calls_only=True)  # a version-2 message's frame
    slots = ring.slots_of(["a"])
    assert ring.window(slots, 100, 2).tolist() == [[3, 5]]
    assert ring.matrix(slots, 100, 2)[0].tolist() == [[3] + [7] * 6, [0] * 7]
    assert ring.newest_counted() == 100
    put(ring, "a", 101, 5, counters=2)  # the same frame with its counters
    assert ring.matrix(slots, 101, 1)[0, 0].tolist() == [5] + [2] * 6 and ring.newest_counted() == 101


def test_idle_accounts_are_evicted_and_their_slots_reused() -> None:
    ring = CounterRing(6, capacity=2)
    for i in range(5):
        put(ring, f"acct-{i}", 100 + i, 1)
    assert len(ring) == 5 and len(ring.last) >= 5  # grown
    assert ring.evict(before=103) == 3 and sorted(ring.slots) == ["acct-3", "acct-4"]
    put(ring, "new", 200, 1)
    assert ring.slots["new"] in (0, 1, 2) and ring.window(ring.slots_of(["new"]), 199, 2).tolist()[0][1] == 1


def test_a_slot_is_freed_once_no_reader_needs_it_and_a_forgetting_reader_sees_it_anew() -> None:
    ring = CounterRing(300)
    ring.holds["pooled"] = ring.holds["sync"] = -1  # registered readers: nothing is freed before each evicts
    put(ring, "a", 100, 2)
    put(ring, "b", 100, 1)
    put(ring, "b", 150, 1)
    assert ring.evict(120, "pooled") == 0  # the timing evidence still needs a
    assert ring.evict(100, "sync", forget=True) == 0 and ring.active(100).size == 2
    assert ring.evict(120, "sync", forget=True) == 1 and sorted(ring.slots) == ["b"]
    put(ring, "c", 130, 4)
    assert ring.evict(140, "sync", forget=True) == 0  # c: the pooled evidence (at 120) still needs it ...
    c = ring.slots_of(["c"])
    assert ring.matrix(c, 130, 1)[0, 0, 0] == 4
    assert ring.active(130).tolist() == [ring.slots["b"]]  # ... the timing evidence let it go
    put(ring, "c", 200, 6)  # back: to the timing evidence c is new, its minutes before unknown
    assert np.isnan(ring.window(c, 130, 1)[0, 0]) and ring.window(c, 200, 1)[0, 0] == 6
    assert ring.active(200).tolist() == c.tolist()


def test_the_section_round_trips_through_json_and_a_narrower_ring_keeps_the_newest() -> None:
    ring = CounterRing(10)
    rng = np.random.default_rng(1)
    for minute in range(1000, 1025):
        ring.put_many(ring.slots_of(["a", "b", "c"]), np.full(3, minute), rng.integers(0, 4, (3, len(COLUMNS))))
    put(ring, "late", 1020, 5, calls_only=True)
    ring.evict(1000, "sync", forget=True)  # a forgotten first is kept too
    section = orjson.loads(orjson.dumps(ring.section()))
    back = CounterRing(10)
    back.restore(section)
    assert back.section() == section
    names = ["a", "b", "c", "late"]
    assert np.array_equal(back.window(back.slots_of(names), 1010, 15), ring.window(ring.slots_of(names), 1010, 15),
                          equal_nan=True)
    assert np.array_equal(back.matrix(back.slots_of(names), 1015, 10), ring.matrix(ring.slots_of(names), 1015, 10))
    assert sorted(back.names[s] for s in back.active(1000)) == ["a", "b", "c"]  # first seen: kept
    assert sorted(back.names[s] for s in back.active(1020)) == names
    narrow = CounterRing(4)
    narrow.restore(section)
    assert np.array_equal(narrow.window(narrow.slots_of(names), 1021, 4), ring.window(ring.slots_of(names), 1021, 4),
                          equal_nan=True)
    other = CounterRing(10, columns=3)  # another column count: its rows are skipped
    other.restore(section)
    assert len(other) == 0

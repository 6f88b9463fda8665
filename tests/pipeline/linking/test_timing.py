"""The ring of calls per minute: cells tagged with their minute, idempotent writes, eviction, checkpoint."""

from __future__ import annotations

import numpy as np
import orjson

from pipeline.linking.timing import CountRing


def put(ring: CountRing, account: str, minute: int, calls: int) -> None:
    ring.put(ring.slots_of([account]), minute, np.array([calls]))


def test_a_window_reads_the_minutes_held_zero_for_none_and_nan_before_the_first_frame() -> None:
    ring = CountRing(8)
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
    ring = CountRing(4)
    put(ring, "a", 10, 4)
    put(ring, "a", 10, 4)  # a batch re-read after a crash
    put(ring, "a", 11, 1)
    put(ring, "a", 15, 2)  # cell of minute 11 now holds 15
    put(ring, "a", 11, 6)  # too late for the ring: ignored
    assert ring.window(ring.slots_of(["a"]), 12, 4).tolist() == [[0, 0, 0, 2]]
    put(ring, "a", 70_000, 70_000)  # clipped to uint16
    assert ring.window(ring.slots_of(["a"]), 70_000, 1)[0, 0] == 65_535


def test_idle_accounts_are_evicted_and_their_slots_reused() -> None:
    ring = CountRing(6, capacity=2)
    for i in range(5):
        put(ring, f"acct-{i}", 100 + i, 1)
    assert len(ring) == 5 and len(ring.last) >= 5  # grown
    assert ring.evict(before=103) == 3 and sorted(ring.slots) == ["acct-3", "acct-4"]
    put(ring, "new", 200, 1)
    assert ring.slots["new"] in (0, 1, 2) and ring.window(ring.slots_of(["new"]), 199, 2).tolist()[0][1] == 1


def test_the_section_round_trips_through_json_and_a_narrower_ring_keeps_the_newest() -> None:
    ring = CountRing(10)
    rng = np.random.default_rng(1)
    for minute in range(1000, 1025):
        ring.put(ring.slots_of(["a", "b", "c"]), minute, rng.integers(0, 4, 3))
    put(ring, "late", 1020, 5)
    section = orjson.loads(orjson.dumps(ring.section()))
    back = CountRing(10)
    back.restore(section)
    names = ["a", "b", "c", "late"]
    assert np.array_equal(back.window(back.slots_of(names), 1010, 15), ring.window(ring.slots_of(names), 1010, 15),
                          equal_nan=True)
    assert sorted(back.names[s] for s in back.active(1000)) == ["a", "b", "c"]  # first seen: kept
    assert sorted(back.names[s] for s in back.active(1020)) == names
    narrow = CountRing(4)
    narrow.restore(section)
    assert np.array_equal(narrow.window(narrow.slots_of(names), 1021, 4), ring.window(ring.slots_of(names), 1021, 4),
                          equal_nan=True)

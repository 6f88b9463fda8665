"""Duplicate suppression: a resent copy within the window counts once, however the log is cut."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.decode.json_events import DecodedBatch, decode_json_batch
from pipeline.state.dedup import RecentEvents, without_rows
from tests.support.events import MINIMAL

T0 = 1_770_888_600_000


def message(n: int, account: str = "org-1") -> bytes:
    return orjson.dumps({**MINIMAL, "event_id": f"e{n}", "ts": T0 + n, "account_id": account})


def decode(values: list[bytes], part: int, first_offset: int) -> DecodedBatch:
    return decode_json_batch(values, [None] * len(values), [part] * len(values),
                             list(range(first_offset, first_offset + len(values))), max_message_bytes=65_536,
                             max_ts_ms=10**15)


def dups(window: int, log: list[bytes], cuts: list[int], part: int = 0) -> list[bool]:
    seen = RecentEvents(window)
    out: list[bool] = []
    bounds = [0, *sorted(set(cuts)), len(log)]
    for lo, hi in pairwise(bounds):
        if hi > lo:
            out += seen.duplicates(decode(log[lo:hi], part, lo)).tolist()
    return out


def test_a_copy_within_the_window_is_a_duplicate_and_beyond_it_is_not() -> None:
    log = [message(0), message(1), message(0), message(2), message(3), message(1)]
    assert dups(10, log, []) == [False, False, True, False, False, True]
    # e1 at offset 5: its first copy is at offset 1, four offsets back.
    assert dups(3, log, [])[5] is False
    assert dups(4, log, [])[5] is True
    assert dups(0, log, []) == [False] * 6  # off


def test_same_event_id_for_another_account_or_time_is_not_a_duplicate() -> None:
    other_account = orjson.dumps({**orjson.loads(message(0)), "account_id": "org-2"})
    other_time = orjson.dumps({**orjson.loads(message(0)), "ts": T0 + 99})
    assert dups(10, [message(0), other_account, other_time], []) == [False, False, False]


def test_partitions_have_separate_windows() -> None:
    seen = RecentEvents(100)
    assert not seen.duplicates(decode([message(0)], 0, 0)).any()
    assert not seen.duplicates(decode([message(0)], 1, 0)).any()
    assert seen.duplicates(decode([message(0)], 1, 1)).all()


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 15), min_size=1, max_size=60), st.lists(st.integers(1, 59), max_size=6),
       st.integers(1, 20))
def test_the_result_does_not_depend_on_batch_cuts(ids: list[int], cuts: list[int], window: int) -> None:
    log = [message(i) for i in ids]
    whole = dups(window, log, [])
    assert dups(window, log, [c for c in cuts if c < len(log)]) == whole
    # Plain definition: the key occurred at an offset in [o - window, o).
    assert whole == [ids[i] in ids[max(0, i - window):i] for i in range(len(ids))]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 12), min_size=2, max_size=50), st.integers(1, 49), st.integers(1, 15))
def test_a_window_rebuilt_from_the_offsets_before_a_restart_decides_the_same(
        ids: list[int], restart: int, window: int) -> None:
    restart = min(restart, len(ids) - 1)
    log = [message(i) for i in ids]
    live = dups(window, log, [restart])
    rebuilt = RecentEvents(window)
    lo = max(0, restart - window)
    rebuilt.duplicates(decode(log[lo:restart], 0, lo))  # what recovery does
    after = rebuilt.duplicates(decode(log[restart:], 0, restart)).tolist()
    assert after == live[restart:]


def test_memory_stays_bounded_by_the_window() -> None:
    seen = RecentEvents(1000)
    for start in range(0, 20_000, 500):
        seen.duplicates(decode([message(n) for n in range(start, start + 500)], 0, start))
    assert len(seen._seen[0]) <= 2 * 1000 + 500


def test_without_rows_drops_rows_from_every_column_and_keeps_rejects() -> None:
    batch = decode([message(0), b"bad", message(1), message(2)], 0, 0)
    out = without_rows(batch, np.array([False, True, False]))
    assert out.account_ids == ["org-1", "org-1"]
    assert out.raw["event_id"] == ["e0", "e2"]
    assert all(len(c) == 2 for c in (*out.kernel.values(), *out.raw.values()))
    assert out.rejects == batch.rejects and len(out.rejects) == 1

"""A partition's state that changes before its input position is known waits for its first batch.

The worker used to stop with "state changed in partitions [...] whose input position is unknown"
(seen on replays, intermittently): a marker needs the partition's next offset, which is known only
once a batch of that partition was handled.
"""

from __future__ import annotations

from typing import Any

from tests.support.events import MINIMAL
from tests.support.state import decoded, manager, part_of

T0 = 1_770_888_600_000


def _event(n: int, account: int) -> dict[str, Any]:
    return {**MINIMAL, "event_id": f"e{n}", "ts": T0 + n * 1000, "account_id": f"org-{account}",
            "api_key_id": f"k-{account}"}


def test_blocks_of_a_partition_without_a_position_wait_for_its_first_batch() -> None:
    m = manager()
    events = [_event(n, account) for n, account in enumerate([3, 4, 3, 4, 6, 7])]  # partitions 0, 1, 0, 1, 0, 1
    assert {part_of(e["account_id"]) for e in events} == {0, 1}
    batch = decoded(events, 0)
    m.detector.process(batch)
    # Only partition 1's position is handed over: partition 0 changed, but where its input stands is unknown.
    first = m.prepare_checkpoint({1: 3})
    assert {p for p, _, _ in first.markers} == {1}
    assert {p for p, _, _ in first.entities} == {1}
    # Partition 0's first batch: its blocks, waiting since, are written with its marker.
    later = m.prepare_checkpoint({0: 3})
    assert {p for p, _, _ in later.markers} == {0}
    assert {p for p, _, _ in later.entities} == {0}


def test_a_new_account_whose_only_event_is_too_late_is_filed_under_its_events_partition() -> None:
    # org-4 and org-7 are both in partition 1; org-7's only event is far behind partition 1's watermark, so
    # the kernel drops it, but the account (new, with a new key) is registered and changed all the same.
    m = manager()
    m.detector.process(decoded([_event(600, 4)], 0))
    m.detector.process(decoded([{**_event(1, 7), "event_id": "late"}], 1))
    assert m.detector.frames.slot_part[m.detector.accounts.slot_of("org-7")] == 1
    prepared = m.prepare_checkpoint({1: 2})
    assert {p for p, _, _ in prepared.markers} == {1} and {p for p, _, _ in prepared.entities} == {1}

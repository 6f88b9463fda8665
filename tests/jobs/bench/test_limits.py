"""jobs.bench.limits: how the ceiling processes split a topic's partitions."""

from __future__ import annotations

import pytest

from jobs.bench.limits import split


@pytest.mark.parametrize(("partitions", "procs", "expected"), [
    (4, 1, [[0, 1, 2, 3]]),
    (4, 2, [[0, 2], [1, 3]]),
    (3, 2, [[0, 2], [1]]),
])
def test_every_partition_goes_to_exactly_one_process(partitions: int, procs: int, expected: list[list[int]]) -> None:
    assert split(partitions, procs) == expected

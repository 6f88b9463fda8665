"""jobs.bench.limits: how the ceiling processes split a topic's partitions."""

from __future__ import annotations

import pytest

from jobs.bench.limits import PerTableInserts, split
from pipeline.sinks.clickhouse import WriterStats


@pytest.mark.parametrize(("partitions", "procs", "expected"), [
    (4, 1, [[0, 1, 2, 3]]),
    (4, 2, [[0, 2], [1, 3]]),
    (3, 2, [[0, 2], [1]]),
])
def test_every_partition_goes_to_exactly_one_process(partitions: int, procs: int, expected: list[list[int]]) -> None:
    assert split(partitions, procs) == expected


def test_per_table_insert_time_counts_only_the_tables_written_in_each_batch() -> None:
    per_table = PerTableInserts()
    first = {"api_calls": WriterStats(inserts=1, rows=50, last_insert_s=2.0)}
    per_table.add({}, first)
    second = {"api_calls": WriterStats(inserts=2, rows=90, last_insert_s=1.5),
              "alerts": WriterStats(inserts=1, rows=3, last_insert_s=0.25)}
    per_table.add(first, second)
    # A batch that wrote only alerts: api_calls' last_insert_s is the previous batch's and is not added again.
    third = {**second, "alerts": WriterStats(inserts=2, rows=5, last_insert_s=0.5)}
    per_table.add(second, third)
    assert per_table.entry() == {"table_insert_s": {"alerts": 0.75, "api_calls": 3.5},
                                 "table_rows": {"alerts": 5, "api_calls": 90}}

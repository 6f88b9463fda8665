"""ProgressWatch: a partition that stops moving while messages wait is reported, never silent."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from pipeline.sources.kafka_batches import KafkaBatchSource
from pipeline.sources.progress import ProgressWatch


def test_a_partition_with_lag_and_no_progress_is_stalled_after_the_threshold() -> None:
    w = ProgressWatch(stall_after_s=60)
    w.observe(0, position=100, highwater=500, now=0)
    w.observe(1, position=100, highwater=500, now=0)
    assert w.evaluate(now=0) == (set(), set())
    w.observe(0, position=100, highwater=600, now=59)  # stuck
    w.observe(1, position=300, highwater=600, now=59)  # moving
    assert w.evaluate(now=59) == (set(), set())
    w.observe(0, position=100, highwater=600, now=60)
    w.observe(1, position=300, highwater=600, now=60)
    assert w.evaluate(now=60) == ({0}, set())
    assert w.stalled == {0} and w.lags() == {0: 500, 1: 300}
    assert w.evaluate(now=61) == (set(), set())  # reported once
    w.observe(0, position=101, highwater=600, now=62)
    assert w.evaluate(now=62) == (set(), {0})


def test_no_lag_is_never_a_stall_however_long_it_is_quiet() -> None:
    w = ProgressWatch(stall_after_s=10)
    w.observe(0, position=42, highwater=42, now=0)
    w.observe(0, position=42, highwater=42, now=1_000)
    w.observe(1, position=7, highwater=None, now=0)  # no fetch answered yet
    w.observe(1, position=7, highwater=None, now=1_000)
    assert w.evaluate(now=1_000) == (set(), set())


def test_back_pressure_restarts_the_clock() -> None:
    w = ProgressWatch(stall_after_s=10)
    w.observe(0, position=5, highwater=50, now=0)
    w.blocked(now=9)  # the detect step held the source (ClickHouse down): not a stall
    w.observe(0, position=5, highwater=50, now=15)
    assert w.evaluate(now=15) == (set(), set())
    assert w.evaluate(now=19) == ({0}, set())


def test_a_rebalance_forgets_lost_partitions_and_restarts_kept_ones() -> None:
    w = ProgressWatch(stall_after_s=10)
    w.observe(0, position=5, highwater=50, now=0)
    w.observe(1, position=5, highwater=50, now=0)
    assert w.evaluate(now=10) == ({0, 1}, set())
    w.keep_only({1}, now=10)
    assert w.stalled == {1} and set(w.lags()) == {1}
    w.observe(1, position=5, highwater=50, now=15)
    assert w.evaluate(now=15) == (set(), {1})  # its clock restarted at the rebalance


class _Consumer:
    """A consumer's assignment, positions and high watermarks (None: no fetch answered yet)."""

    def __init__(self, parts: dict[int, tuple[int, int | None]]) -> None:
        self.parts = {TopicPartition("events", p): v for p, v in parts.items()}

    def assignment(self) -> set[TopicPartition]:
        return set(self.parts)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.parts[tp][1]

    async def position(self, tp: TopicPartition) -> int:
        return self.parts[tp][0]


def test_a_batch_names_the_partitions_with_messages_still_waiting() -> None:
    consumer = _Consumer({0: (10, 10), 1: (4, 10), 2: (0, None), 3: (7, 9)})
    assert asyncio.run(KafkaBatchSource._behind(consumer)) == {1, 3}  # type: ignore[arg-type]

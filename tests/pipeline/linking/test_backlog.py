"""stage_backlog: messages waiting per linking stage, from a consumer's assignment, highwaters and positions."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition as TP
from aiokafka.errors import IllegalStateError

from pipeline.linking.backlog import stage_backlog

TOPICS = {"features": "obs", "clusters": "edges"}


class FakeConsumer:
    def __init__(self, offsets: dict[TP, tuple[int | None, int | None]]) -> None:
        self.offsets = offsets  # tp -> (highwater, position)

    def assignment(self) -> set[TP]:
        return set(self.offsets)

    def highwater(self, tp: TP) -> int | None:
        return self.offsets[tp][0]

    async def position(self, tp: TP) -> int | None:
        if tp.partition == 9:
            raise IllegalStateError("revoked meanwhile")
        return self.offsets[tp][1]


def test_backlog_sums_highwater_minus_position_per_stage_topic() -> None:
    consumer = FakeConsumer({
        TP("obs", 0): (100, 40), TP("obs", 1): (7, 7), TP("edges", 0): (30, 25),
        TP("results", 0): (1000, 0),  # not a stage's input
        TP("obs", 2): (None, 0),  # never fetched: nothing known to wait
        TP("obs", 9): (50, 0),  # revoked while measuring
    })
    assert asyncio.run(stage_backlog(consumer, TOPICS)) == {"features": 60, "clusters": 5}



def test_a_consumer_with_nothing_assigned_reports_zero_for_every_stage() -> None:
    assert asyncio.run(stage_backlog(FakeConsumer({}), TOPICS)) == {"features": 0, "clusters": 0}

"""Linking backlog: messages waiting in each stage's input topic of the linking process.

Per stage, the sum over the partitions its consumer is assigned of ``highwater -
position`` (both are "next offset", so the difference is the number of messages not
read yet). Sampled by the linking process (``process``) and sent in its results'
stats, which the workers' /stats and /metrics read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

# Stage name (the label of distillwatch_linking_backlog_messages) -> what reads it.
STAGE_FEATURES = "features"  # stage A, reads the observations topic
STAGE_CLUSTERS = "clusters"  # stage B, reads the edges topic
POSITION_TIMEOUT_S = 1.0


class OffsetReader(Protocol):
    """What the sampler needs of an aiokafka consumer."""

    def assignment(self) -> set[TopicPartition]: ...

    def highwater(self, tp: TopicPartition) -> int | None: ...

    async def position(self, tp: TopicPartition) -> int | None: ...


async def stage_backlog(consumer: OffsetReader, stage_topics: Mapping[str, str]) -> dict[str, int]:
    """Stage -> messages waiting in its topic's partitions assigned here (0 when it holds none).

    A partition not fetched or positioned yet (just assigned) is left out: nothing known to wait.
    """
    backlog = dict.fromkeys(stage_topics, 0)
    stage_of = {topic: stage for stage, topic in stage_topics.items()}
    for tp in consumer.assignment():
        stage = stage_of.get(tp.topic)
        if stage is None:
            continue  # not a stage's input
        try:
            highwater = consumer.highwater(tp)
            position = await asyncio.wait_for(consumer.position(tp), timeout=POSITION_TIMEOUT_S)
        except (TimeoutError, KafkaError, AssertionError):
            continue  # revoked meanwhile or not positioned yet
        if highwater is not None and position is not None:
            backlog[stage] += max(0, highwater - position)
    return backlog

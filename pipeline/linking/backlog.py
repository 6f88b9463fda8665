"""Linking backlog: messages waiting in each stage's input topic on this worker.

Per stage, the sum over the partitions this worker's Faust consumer holds of
``highwater - position`` (both are "next offset", so the difference is the number
of messages not read yet). Sampled on a timer (``agents.register_linking``) and
kept on ``Linking.backlog``, which /stats and /metrics read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from aiokafka.errors import KafkaError
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

# Stage name (the label of distillwatch_linking_backlog_messages) -> what reads it.
STAGE_FEATURES = "features"  # stage A, reads the observations topic
STAGE_CLUSTERS = "clusters"  # stage B, reads the edges topic
POSITION_TIMEOUT_S = 1.0


class OffsetReader(Protocol):
    """What the sampler needs of a Faust consumer."""

    def assignment(self) -> set[TP]: ...

    def highwater(self, tp: TP) -> int | None: ...

    async def position(self, tp: TP) -> int | None: ...


async def stage_backlog(consumer: OffsetReader, stage_topics: Mapping[str, str]) -> dict[str, int]:
    """Stage -> messages waiting in its topic's partitions assigned here (0 when it holds none).

    A partition not fetched or positioned yet (just assigned) is left out: nothing known to wait.
    """
    backlog = dict.fromkeys(stage_topics, 0)
    stage_of = {topic: stage for stage, topic in stage_topics.items()}
    try:
        assigned = consumer.assignment()
    except ConsumerNotStarted:
        return backlog
    for tp in assigned:
        stage = stage_of.get(tp.topic)
        if stage is None:
            continue  # a table changelog or another agent's topic
        try:
            highwater = consumer.highwater(tp)
            position = await asyncio.wait_for(consumer.position(tp), timeout=POSITION_TIMEOUT_S)
        except (TimeoutError, KafkaError, AssertionError, ConsumerNotStarted):
            continue  # revoked meanwhile or not positioned yet
        if highwater is not None and position is not None:
            backlog[stage] += max(0, highwater - position)
    return backlog

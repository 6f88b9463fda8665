"""``distillwatch reset-offsets``: move the worker group's input offsets, and the state with them.

The offsets of ``<DW_CONSUMER_GROUP>.events`` alone do not decide where a worker resumes
(it seeks to its state marker's offset when that is ahead), so this command also writes
markers: a rewound partition's state is reset (a marker whose ``base_seq`` voids every
earlier block record), a partition moved forward keeps it; ``--keep-state`` and
``--reset-state`` override that. Offsets are committed first, markers written second.
Why, and how to use it: docs/operations.md ("Replaying from an offset or a time").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.settings import Settings
from pipeline.state.checkpoint import (
    Marker,
    PartitionLog,
    encode_marker,
    marker_header,
    marker_key,
    move_marker,
)
from pipeline.state.state_topic import StateTopic, read_to_end, restore_consumer
from pipeline.topics import partition_count


class ResetError(RuntimeError):
    pass


@dataclass(frozen=True)
class Target:
    earliest: bool = False
    latest: bool = False
    offset: int | None = None
    datetime: datetime | None = None
    current: bool = False  # the committed offset (with --reset-state: drop the state, keep the position)


@dataclass(frozen=True)
class PartitionPlan:
    partition: int
    committed: int | None
    state_offset: int | None  # where the checkpointed state stands (its marker's offset)
    target: int
    reset_state: bool

    def describe(self) -> str:
        state = "reset" if self.reset_state else "kept"
        return (f"partition {self.partition}: committed {self.committed} -> {self.target}; "
                f"state at {self.state_offset}: {state}")


def parse_datetime(text: str) -> datetime:
    """ISO 8601; a time without an offset is UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _targets(consumer: AIOKafkaConsumer, tps: list[TopicPartition], target: Target,
                   committed: dict[int, int | None]) -> dict[int, int]:
    begin = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    if target.current:
        return {tp.partition: c if (c := committed.get(tp.partition)) is not None else begin[tp] for tp in tps}
    if target.earliest:
        return {tp.partition: begin[tp] for tp in tps}
    if target.latest:
        return {tp.partition: end[tp] for tp in tps}
    if target.offset is not None:
        return {tp.partition: min(max(target.offset, begin[tp]), end[tp]) for tp in tps}
    assert target.datetime is not None
    found = await consumer.offsets_for_times({tp: int(target.datetime.timestamp() * 1000) for tp in tps})
    # No message at or after that time: the end.
    return {tp.partition: found[tp].offset if found[tp] is not None else end[tp] for tp in tps}


async def reset_offsets(settings: Settings, target: Target, partitions: list[int] | None, *,
                        state: str = "auto", dry_run: bool = False) -> list[PartitionPlan]:
    """Plan (and unless ``dry_run``, apply) the reset. ``state``: "auto", "reset" or "keep"."""
    topic = settings.topic_events
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                group_id=f"{settings.consumer_group}.events", enable_auto_commit=False)
    await consumer.start()
    try:
        known = await _partitions(settings, topic)
        parts = sorted(known) if partitions is None else partitions
        if unknown := sorted(set(parts) - set(known)):
            raise ResetError(f"topic {topic!r} has no partitions {unknown}")
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        committed = {tp.partition: await consumer.committed(tp) for tp in tps}
        targets = await _targets(consumer, tps, target, committed)
        logs = await _read_state(settings, parts)
        plans = []
        for p in parts:
            marker = logs[p].chosen().marker
            at = int(marker_header(marker)["next_offset"]) if marker else committed[p]
            rewind = at is not None and targets[p] < at
            reset = state == "reset" or (state == "auto" and rewind)
            plans.append(PartitionPlan(p, committed[p], at, targets[p], reset and marker is not None))
        if not dry_run:
            try:
                await consumer.commit({TopicPartition(topic, pl.partition): pl.target for pl in plans})
            except KafkaError as exc:
                raise ResetError(f"Kafka refused the commit for group {settings.consumer_group}.events ({exc}): "
                                 "stop every worker of the group first") from exc
            await _write_markers(settings, plans, logs)
        return plans
    finally:
        await consumer.stop()


async def _partitions(settings: Settings, topic: str) -> set[int]:
    # Asked through the admin client: aiokafka's consumer.topics() fills a separate copy of
    # the metadata, so a consumer subscribed to nothing never learns the topic on Apache Kafka.
    n = await asyncio.to_thread(partition_count, settings, topic)  # 0 for a missing topic
    if not n:
        raise ResetError(f"no topic {topic!r} at {settings.kafka_bootstrap}")
    return set(range(n))


async def _read_state(settings: Settings, parts: list[int]) -> dict[int, PartitionLog]:
    logs = {p: PartitionLog(p) for p in parts}
    consumer = restore_consumer(settings.bootstrap_servers)
    await consumer.start()
    try:
        if settings.state_topic in await consumer.topics():
            await read_to_end(consumer, settings.state_topic, parts, lambda p, _o, k, v: logs[p].add(k, v))
    finally:
        await consumer.stop()
    return logs


async def _write_markers(settings: Settings, plans: list[PartitionPlan], logs: dict[int, PartitionLog]) -> None:
    markers = []
    for plan in plans:
        chosen = logs[plan.partition].chosen()
        if chosen.marker is None:
            continue  # no state: the committed offset alone decides
        if plan.reset_state:
            # Above every seq so far: every earlier block record (of any format) is void, and the partition's
            # arrays start from a worker's fresh values (the marker carries no rows).
            seq = chosen.max_seq + 1
            value = encode_marker(Marker(plan.partition, seq, seq, plan.target, {}, {}))
        else:
            value = move_marker(chosen.marker, plan.target)
        markers.append((plan.partition, marker_key(plan.partition), value))
    if markers:
        writer = StateTopic(settings.bootstrap_servers, settings.state_topic)
        await writer.start()
        try:
            await writer.write([], markers)
        finally:
            await writer.stop()


def run_reset(settings: Settings, target: Target, partitions: list[int] | None, *, state: str,
              dry_run: bool) -> list[PartitionPlan]:
    return asyncio.run(reset_offsets(settings, target, partitions, state=state, dry_run=dry_run))

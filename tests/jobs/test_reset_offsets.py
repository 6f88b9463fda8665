"""``distillwatch reset-offsets`` on a real broker: offsets move, and the state moves with them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndTimestamp

from jobs.embedded_broker import EmbeddedBroker
from jobs.reset_offsets import Target, _targets, parse_datetime, run_reset
from pipeline.settings import Settings
from pipeline.state.state_topic import StateTopic
from pipeline.topics import ensure_topics
from tests.support.events import numbered_event
from tests.support.state import N_PARTS, new_manager, part_of, produce, settings_for, step

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


async def _commit(settings: Settings, offsets: dict[int, int]) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
                                group_id=f"{settings.consumer_group}.events")
    await consumer.start()
    try:
        tps = {p: TopicPartition(settings.topic_events, p) for p in range(N_PARTS)}
        consumer.assign(list(tps.values()))
        if offsets:
            await consumer.commit({tps[p]: o for p, o in offsets.items()})
        return {p: await consumer.committed(tp) for p, tp in tps.items()}
    finally:
        await consumer.stop()


def worked_group(broker: EmbeddedBroker, name: str) -> tuple[Settings, dict[int, int]]:
    """A group whose worker read everything: state checkpointed, offsets committed."""
    settings = settings_for(broker, name)
    ensure_topics(settings)
    lines = [orjson.dumps(numbered_event(i)) for i in range(600)]
    parts = [part_of(orjson.loads(x)["account_id"]) for x in lines]
    asyncio.run(produce(broker.bootstrap, settings.topic_events, [(p, None, v) for p, v in  # type: ignore[misc]
                                                                   zip(parts, lines, strict=True)], chunk=200))
    ends = {p: parts.count(p) for p in range(N_PARTS)}
    offsets = [0] * N_PARTS
    log = []
    for p, v in zip(parts, lines, strict=True):
        log.append((p, offsets[p], v))
        offsets[p] += 1

    async def work() -> None:
        topic = StateTopic(settings.bootstrap_servers, settings.state_topic)
        await topic.start()
        try:
            m = new_manager(settings, topic)
            await m.assign(set(range(N_PARTS)), {p: None for p in range(N_PARTS)})
            step(m, log)
            await m.write_checkpoint(m.prepare_checkpoint(ends))
        finally:
            await topic.stop()

    asyncio.run(work())
    asyncio.run(_commit(settings, ends))
    return settings, ends


def restore(settings: Settings) -> tuple[dict[int, int], set[int]]:
    """What a worker starting now would do: where it resumes, and which partitions' accounts it holds."""
    async def go() -> tuple[dict[int, int], set[int]]:
        committed = await _commit(settings, {})
        m = new_manager(settings, StateTopic(settings.bootstrap_servers, settings.state_topic))
        starts = await m.assign(set(range(N_PARTS)), committed)
        return starts, {part_of(a) for a in m.detector.accounts.names}
    return asyncio.run(go())


def test_rewinding_a_partition_resets_its_state_and_a_worker_resumes_there(broker: EmbeddedBroker) -> None:
    settings, ends = worked_group(broker, "rewind")
    assert restore(settings) == (ends, {0, 1, 2})

    plans = run_reset(settings, Target(offset=0), [0], state="auto", dry_run=True)
    assert [(p.partition, p.committed, p.state_offset, p.target, p.reset_state) for p in plans] == \
        [(0, ends[0], ends[0], 0, True)]
    assert restore(settings) == (ends, {0, 1, 2})  # a dry run changes nothing

    run_reset(settings, Target(offset=0), [0], state="auto", dry_run=False)
    starts, holding = restore(settings)
    assert starts == {**ends, 0: 0} and holding == {1, 2}  # partition 0 starts over, with no state

    # Dropping only the state (say, after a change of the state arrays): same offsets, no state.
    run_reset(settings, Target(current=True), [1], state="reset", dry_run=False)
    assert restore(settings) == ({**ends, 0: 0}, {2})


def test_keep_state_moves_only_the_offset_and_forward_moves_keep_state(broker: EmbeddedBroker) -> None:
    settings, ends = worked_group(broker, "keep")
    run_reset(settings, Target(offset=5), [1], state="keep", dry_run=False)
    assert restore(settings) == ({**ends, 1: 5}, {0, 1, 2})
    (plan,) = run_reset(settings, Target(offset=9), [1], state="auto", dry_run=False)
    assert (plan.state_offset, plan.target, plan.reset_state) == (5, 9, False)  # forward: kept
    assert restore(settings) == ({**ends, 1: 9}, {0, 1, 2})


class FakeConsumer:
    """Offsets of two partitions: 10..50 and 0..7; message times lead to offset 20, or none."""

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: (10, 0)[tp.partition] for tp in tps}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: (50, 7)[tp.partition] for tp in tps}

    async def offsets_for_times(self, times: dict[TopicPartition, int]) -> dict[TopicPartition, object]:
        return {tp: (OffsetAndTimestamp(20, t), None)[tp.partition] for tp, t in times.items()}


@pytest.mark.parametrize("target, expected", [
    (Target(earliest=True), {0: 10, 1: 0}),
    (Target(latest=True), {0: 50, 1: 7}),
    (Target(offset=5), {0: 10, 1: 5}),  # clamped to what the topic holds
    (Target(offset=99), {0: 50, 1: 7}),
    (Target(datetime=parse_datetime("2026-02-12T09:30:00")), {0: 20, 1: 7}),  # no message that late: the end
    (Target(current=True), {0: 33, 1: 0}),  # nothing committed: the beginning
])
def test_targets(target: Target, expected: dict[int, int]) -> None:
    tps = [TopicPartition("t", 0), TopicPartition("t", 1)]
    assert asyncio.run(_targets(FakeConsumer(), tps, target, {0: 33, 1: None})) == expected  # type: ignore[arg-type]


def test_datetimes_without_an_offset_are_utc() -> None:
    assert parse_datetime("2026-02-12T09:30:00") == parse_datetime("2026-02-12T10:30:00+01:00")
    assert parse_datetime("2026-02-12T09:30:00Z").timestamp() == 1_770_888_600


def test_the_command_line_refuses_ambiguous_targets_and_prints_the_plan(broker: EmbeddedBroker) -> None:
    settings, ends = worked_group(broker, "cli")
    env = {"DW_KAFKA_BOOTSTRAP": broker.bootstrap, "DW_CONSUMER_GROUP": settings.consumer_group,
           "DW_TOPIC_EVENTS": settings.topic_events, "DW_TOPIC_DLQ": settings.topic_dlq, "PATH": "/usr/bin:/bin"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "jobs.cli", "reset-offsets", *args], capture_output=True,
                              text=True, timeout=120, cwd=ROOT, env=env, check=False)

    assert cli("--to-offset", "0", "--to-earliest").returncode == 2
    done = cli("--to-earliest", "--partitions", "2", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"partition 2: committed {ends[2]} -> 0; state at {ends[2]}: reset"

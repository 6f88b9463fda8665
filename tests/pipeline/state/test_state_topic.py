"""The state topic on a real broker (embedded Tansu): bounded restore, and partitions moving between workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest

from jobs.embedded_broker import EmbeddedBroker
from pipeline.state.checkpoint import CheckpointLayoutError, PartitionLog, block_key, decode_block
from pipeline.state.state_topic import StateTopic, read_to_end, restore_consumer
from pipeline.topics import ensure_topics
from tests.support.checkpoint_records import LAYOUTS, ent, mk
from tests.support.events import numbered_event
from tests.support.state import (
    N_PARTS,
    entities_in,
    new_manager,
    part_of,
    produce,
    settings_for,
    step,
)

pytestmark = pytest.mark.kafka

@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


def test_restore_ends_on_a_topic_of_many_superseded_records(broker: EmbeddedBroker) -> None:
    settings = settings_for(broker, "superseded")
    ensure_topics(settings)
    records: list[tuple[int, bytes, bytes | None]] = []
    for seq in range(1, 101):  # 100 checkpoints of the same 200 blocks: 20,000 superseded records
        records += [(0, *ent(f"acct-{i}", seq, tag=seq)) for i in range(200)]
        records.append((0, *mk(seq)))
    # An unfinished checkpoint at the end, produced as one batch: Tansu then reports an
    # end offset at that batch's start, so a reader trusting it would stop early.
    records += [(0, *ent(f"acct-{i}", 101, tag=999)) for i in range(50)]
    asyncio.run(produce(broker.bootstrap, settings.state_topic, records, chunk=2000))

    async def restore() -> PartitionLog:
        log = PartitionLog(0)
        consumer = restore_consumer(settings.bootstrap_servers)
        await consumer.start()
        try:
            read = await asyncio.wait_for(read_to_end(consumer, settings.state_topic, [0],
                                                      lambda _p, _o, k, v: log.add(k, v)), timeout=60)
        finally:
            await consumer.stop()
        assert read == len(records)
        return log

    started = time.monotonic()
    chosen = asyncio.run(restore()).chosen()
    assert time.monotonic() - started < 30
    assert chosen.records == len(records) and chosen.max_seq == 101
    blocks = [decode_block(k, v, LAYOUTS) for k, v in chosen.blocks.items()]
    tags = {b.extras[0]["name"]: b.extras[0]["tag"] for b in blocks if b is not None}
    assert tags == {f"acct-{i}": 100 for i in range(200)}
    assert sorted(chosen.rewrite) == sorted(block_key("account", 0, i) for i in range(50))


# --- partitions moving between two workers ---------------------------------------------------

def events_with_resends() -> list[bytes]:
    lines = []
    for i in range(3000):
        lines.append(orjson.dumps(numbered_event(i)))
        if i % 97 == 0 and i >= 40:
            lines.append(orjson.dumps(numbered_event(i - 40)))  # resent 40 events later: may straddle the handover
    return lines


def offsets_of(log: list[tuple[int, int, bytes]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for p, o, _ in log:
        out[p] = max(out.get(p, 0), o + 1)
    return out


def test_partitions_revoked_and_assigned_elsewhere_carry_on_exactly(broker: EmbeddedBroker) -> None:
    settings = settings_for(broker, "handover")
    ensure_topics(settings)
    lines = events_with_resends()
    parts = [part_of(orjson.loads(x)["account_id"]) for x in lines]
    asyncio.run(produce(broker.bootstrap, settings.topic_events, [(p, None, v) for p, v in  # type: ignore[misc]
                                                                   zip(parts, lines, strict=True)], chunk=500))
    next_offset = [0] * N_PARTS
    log = []
    for p, v in zip(parts, lines, strict=True):
        log.append((p, next_offset[p], v))
        next_offset[p] += 1
    first, second = log[:1700], log[1700:]

    async def scenario() -> tuple[list[Any], int, list[Any], int]:
        topic = StateTopic(settings.bootstrap_servers, settings.state_topic)
        await topic.start()
        try:
            a, b = new_manager(settings, topic), new_manager(settings, topic)
            assert await a.assign({0, 1, 2}, {0: None, 1: None, 2: None}) == {}
            rows, dups = step(a, first)
            await a.write_checkpoint(a.prepare_checkpoint(offsets_of(first)))
            committed = dict(a.positions)
            # Rebalance: a keeps partition 0 (in memory), b gets 1 and 2 (from the state topic).
            assert await a.assign({0}, {0: committed[0]}) == {0: committed[0]}
            assert {part_of(x) for x in a.detector.accounts.names} == {0}
            starts = await b.assign({1, 2}, {1: committed[1], 2: committed[2]})
            assert starts == {1: committed[1], 2: committed[2]}
            for m, mine in ((a, {0}), (b, {1, 2})):
                more, more_dups = step(m, [x for x in second if x[0] in mine], force=True)
                rows += more
                dups += more_dups
            assert (a.stats.restores, b.stats.restores) == (1, 1)  # a kept partition 0 in memory
            # And back (both flushed first, as on a revocation): a gets 1 and 2 again, after b
            # committed them; they come from the topic and equal b's state.
            for m, mine in ((a, {0}), (b, {1, 2})):
                await m.write_checkpoint(m.prepare_checkpoint(offsets_of([x for x in second if x[0] in mine])))
            back = await a.assign({0, 1, 2}, {p: (a if p == 0 else b).positions[p] for p in range(N_PARTS)})
            assert back == {0: a.positions[0], 1: b.positions[1], 2: b.positions[2]}
            assert a.stats.restores == 2
            moved_a = {(s.store, s.entity): s for s in entities_in(a.detector, {1, 2})}
            moved_b = {(s.store, s.entity): s for s in entities_in(b.detector, {1, 2})}
            assert moved_a.keys() == moved_b.keys() and moved_a
            for k, s in moved_b.items():
                assert moved_a[k].extras == s.extras
                assert all(np.array_equal(moved_a[k].rows[n], s.rows[n]) for n in s.rows), k
            ref = new_manager(settings, topic)
            ref_rows, ref_dups = step(ref, first)
            more, more_dups = step(ref, second, force=True)
            return rows, dups, ref_rows + more, ref_dups + more_dups
        finally:
            await topic.stop()

    rows, dups, ref_rows, ref_dups = asyncio.run(scenario())
    assert dups == ref_dups > 0
    assert sorted(rows) == sorted(ref_rows)


def test_a_checkpoint_of_another_layout_is_refused(broker: EmbeddedBroker) -> None:
    settings = settings_for(broker, "layout")
    ensure_topics(settings)
    changed = settings_for(broker, "layout", allowed_lateness_s=600)  # a longer frame ring per account

    async def scenario() -> None:
        topic = StateTopic(settings.bootstrap_servers, settings.state_topic)
        await topic.start()
        try:
            writer = new_manager(settings, topic)
            batch = [(0, i, orjson.dumps({**numbered_event(i), "account_id": "org-3"})) for i in range(50)]
            step(writer, batch)
            await writer.write_checkpoint(writer.prepare_checkpoint(offsets_of(batch)))
            with pytest.raises(CheckpointLayoutError, match=r"frame_minute <i8\[3\] -> <i8\[11\]"):
                await new_manager(changed, topic).assign({0}, {0: None})
        finally:
            await topic.stop()

    asyncio.run(scenario())

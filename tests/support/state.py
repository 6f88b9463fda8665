"""A Detector's state managers without Kafka (or over a real broker), the events they read, and the check
that two of them hold the same state: shared by the snapshot, state-topic, API-key, replay and reset tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer

from jobs.embedded_broker import EmbeddedBroker
from pipeline.decode.json_events import DecodedBatch, decode_json_batch
from pipeline.detect.detector import Detector
from pipeline.settings import Settings, load_settings
from pipeline.state.checkpoint import PartitionLog
from pipeline.state.dedup import without_rows
from pipeline.state.manager import StateManager
from pipeline.state.state_topic import StateTopic
from tests.support.events import numbered_event


@dataclass(frozen=True)
class EntityState:
    """One entity's state: its row of every slot array of its store, plus its extras."""

    store: str
    entity: str
    part: int  # the input partition it lives in (its ``slot_part``)
    rows: dict[str, np.ndarray]
    extras: dict[str, object]


def entities_in(detector: Detector, parts: set[int]) -> list[EntityState]:
    """Every entity living in one of ``parts``, one object each (copies)."""
    out: list[EntityState] = []
    wanted = np.array(sorted(parts), np.int64)
    for store, (registry, frames) in detector.state_stores().items():
        slots = np.flatnonzero(np.isin(frames.slot_arrays()["slot_part"][:len(registry)], wanted))
        rows = frames.slot_rows(slots)
        names = registry.names_of(slots)
        out += [EntityState(store, names[i], int(rows["slot_part"][i]), {k: v[i] for k, v in rows.items()},
                            detector.entity_extras(store, slot)) for i, slot in enumerate(slots.tolist())]
    return out


N_PARTS = 3
SETTINGS = load_settings(alert_score_threshold=20.0)  # low: alert state is exercised too


def part_of(account: str) -> int:
    return int(account.split("-")[1]) % N_PARTS


def decode(values: list[bytes], keys: list[bytes | None], parts: list[int], offsets: list[int]) -> DecodedBatch:
    return decode_json_batch(values, keys, parts, offsets, max_message_bytes=65_536, max_ts_ms=10**15)


def decoded(events: list[dict[str, Any]], first_offset: int) -> DecodedBatch:
    values = [orjson.dumps(e) for e in events]
    return decode(values, [None] * len(values), [part_of(e["account_id"]) for e in events],
                  list(range(first_offset, first_offset + len(values))))


def offsets_after(batch: DecodedBatch) -> dict[int, int]:
    out: dict[int, int] = {}
    for p, o in zip(batch.raw["kafka_partition"], batch.raw["kafka_offset"], strict=True):  # type: ignore[call-overload]
        out[int(p)] = max(out.get(int(p), 0), int(o) + 1)
    return out


def manager() -> StateManager:
    return StateManager(make_detector=lambda: Detector(SETTINGS, N_PARTS), topic=StateTopic(["unused:9092"], "t"),
                        events_topic="e", bootstrap_servers=["unused:9092"], dedup_window=0,
                        decode=lambda *a: decoded([], 0))


def restore_in_memory(source: StateManager, target: StateManager, records: list[tuple[int, bytes, bytes | None]],
                      committed: dict[int, int | None]) -> None:
    logs = {p: PartitionLog(p) for p in range(N_PARTS)}
    for p, key, value in records:
        logs[p].add(key, value)
    target._apply([logs[p].chosen() for p in range(N_PARTS)], committed)
    target.owned = set(range(N_PARTS))


def assert_same_state(a: StateManager, b: StateManager) -> None:
    """Every entity of ``a`` is in ``b`` with bit-identical rows and equal extras, and nothing more."""
    mine = {(e.store, e.entity): e for e in entities_in(a.detector, set(range(N_PARTS)))}
    theirs = {(e.store, e.entity): e for e in entities_in(b.detector, set(range(N_PARTS)))}
    assert mine.keys() == theirs.keys() and mine
    for key, e in mine.items():
        assert e.extras == theirs[key].extras, key
        assert all(e.rows[n].tobytes() == theirs[key].rows[n].tobytes() for n in e.rows), key


EVENTS = [numbered_event(i) for i in range(4000)]


def settings_for(broker: EmbeddedBroker, name: str, **kw: Any) -> Settings:
    return load_settings(kafka_bootstrap=broker.bootstrap, topic_events=f"{name}-events", topic_dlq=f"{name}-dlq",
                         consumer_group=name, partitions=N_PARTS, alert_score_threshold=20.0, **kw)


async def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes, bytes | None]], chunk: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        for start in range(0, len(records), chunk):
            chunk_records = records[start:start + chunk]
            futures = [await producer.send(topic, value=v, key=k, partition=p) for p, k, v in chunk_records]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


def new_manager(settings: Settings, topic: StateTopic) -> StateManager:
    return StateManager(make_detector=lambda: Detector(settings, N_PARTS), topic=topic,
                        events_topic=settings.topic_events, bootstrap_servers=settings.bootstrap_servers,
                        dedup_window=100, decode=decode)


def step(m: StateManager, log: list[tuple[int, int, bytes]], force: bool = False) -> tuple[list[Any], int]:
    """Process messages (partition, offset, value) like DetectStep; returns signature rows and duplicates."""
    batch = decode([v for _, _, v in log], [None] * len(log), [p for p, _, _ in log], [o for _, o, _ in log])
    dup = m.dedup.duplicates(batch)
    out = m.detector.process(without_rows(batch, dup), force_close=force)
    sig = out.signatures
    cols = {c: np.asarray(v).tolist() if isinstance(v, np.ndarray) else list(v) for c, v in sig.items()}  # type: ignore[call-overload]
    return [tuple(map(repr, r)) for r in zip(*cols.values(), strict=True)], int(dup.sum())

"""The linking inputs' watermark: how far every detect source's evidence is read (``watermark``)."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import numpy as np
import orjson
from aiokafka import TopicPartition

from pipeline.linking.config import LinkingConfig
from pipeline.linking.messages import AccountUpdates, ObservationBatch, decode
from pipeline.linking.process import LinkingProcess
from pipeline.linking.publish import LinkPublisher
from pipeline.linking.topics import LinkTopics
from pipeline.linking.watermark import HOLD, InputWatermark
from pipeline.settings import load_settings
from tests.support.link_builders import FakeBroker, make_batch

TOPICS = LinkTopics.for_group("unit")
OBS = [TopicPartition(TOPICS.observations, p) for p in range(2)]
EDGES = TopicPartition(TOPICS.edges, 0)
INPUTS = [*OBS, EDGES]


class Record(NamedTuple):
    offset: int
    value: bytes


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def behind(*tps: TopicPartition):  # type: ignore[no-untyped-def]
    return lambda tp: tp not in tps  # caught up on every other input


def test_the_watermark_is_the_least_latest_wm_over_the_inputs() -> None:
    wm = InputWatermark(clock=Clock())
    assert wm.value(INPUTS, behind(*INPUTS)) is None  # no source stamps its messages: nothing held
    wm.observe("d1", OBS[0], 5_000)
    wm.observe("d1", EDGES, 9_000)
    assert wm.value(INPUTS, behind(*INPUTS)) == HOLD  # partition 1 has messages, none of d1's read yet
    assert wm.value(INPUTS, behind(OBS[0], EDGES)) == 5_000  # partition 1 read to its end: nothing of d1 there
    wm.observe("d1", OBS[1], 3_000)
    assert wm.value(INPUTS, behind(*INPUTS)) == wm.value(INPUTS, behind()) == 3_000  # read behind the others
    wm.observe("d1", OBS[1], 9_000)
    wm.observe("d1", OBS[0], None)  # an older publisher's message: arrival only
    assert wm.value(INPUTS, behind()) == 5_000
    wm.observe("d1", OBS[0], 8_000)  # the source's own input fell behind: its wm may go back
    assert wm.value(INPUTS, behind()) == 8_000
    wm.end("d1", OBS[0])
    assert wm.value(INPUTS, behind()) == 9_000  # d1 sends nothing more to partition 0
    wm.end("d1", OBS[1])
    wm.end("d1", EDGES)
    assert wm.value(INPUTS, behind(*INPUTS)) is None  # every end marker read: d1 is done


def test_a_source_heard_of_no_more_stops_holding_the_watermark_back() -> None:
    clock = Clock()
    wm = InputWatermark(idle_s=30, clock=clock)
    for tp in INPUTS:
        wm.observe("restarted", tp, 1_000)
    clock.now = 20.0
    for tp in INPUTS:
        wm.observe("live", tp, 8_000)
    assert wm.value(INPUTS, behind()) == 1_000
    clock.now = 30.0
    assert wm.value(INPUTS, behind()) == 8_000
    wm.observe("restarted", OBS[0], None)  # forgotten, not revived by an unstamped message
    assert wm.value(INPUTS, behind()) == 8_000


def test_every_partition_and_the_edges_topic_carry_each_batchs_latest_event_time(config: LinkingConfig) -> None:
    broker = FakeBroker()
    publisher = LinkPublisher(config, broker.send, observations_topic=TOPICS.observations, edges_topic=TOPICS.edges,
                              partitions=4, source_id="d1")
    accounts = ["a", "b"]
    batch = make_batch(accounts, pay=["pf", "pf"], ts=[1_000, 7_000])
    prepared = publisher.prepare(batch, accounts, np.zeros(2), np.full(2, 10.0), dict.fromkeys(accounts, 10.0))
    asyncio.run(publisher.send(prepared))
    messages = {tp: [decode(v) for v in values] for tp, values in broker.log.items()}
    assert set(messages) == {*((TOPICS.observations, p) for p in range(4)), (TOPICS.edges, 0)}
    # Without a wm from the detect step, the batch's own: its newest event or closed frame's end (1:00).
    assert all(m.wm == 60_000 for ms in messages.values() for m in ms)  # type: ignore[union-attr]
    rows = [len(m.f) for p in range(4) for m in messages[(TOPICS.observations, p)]]  # type: ignore[union-attr]
    assert sum(rows) == prepared.n_observations and 0 in rows  # partitions without observations: empty ones
    empty = next(v for (t, _), vs in broker.log.items() for v in vs if t == TOPICS.observations
                 and not orjson.loads(v)["f"])
    assert orjson.loads(empty)["v"] == 4 and isinstance(decode(empty), ObservationBatch)


class Consumer:
    """What the process asks its consumer for the watermark: the assignment and each high watermark."""

    def __init__(self, highwater: dict[TopicPartition, int]) -> None:
        self.highwater_of = highwater

    def assignment(self) -> set[TopicPartition]:
        return set(self.highwater_of)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwater_of.get(tp)


def test_the_process_gates_on_what_a_fetch_left_unread(config: LinkingConfig) -> None:
    """A fetch brings two batches' messages of the edges topic and partition 0 but only the first's of
    partition 1: the watermark is the first batch's; once partition 1 is read, the second's."""
    process = LinkingProcess(load_settings(), bounded=False, drain_sources=[], topics=TOPICS, config=config)
    process.init_stage_b(2)
    broker = FakeBroker()
    publisher = LinkPublisher(config, broker.send, observations_topic=TOPICS.observations, edges_topic=TOPICS.edges,
                              partitions=2, source_id="d1")
    for first_ts in (1_000, 61_000):
        batch = make_batch(["a", "b"], pay=["pf", "pf"], ts=[first_ts, first_ts + 500])
        prepared = publisher.prepare(batch, ["a", "b"], np.zeros(2), np.zeros(2), {})
        asyncio.run(publisher.send(prepared))
    log = {TopicPartition(t, p): [Record(i, v) for i, v in enumerate(vs)] for (t, p), vs in broker.log.items()}
    process._consumer = Consumer({tp: len(records) for tp, records in log.items()})  # type: ignore[assignment]
    lagging = OBS[1]
    process.apply_fetch({tp: records for tp, records in log.items() if tp != lagging} | {lagging: log[lagging][:1]})
    assert process.watermark_ms == 60_000 and process.stats_dict()["watermark_ms"] == 60_000
    process.apply_fetch({lagging: log[lagging][1:]})
    assert process.watermark_ms == 61_500
    assert isinstance(decode(log[EDGES][-1].value), AccountUpdates)


def test_alerts_held_for_a_source_that_went_quiet_fire_once_it_is_idle(config: LinkingConfig) -> None:
    """A source said it had read up to 0:50 and sent nothing more: its campaign, due after that, is held,
    then fires (at its due time) from an evaluation with nothing read once the source has been idle 30 s."""
    clock = Clock()
    process = LinkingProcess(load_settings(), bounded=False, drain_sources=[], topics=TOPICS, config=config)
    process.watermark = InputWatermark(clock=clock)
    stage_b = process.init_stage_b(2)
    broker = FakeBroker()
    publisher = LinkPublisher(config, broker.send, observations_topic=TOPICS.observations, edges_topic=TOPICS.edges,
                              partitions=2, source_id="d1")
    fleet = ["f1", "f2", "f3", "f4"]
    for minute, wm in ((0, None), (2, 50_000)):
        batch = make_batch(fleet, pay=["pf"] * 4, ts=[minute * 60_000 + 1_000 + i for i in range(4)])
        prepared = publisher.prepare(batch, fleet, np.full(4, minute * 60), np.full(4, 90.0),
                                     dict.fromkeys(fleet, 90.0), wm=wm)
        asyncio.run(publisher.send(prepared))
    fetched = {TopicPartition(t, p): [Record(i, v) for i, v in enumerate(vs)] for (t, p), vs in broker.log.items()}
    out = process.apply_fetch(fetched)
    assert out.transitions == [] and process.stats_dict()["alerts_held"] == len(fleet)
    clock.now = 29.0
    assert process.apply_fetch({}).transitions == []
    clock.now = 30.0
    out = process.apply_fetch({})
    assert sorted(t.labels["account_id"] for t in out.transitions) == fleet
    assert len({t.starts_at_ms for t in out.transitions}) == 1 and out.transitions[0].starts_at_ms > 50_000
    assert process.watermark_ms is None and not stage_b.tracker.alerting.waiting

"""The linking process's handling of a fetch, without Kafka: stage A in memory, marker tagging, drain."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import numpy as np
from aiokafka import TopicPartition

from pipeline.alerting.engine import AlertSetup
from pipeline.alerting.feedback import FeedbackSuppressions
from pipeline.alerting.rules import load_rules
from pipeline.linking.clusters import cluster_id
from pipeline.linking.config import LinkingConfig
from pipeline.linking.messages import pack_end
from pipeline.linking.process import LinkingProcess
from pipeline.linking.publish import LinkPublisher
from pipeline.linking.topics import LinkTopics
from pipeline.settings import load_settings
from tests.support.link_builders import FakeBroker, make_batch

TOPICS = LinkTopics.for_group("unit")
PARTITIONS = 2


class Record(NamedTuple):
    offset: int
    value: bytes


def fetch_of(broker: FakeBroker, first_offset: int = 0) -> dict[TopicPartition, list[Record]]:
    out = {}
    for (topic, p), values in sorted(broker.log.items()):
        out[TopicPartition(topic, p)] = [Record(first_offset + i, v) for i, v in enumerate(values)]
    broker.log.clear()
    return out


def test_a_fetch_links_in_memory_tags_markers_and_names_the_drained_source(config: LinkingConfig) -> None:
    process = LinkingProcess(load_settings(), bounded=True, drain_sources=["detect-1"], topics=TOPICS, config=config)
    stage_b = process.init_stage_b(PARTITIONS)
    broker = FakeBroker()
    publisher = LinkPublisher(config, broker.send, observations_topic=TOPICS.observations, edges_topic=TOPICS.edges,
                              partitions=PARTITIONS, source_id="detect-1")
    accounts = ["a", "b", "c"]
    batch = make_batch(accounts, pay=["pf"] * 3, ts=[1_000, 2_000, 3_000])
    prepared = publisher.prepare(batch, accounts, np.full(3, 0), np.full(3, 50.0), dict.fromkeys(accounts, 50.0))
    asyncio.run(publisher.send(prepared, drain=True))
    fetched = fetch_of(broker)
    # An observation message misrouted to the edges topic is dropped and counted.
    fetched[TopicPartition(TOPICS.edges, 0)].insert(0, Record(99, next(iter(prepared.observations.values()))[0]))

    out = process.apply_fetch(fetched)
    assert out.drained and stage_b.markers == {("detect-1", 0), ("detect-1", 1), ("detect-1", None)}
    assert [len(members) for members in out.rows.account_ids] == [3]
    assert process.stats.bad_messages == 1 and process.stats.edges == 3
    assert process.take_drained() == ["detect-1"] and process.take_drained() == []
    assert stage_b.take_cluster_changes() == dict.fromkeys(accounts, cluster_id(accounts))
    assert process.offsets == {tp: records[-1].offset + 1 for tp, records in fetched.items()}
    assert process.read_messages == process.uncheckpointed == sum(len(r) for r in fetched.values())


def test_another_sources_complete_markers_are_reported_without_ending_this_drain(config: LinkingConfig) -> None:
    process = LinkingProcess(load_settings(), bounded=True, drain_sources=["mine"], topics=TOPICS, config=config)
    stage_b = process.init_stage_b(PARTITIONS)
    theirs = {TopicPartition(TOPICS.observations, p): [Record(0, pack_end("theirs"))] for p in range(PARTITIONS)}
    theirs[TopicPartition(TOPICS.edges, 0)] = [Record(0, pack_end("theirs"))]
    assert not process.apply_fetch(theirs).drained and not stage_b.drained
    assert process.take_drained() == ["theirs"]


class _Reader:
    """FeedbackReader's surface: ``latest`` gives a newer set or None (nothing new, or Kafka away)."""

    def __init__(self, answers: list[FeedbackSuppressions | None]) -> None:
        self.answers = answers

    async def latest(self) -> FeedbackSuppressions | None:
        return self.answers.pop(0)


def test_feedback_reaches_the_cluster_rules_and_is_kept_when_nothing_newer_comes(config: LinkingConfig) -> None:
    setup = AlertSetup(load_rules(None))
    reader = _Reader([FeedbackSuppressions(), None])
    process = LinkingProcess(load_settings(), bounded=False, drain_sources=[], topics=TOPICS, config=config,
                             alerting=setup, feedback=reader)  # type: ignore[arg-type]
    asyncio.run(process.reload_feedback())
    first = setup.context.feedback
    assert isinstance(first, FeedbackSuppressions)
    asyncio.run(process.reload_feedback())
    assert setup.context.feedback is first and reader.answers == []

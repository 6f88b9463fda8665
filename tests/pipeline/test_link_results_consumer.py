"""The worker's link-results consumer on the embedded broker: write first, then commit; account map; drain."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from kafka.admin import KafkaAdminClient, NewTopic

from jobs.embedded_broker import EmbeddedBroker
from pipeline.alerting.actions import ActionMessage
from pipeline.alerting.alert_rows import AlertRows
from pipeline.alerting.rules import load_rules
from pipeline.alerting.transitions import AlertTransition
from pipeline.linking.cluster_outputs import ClusterRows
from pipeline.linking.results import LinkResult, encode_result
from pipeline.linking.results_consumer import ResultsConsumer, results_group
from tests.support.link_results import alerts, rows

pytestmark = [pytest.mark.slow, pytest.mark.kafka]
TOPIC = "t-link-results"
GROUP = results_group("t")
ME, OTHER = "worker-a:1", "worker-b:2"
WAIT_S = 60.0


class GatedSink:
    """Records writes; the first one waits for ``gate`` (so the test can look at the commit meanwhile)."""

    def __init__(self) -> None:
        self.writes: list[tuple[list[str], list[str], int]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def write(self, rows: ClusterRows, alerts: AlertRows | None, transitions: Sequence[AlertTransition] = ()) -> None:
        self.entered.set()
        assert self.gate.wait(WAIT_S)
        self.writes.append((list(rows.cluster_id), [] if alerts is None else list(alerts.alert_id),
                            len(transitions)))


class FlakyActions:
    """An ActionPublisher whose first publish fails the way Kafka does."""

    def __init__(self) -> None:
        self.published: list[ActionMessage] = []
        self.failures = 1

    async def publish(self, messages: Sequence[ActionMessage]) -> None:
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("broker away")
        self.published.extend(messages)


def page(account: str) -> AlertTransition:
    return AlertTransition("cluster_extraction", "firing",
                           {"alertname": "cluster_extraction", "account_id": account, "cluster_id": "c0",
                            "mode": "page", "action": "takedown", "severity": "warning"},
                           {"summary": "a fleet"}, 5_000, None, 71.5, {"size": 10.0})


async def produce(bootstrap: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(TOPIC, v, partition=0)
    finally:
        await producer.stop()


async def committed(bootstrap: str) -> int | None:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    await reader.start()
    try:
        return await reader.committed(TopicPartition(TOPIC, 0))
    finally:
        await reader.stop()


async def until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def scenario(bootstrap: str) -> None:
    first = LinkResult(rows(2), alerts(1), [page("acct-1"), page("acct-2")], {"acct-1": "c0", "acct-2": "c0"},
                       [], {"observations": 5})
    moved = LinkResult(cluster_of={"acct-1": ""}, drained_sources=[OTHER], stats={"observations": 9})
    await produce(bootstrap, [encode_result(first), b"not a result", encode_result(moved)])
    sink, actions = GatedSink(), FlakyActions()
    consumer = ResultsConsumer([bootstrap], TOPIC, GROUP, sink, source_id=ME, rules=load_rules(None),
                               actions=actions)  # type: ignore[arg-type]
    await consumer.start()
    try:
        assert await asyncio.to_thread(sink.entered.wait, WAIT_S)
        assert await committed(bootstrap) is None  # nothing committed while the first result is being written
        sink.gate.set()

        async def all_committed() -> bool:
            return await committed(bootstrap) == 3

        await until(all_committed, "the commit of the three messages")
        assert sink.writes == [(["c0", "c1"], ["a0"], 2)]  # once; the others carried no rows
        assert [m.key for m in actions.published] == [b"c0"]  # one campaign action, after a retry
        assert consumer.cluster_of == {"acct-2": "c0"}
        assert consumer.stats == {"observations": 9} and consumer.bad_results == 1 and consumer.results == 2
        assert not consumer.drained.is_set()  # another worker's drain
        await produce(bootstrap, [encode_result(LinkResult(drained_sources=[OTHER, ME]))])
        await asyncio.wait_for(consumer.drained.wait(), WAIT_S)
    finally:
        await consumer.stop()

    # A new consumer of the group starts after the committed results: nothing is written twice; its
    # account map starts from the clusters written so far (ClickHouse in the worker) and the results on top.
    again = ResultsConsumer([bootstrap], TOPIC, GROUP, sink, source_id=ME,
                            seed=lambda: {"acct-2": "c0", "acct-9": "c0"})
    await again.start()
    try:
        await produce(bootstrap, [encode_result(LinkResult(cluster_of={"acct-9": "c9"}, stats={"clusters": 1}))])

        async def applied() -> bool:
            return again.results == 1

        await until(applied, "the next result")
        assert again.cluster_of == {"acct-2": "c0", "acct-9": "c9"} and len(sink.writes) == 1
        assert not again.drained.is_set()
    finally:
        await again.stop()


def test_results_are_written_then_committed_and_the_drain_is_ours_only(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        admin = KafkaAdminClient(bootstrap_servers=[broker.bootstrap])
        admin.create_topics([NewTopic(TOPIC, 1, 1)])
        admin.close()
        asyncio.run(scenario(broker.bootstrap))

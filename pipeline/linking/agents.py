"""Register the linking stages on a Faust app: two thin agents, four tables, one publisher.

Topology (``register_linking``)::

    detect step ──LinkPublisher──▶ dw-link-observations (N partitions, by feature)
                └────────────────▶ dw-link-edges (account updates)
    dw-link-observations ──link-features agent (stage A, table dw-link-features)──▶ dw-link-edges
    dw-link-edges (1 partition) ──link-clusters agent (stage B, tables dw-link-pairs,
                                   dw-link-accounts, dw-link-alerted)──▶ ClickHouse clusters + alerts

The agents only decode, call ``stages`` and hand results on; all rules live in the
Faust-free modules. Tables keep their changelogs in Kafka (Faust creates
``<app id>-<table>-changelog``) and are recovered on start; stage B rebuilds its
in-memory indexes from its recovered tables before the next message.

Both topics must exist before the worker starts (Kafka or Tansu would auto-create
them with the broker's default partition count): create ``observations`` with
``observation_partitions`` partitions and ``edges`` with exactly 1.
``Linking.drain_complete`` is set when stage B has passed the drain barrier
(``stages`` module) and written its final rows, or when a linking agent crashed
(``Linking.error`` then holds the exception; the agent stays down, Faust's default).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError

from pipeline.alerting.actions import ActionMessage, ActionPublisher, action_messages
from pipeline.alerting.engine import AlertSetup
from pipeline.linking.backlog import STAGE_CLUSTERS, STAGE_FEATURES, stage_backlog
from pipeline.linking.config import LinkingConfig
from pipeline.linking.messages import EndMarker, Message, MessageError, ObservationBatch, decode, pack_edges, pack_end
from pipeline.linking.publish import LinkPublisher, SendFn
from pipeline.linking.sink import ClusterSink, write_with_retry
from pipeline.linking.stages import ClusterStage, FeatureStage, StageStats

log = logging.getLogger(__name__)

# Stage B gathers up to this many messages (or waits this long) per evaluation and write.
TAKE_MESSAGES = 256
TAKE_WITHIN_S = 0.5
# A bounded worker waiting for the linking drain re-sends its end markers this often.
MARKER_RESEND_S = 5.0
# How often the stages' input backlog is measured (``backlog.stage_backlog``).
BACKLOG_CHECK_S = 5.0


@dataclass(frozen=True)
class LinkTopics:
    observations: str = "dw-link-observations"
    edges: str = "dw-link-edges"

    @classmethod
    def for_group(cls, group: str) -> LinkTopics:
        """``<group>-link-observations`` and ``<group>-link-edges``: every consumer group (a replay) its own."""
        return cls(f"{group}-link-observations", f"{group}-link-edges")

    def partitions(self, observation_partitions: int) -> dict[str, int]:
        """Topic -> partition count, for ``pipeline.topics.ensure_topics(settings, extra=...)``."""
        return {self.observations: observation_partitions, self.edges: 1}


@dataclass
class Linking:
    """What the worker holds after ``register_linking``."""

    publisher: LinkPublisher
    stats: StageStats
    topics: LinkTopics
    drain_complete: asyncio.Event = field(default_factory=asyncio.Event)
    feature_stage: FeatureStage | None = None
    cluster_stage: ClusterStage | None = None
    error: BaseException | None = None  # an agent crashed: linking stopped, drain_complete released
    # Stage -> messages waiting in its input partitions held here (``backlog``), sampled every BACKLOG_CHECK_S.
    backlog: dict[str, int] = field(default_factory=dict)

    def fail(self, exc: BaseException) -> None:
        """Record a crash and release ``drain_complete``: a bounded worker must not wait for ever."""
        log.exception("linking stopped: an agent crashed", exc_info=exc)
        self.error = exc
        self.drain_complete.set()

    async def wait_drained(self, resend_every_s: float = MARKER_RESEND_S) -> None:
        """Wait for stage B's drain barrier (or a crash), re-sending this source's end markers
        every ``resend_every_s``: stage B may have run on another bounded worker of the group
        that consumed them and left, so the copy that moved here never saw them."""
        while not self.drain_complete.is_set():
            try:
                await asyncio.wait_for(self.drain_complete.wait(), timeout=resend_every_s)
            except TimeoutError:
                log.info("linking not drained yet (%d of this source's end markers seen by a local stage B): "
                         "re-sending them", self._own_markers_seen())
                try:
                    await self.publisher.send_end_markers()
                except KafkaError as exc:  # the broker is away: try again next round
                    log.warning("could not re-send end markers: %s", exc)

    def _own_markers_seen(self) -> int:
        stage = self.cluster_stage
        return 0 if stage is None else len(stage.expected_markers & stage.markers)

    def as_dict(self) -> dict[str, Any]:
        p = self.publisher
        return {**self.stats.as_dict(), "observations_sent": p.sent_observations,
                "observations_already_sent": p.sent.skipped, "messages_sent": p.sent_messages,
                "publish_prepare_s": round(p.prepare_s, 3), "publish_send_s": round(p.send_s, 3),
                "drained": self.drain_complete.is_set(), "error": None if self.error is None else repr(self.error),
                "backlog": dict(self.backlog)}


def _raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    return app.topic(name, partitions=partitions, key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")


def register_linking(
    app: faust.App,
    config: LinkingConfig,
    sink: ClusterSink,
    *,
    observation_partitions: int,
    topics: LinkTopics | None = None,
    bounded: bool = False,
    source_id: str | None = None,
    on_drained: Callable[[], None] | None = None,
    publish_send: SendFn | None = None,
    alerting: AlertSetup | None = None,
    actions: ActionPublisher | None = None,
) -> Linking:
    """Declare the topics, tables and both agents on ``app``; return the handle for the detect step.

    Stage B's drain barrier waits for this worker's own end markers (``source_id``, default
    host:pid). ``bounded`` (replay): cluster alerts are evaluated
    once, at the drain, so their event times do not depend on arrival interleaving.
    ``on_drained`` runs once, after the final rows are written, in the event loop.
    ``publish_send`` is what the detect step's publisher sends with (default: Faust's producer;
    the worker gives it its own, ``producer.LinkProducer``).
    ``alerting``: the rules (cluster rules), allow-list and feedback; ``actions``: where stage B
    publishes the recommended actions of its cluster alerts, after writing their rows.
    """
    topics = topics or LinkTopics()
    observations = _raw_topic(app, topics.observations, observation_partitions)
    edges = _raw_topic(app, topics.edges, 1)
    features = app.Table("dw-link-features", partitions=observation_partitions, key_type=str)
    # Stage B's topic has one partition; the partitioner sends every change to changelog partition 0.
    pairs = app.Table("dw-link-pairs", partitions=1, key_type=str, use_partitioner=True)
    accounts = app.Table("dw-link-accounts", partitions=1, key_type=str, use_partitioner=True)
    alerted = app.Table("dw-link-alerted", partitions=1, key_type=str, use_partitioner=True)

    async def send(topic: str, partition: int, value: bytes) -> Awaitable[object]:
        try:
            return await app.producer.send(topic, None, value, partition, None, None)
        except ProducerSendError as exc:  # Faust's wrapper: re-raise what callers retry on
            raise KafkaError(str(exc)) from exc

    stats = StageStats()
    publisher = LinkPublisher(config, publish_send or send, observations_topic=topics.observations,
                              edges_topic=topics.edges, partitions=observation_partitions, source_id=source_id)
    stage_a = FeatureStage(features, config, stats)
    stage_b = ClusterStage(config, pairs, accounts, alerted,
                           drain_sources=[publisher.source_id], partitions=observation_partitions,
                           defer_alerts=bounded,
                           stats=stats, alerting=alerting)
    linking = Linking(publisher, stats, topics, feature_stage=stage_a, cluster_stage=stage_b)

    for table in (pairs, accounts, alerted):
        table.on_recover(_reset_after(stage_b))

    def parse(value: bytes) -> Message | None:
        try:
            return decode(value)
        except MessageError as exc:
            stats.bad_messages += 1
            log.error("linking: dropped a malformed message: %s", exc)
            return None

    async def link_features(stream: faust.StreamT) -> None:
        try:
            await _features(stream)
        except Exception as exc:
            linking.fail(exc)
            raise

    async def link_clusters(stream: faust.StreamT) -> None:
        try:
            await _clusters(stream)
        except Exception as exc:
            linking.fail(exc)
            raise

    async def _features(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = parse(event.value)
            partition = event.message.partition
            if isinstance(msg, ObservationBatch):
                started = time.perf_counter()
                out = stage_a.handle(msg, partition)
                stats.stage_a_s += time.perf_counter() - started
                if len(out):
                    started = time.perf_counter()
                    for value in pack_edges(out):
                        await (await send(topics.edges, 0, value))
                    stats.stage_a_send_s += time.perf_counter() - started
            elif isinstance(msg, EndMarker):
                # After this partition's edges (awaited above): the order stage B relies on.
                await (await send(topics.edges, 0, pack_end(msg.src, partition)))

    async def _clusters(stream: faust.StreamT) -> None:
        async for values in stream.take(TAKE_MESSAGES, within=TAKE_WITHIN_S):
            started = time.perf_counter()
            out = stage_b.handle([m for m in map(parse, values) if m is not None])
            stats.stage_b_s += time.perf_counter() - started
            started = time.perf_counter()
            await write_with_retry(sink, out.rows, out.alerts, out.transitions)  # transitions: to the outbox
            if actions is not None and out.transitions:
                await _publish_actions(actions, action_messages(out.transitions, stage_b.tracker.alerting.setup.rules))
            stats.stage_b_write_s += time.perf_counter() - started
            if out.drained:
                linking.drain_complete.set()
                log.info("linking drained: %s", linking.as_dict())
                if on_drained is not None:
                    on_drained()

    app.agent(observations, name="link-features")(link_features)
    app.agent(edges, name="link-clusters")(link_clusters)

    async def measure_backlog() -> None:
        stage_topics = {STAGE_FEATURES: topics.observations, STAGE_CLUSTERS: topics.edges}
        linking.backlog = await stage_backlog(app.consumer, stage_topics)

    app.timer(interval=BACKLOG_CHECK_S, name="link-backlog")(measure_backlog)
    return linking


async def _publish_actions(publisher: ActionPublisher, messages: list[ActionMessage]) -> None:
    """Publish, retrying with back-off while Kafka refuses (stage B holds its input meanwhile)."""
    attempt = 0
    while True:
        try:
            await publisher.publish(messages)
            return
        except KafkaError as exc:
            pause = min(0.5 * 2 ** attempt, 10.0)
            log.warning("publishing %d cluster actions failed (%s); retry %d in %.1fs", len(messages), exc,
                        attempt + 1, pause)
            attempt += 1
            await asyncio.sleep(pause)


def _reset_after(stage: ClusterStage) -> Callable[[], Awaitable[None]]:
    async def reset() -> None:
        stage.reset()

    return reset

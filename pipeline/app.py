"""The worker: Kafka source → detect loop → ClickHouse, the linking child, and the web views.

    api-calls ──KafkaBatchSource (whole fetches)──▶ bounded queue ──detect loop──▶ DetectStep
        (decode, drop resent copies, Numba frames, score, alert rules; dead letters → ClickHouse
         → linking topics → state checkpoint → offsets, in that order: detect/step.py)
    <group>-link-results ──results consumer──▶ ClickHouse (clusters, cluster alerts), outbox, actions

Linking runs in its own process (pipeline/linking/process.py; ``DW_LINKING``). The queue is a
plain asyncio queue, not a Faust channel: Faust clears channel buffers on its own rebalances
(docs/architecture.md). Web views: pipeline/web/views.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import faust
from aiokafka.errors import KafkaError
from mode import Service

from pipeline.alerting.actions import ActionPublisher
from pipeline.alerting.delivery import build_alert_delivery
from pipeline.alerting.engine import AlertSetup
from pipeline.alerting.feedback import FeedbackSuppressions
from pipeline.detect.detector import Detector
from pipeline.detect.step import DetectStep
from pipeline.drain_marker import (  # noqa: F401 (DRAIN_MARKER, drain_marker_path: re-exported)
    DRAIN_MARKER,
    drain_marker_path,
    wait_for_file,
    write_drain_marker,
)
from pipeline.linking.config import load_linking_config
from pipeline.linking.feedback_feed import FeedbackPublisher
from pipeline.linking.handle import Linking
from pipeline.linking.producer import LinkProducer
from pipeline.linking.publish import LinkPublisher, default_source_id
from pipeline.linking.results_consumer import ResultsConsumer, current_clusters, results_group
from pipeline.linking.sink import ClickHouseClusterSink
from pipeline.linking.supervisor import DRAINED_EXIT_WAIT_S, LinkingSupervisor
from pipeline.linking.topics import LinkTopics
from pipeline.metrics import WorkerCollector, WorkerMetrics
from pipeline.scoring import load_scoring_config
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import ClickHouseWriter, connect, connect_read_only
from pipeline.sinks.dead_letter import DeadLetterSink
from pipeline.sources.fetched_batch import FetchedBatch
from pipeline.sources.kafka_batches import KafkaBatchSource
from pipeline.state.manager import StateManager
from pipeline.state.state_topic import StateTopic
from pipeline.stats import PipelineStats
from pipeline.topics import ensure_topics, partition_count
from pipeline.warm_up import warm_up_kernels
from pipeline.web.views import add_views

log = logging.getLogger("distillwatch")

# The worker reloads analysts' false-positive verdicts (alert_feedback) this often.
FEEDBACK_REFRESH_S = 30.0
# How often a bounded worker with DW_DRAIN_TRIGGER_FILE looks for that file.
DRAIN_TRIGGER_POLL_S = 0.1


class Pipeline:
    """Everything the worker owns, built once at start from Settings."""

    def __init__(self, settings: Settings, *, bounded: bool, exit_when_drained: bool) -> None:
        self.settings = settings
        self.exit_when_drained = exit_when_drained
        self.bounded = bounded
        self.stats = PipelineStats()
        self.metrics = WorkerMetrics()
        self.link_topics = LinkTopics.for_group(settings.consumer_group)
        self.link_config = load_linking_config(settings.linking_config)
        # Alert rules and allow-list, validated now (a bad file stops the start, naming the field).
        self.alerting = AlertSetup.from_settings(settings, load_scoring_config(settings.scoring_config))
        ensure_topics(settings, extra=self.link_topics.partitions(settings.partitions))
        self.n_partitions = partition_count(settings, settings.topic_events)
        self.client = connect(settings, apply_retention=True)  # the worker owns the tables' TTLs
        self.read_client = connect_read_only(settings)  # /query's: a readonly=1 session of its own
        self.writer = ClickHouseWriter(self.client, settings.clickhouse_database)
        # Alert transitions → alert_notifications rows → the notifiers (a task of its own, see _Lifecycle).
        self.outbox, self.delivery = build_alert_delivery(settings, self.writer, self.client, self.metrics)
        # The verdicts last loaded (None until a load succeeds), published to the linking process.
        self.loaded_feedback: FeedbackSuppressions | None = None
        self.feedback_feed = (None if settings.linking == "off"
                              else FeedbackPublisher(settings.bootstrap_servers, self.link_topics.feedback))
        self.load_feedback()
        self.dead_letters = DeadLetterSink(settings.bootstrap_servers, settings.topic_dlq)
        self.state_topic = StateTopic(settings.bootstrap_servers, settings.state_topic)
        self.state = StateManager(
            make_detector=lambda: Detector(settings, self.n_partitions, alerting=self.alerting),
            topic=self.state_topic,
            events_topic=settings.topic_events, bootstrap_servers=settings.bootstrap_servers,
            dedup_window=settings.dedup_window, decode=lambda *batch: self.step.decode(*batch),
        )
        self.app = self._build_app()
        publisher = None if self.linking is None else self.linking.publisher
        self.step = DetectStep(settings, self.state, self.writer, self.dead_letters, self.stats,
                               on_drained=self._on_drained, linking=publisher, metrics=self.metrics,
                               outbox=self.outbox, actions=self.actions, overlap_writes=True)
        # With a drain trigger the drain waits for it (_Lifecycle._drain_when_triggered): the input is still coming.
        self.source = KafkaBatchSource(settings, self._enqueue,
                                       drain_at_start=bounded and settings.drain_trigger_file is None,
                                       on_assigned=self.step.assign, before_revoke=self.step.begin_revoke)
        self.metrics.watch(WorkerCollector(self.step, linking_config=self.link_config, source=self.source,
                                           linking=self.linking))

    @property
    def detector(self) -> Detector:
        return self.state.detector

    def load_feedback(self) -> None:
        """Reload analysts' false positives for the rules engine (keeps the last set when ClickHouse fails)."""
        try:
            found = FeedbackSuppressions.load(self.client, self.settings.clickhouse_database)
        except Exception as exc:  # ClickHouse away or the table not there yet
            log.warning("could not reload alert feedback: %s", exc)
            return
        self.alerting.context.feedback = self.loaded_feedback = found

    async def publish_feedback(self) -> None:
        """Hand the last loaded verdicts to the linking process (it cannot read embedded ClickHouse);
        sent only when they changed. A failure is retried after the next reload."""
        if self.feedback_feed is None or self.loaded_feedback is None or not self.feedback_feed.started:
            return  # before _Lifecycle started the feed (a first start compiling kernels takes over 30 s)
        try:
            await self.feedback_feed.publish(self.loaded_feedback)
        except KafkaError as exc:
            log.warning("could not publish alert feedback to the linking process (retried after the next "
                        "reload): %s", exc)

    def _on_drained(self) -> None:
        if self.exit_when_drained:
            self._exit_task = asyncio.ensure_future(self._exit_after_linking())

    async def _exit_after_linking(self) -> None:
        # The linking process still holds the input's tail: wait for the result that names this
        # worker's source drained (final cluster rows written), then the same path as `kill -TERM`.
        linking = self.linking
        if linking is not None:
            await linking.wait_drained()
            if linking.supervisor is not None:
                if self.bounded:  # an active bounded child exits by itself after the drain
                    await linking.supervisor.wait_exit(DRAINED_EXIT_WAIT_S)
                await linking.supervisor.stop()
        write_drain_marker(self.settings, None if linking is None else linking.drain_error)
        os.kill(os.getpid(), signal.SIGTERM)

    def _build_linking(self) -> Linking | None:
        """DW_LINKING: child (a linking process of our own), external (someone runs it) or off."""
        s = self.settings
        if s.linking == "off":
            return None
        source_id = default_source_id()
        publisher = LinkPublisher(self.link_config, self.link_producer.send,
                                  observations_topic=self.link_topics.observations, edges_topic=self.link_topics.edges,
                                  partitions=partition_count(s, self.link_topics.observations), source_id=source_id)
        results = ResultsConsumer(s.bootstrap_servers, self.link_topics.results, results_group(s.consumer_group),
                                  ClickHouseClusterSink(self.writer, outbox=self.outbox), source_id=source_id,
                                  rules=self.alerting.rules, actions=self.actions,
                                  seed=lambda: current_clusters(self.client, s.clickhouse_database))
        supervisor = (LinkingSupervisor.for_worker(s, bounded=self.bounded, drain_source=source_id)
                      if s.linking == "child" else None)
        return Linking(publisher, results, supervisor)

    def _build_app(self) -> faust.App:
        s = self.settings
        app = faust.App(
            s.consumer_group,
            broker=[f"kafka://{b}" for b in s.bootstrap_servers],
            store="memory://",
            datadir=str(s.data_dir / "faust"),
            web_host=s.web_host,
            web_port=s.web_port,
            web_in_thread=False,
            topic_partitions=s.partitions,
            # Tansu holds a join for the whole rebalance timeout; keep it short.
            broker_rebalance_timeout=4,
            broker_session_timeout=10,
            broker_heartbeat_interval=1,
            producer_compression_type=None,
        )
        # Bounded: at most two fetched batches wait; a busy detect loop stops the source.
        self.batches: asyncio.Queue[FetchedBatch] = asyncio.Queue(maxsize=2)
        self.link_producer = LinkProducer(s.bootstrap_servers)
        self.actions = ActionPublisher(s.bootstrap_servers, s.topic_actions)
        self.linking = self._build_linking()
        if self.linking is not None:  # account alerts carry the cluster the linking process reported
            self.alerting.context.cluster_of = self.linking.results.cluster_of.get
        app.service(_Lifecycle(self))
        pipeline = self

        @app.timer(interval=max(s.checkpoint_interval_s, 0.2))
        async def checkpoint_when_idle() -> None:
            # Batches written but not committed because none followed within the interval.
            await pipeline.step.flush_if_due()

        @app.timer(interval=FEEDBACK_REFRESH_S)
        async def reload_feedback() -> None:
            # Analysts' false positives silence the rules engine within this interval.
            await asyncio.to_thread(pipeline.load_feedback)
            await pipeline.publish_feedback()

        add_views(app, pipeline)
        return app

    async def _enqueue(self, batch: FetchedBatch) -> None:
        await self.batches.put(batch)


class _Lifecycle(faust.Service):  # type: ignore[misc]
    """Starts and stops the source, the producers and the detect loop with the app."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__()
        self.pipeline = pipeline

    async def on_start(self) -> None:
        # Load every compiled kernel now (compiled once on a fresh install), so the first batch is not the slow one.
        log.info("loading Numba kernels (compiled and cached on the first run only)…")
        log.info("kernels ready in %.1fs", await asyncio.to_thread(warm_up_kernels))
        await self.pipeline.dead_letters.start()
        await self.pipeline.link_producer.start()
        await self.pipeline.actions.start()
        await self.pipeline.state_topic.start()
        await self.pipeline.delivery.start()
        if self.pipeline.feedback_feed is not None:
            await self.pipeline.feedback_feed.start()
            await self.pipeline.publish_feedback()  # the set loaded at start
        if (linking := self.pipeline.linking) is not None:
            await linking.results.start()
            if linking.supervisor is not None:
                await linking.supervisor.start()
        await self.add_runtime_dependency(self.pipeline.source)

    async def on_stop(self) -> None:
        if (linking := self.pipeline.linking) is not None:
            if linking.supervisor is not None:  # first: its last results are still applied meanwhile
                await linking.supervisor.stop()
            await linking.results.stop()
        if self.pipeline.feedback_feed is not None:
            await self.pipeline.feedback_feed.stop()
        await self.pipeline.delivery.stop()
        await self.pipeline.dead_letters.stop()
        await self.pipeline.link_producer.stop()
        await self.pipeline.actions.stop()
        await self.pipeline.state_topic.stop()

    @Service.task
    async def _drain_when_triggered(self) -> None:
        # DW_DRAIN_TRIGGER_FILE: the input is still being produced; drain once it is all there.
        path, pipeline = self.pipeline.settings.drain_trigger_file, self.pipeline
        if path is None or not pipeline.bounded:
            return
        if await wait_for_file(path, lambda: self.should_stop, DRAIN_TRIGGER_POLL_S):
            log.info("drain trigger %s found: reading to the end of input", path)
            pipeline.source.request_drain()

    @Service.task
    async def _detect_loop(self) -> None:
        # One batch at a time, in order. An exception stops the worker: the batch was
        # not committed, so a restart reads it again from the last checkpoint.
        batches, step = self.pipeline.batches, self.pipeline.step
        while not self.should_stop:
            await step.handle(await batches.get())


def build_pipeline(settings: Settings, *, bounded: bool = False, exit_when_drained: bool = True) -> Pipeline:
    return Pipeline(settings, bounded=bounded, exit_when_drained=exit_when_drained)

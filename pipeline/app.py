"""The Faust app: source service → detect agent → ClickHouse, plus web views.

Topology (one worker process):

    api-calls ──KafkaBatchSource (aiokafka getmany, whole fetches)──▶ channel
    channel ──detect agent──▶ decode ▶ Numba frames ▶ score ▶ alert rule
            └──▶ ClickHouse (api_calls, signatures_1m, alerts, rejected_events)
            └──▶ api-calls-dlq (rejected bytes + reason headers)
            └──▶ ack: commit the batch's offsets

The detect agent is thin: it hands each batch to ``agents.detect.DetectStep``,
which documents and follows the commit order (dead letters → ClickHouse →
offsets).

Web views (Faust's web server): ``GET /stats``, ``GET /health``,
``GET /query?sql=SELECT…`` (read-only SQL, the way to query embedded ClickHouse
while the worker holds it), ``POST /drain`` (read to the end, close every frame,
commit and stop: bounded input).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import faust
from faust.web import Request, Response, View

from pipeline.agents.detect import DetectStep
from pipeline.detection import Detector
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import ClickHouseWriter, connect, query_rows
from pipeline.sinks.dead_letter import DeadLetterSink
from pipeline.sources.fetched_batch import FetchedBatch
from pipeline.sources.kafka_batches import KafkaBatchSource
from pipeline.stats import PipelineStats
from pipeline.topics import ensure_topics, partition_count

log = logging.getLogger("distillwatch")

_READ_ONLY_PREFIXES = ("select", "with", "show", "describe", "desc", "explain", "exists")


class Pipeline:
    """Everything the worker owns, built once at start from Settings."""

    def __init__(self, settings: Settings, *, bounded: bool, exit_when_drained: bool) -> None:
        self.settings = settings
        self.exit_when_drained = exit_when_drained
        self.stats = PipelineStats()
        ensure_topics(settings)
        self.n_partitions = partition_count(settings, settings.topic_events)
        self.client = connect(settings)
        self.writer = ClickHouseWriter(self.client, settings.clickhouse_database)
        self.detector = Detector(settings, self.n_partitions)
        self.dead_letters = DeadLetterSink(settings.bootstrap_servers, settings.topic_dlq)
        self.app = self._build_app()
        self.source = KafkaBatchSource(settings, self._enqueue, drain_at_start=bounded)
        self.step = DetectStep(settings, self.detector, self.writer, self.dead_letters, self.stats,
                               on_drained=self._on_drained)

    def _on_drained(self) -> None:
        if self.exit_when_drained:
            # The same path as `kill -TERM`: Faust stops every service cleanly.
            os.kill(os.getpid(), signal.SIGTERM)

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
        # Bounded: at most two fetched batches wait; a busy agent stops the source.
        self.batches = app.channel(maxsize=2)
        app.agent(self.batches, name="detect")(self._detect_agent)
        app.service(_Lifecycle(self))
        pipeline = self

        @app.page("/stats")
        class StatsView(View):
            async def get(self, request: Request) -> Response:
                pipeline.stats.accounts = len(pipeline.detector.accounts)
                return self.json(pipeline.stats.as_dict())

        @app.page("/health")
        class HealthView(View):
            async def get(self, request: Request) -> Response:
                ok = pipeline.stats.clickhouse_available
                return self.json({"ok": ok}, status=200 if ok else 503)

        @app.page("/query")
        class QueryView(View):
            async def get(self, request: Request) -> Response:
                sql = request.query.get("sql", "").strip()
                if not sql.lower().startswith(_READ_ONLY_PREFIXES):
                    return self.json({"error": "only read-only statements (SELECT, WITH, SHOW, …)"},
                                     status=400)
                try:
                    rows = await asyncio.to_thread(query_rows, pipeline.client, sql)
                except Exception as exc:  # the user's SQL: report, never crash the worker
                    return self.json({"error": str(exc)}, status=400)
                return self.json({"rows": rows}, default=str)

        @app.page("/drain")
        class DrainView(View):
            async def post(self, request: Request) -> Response:
                pipeline.source.request_drain()
                return self.json({"draining": True})

        return app

    async def _enqueue(self, batch: FetchedBatch) -> None:
        await self.batches.send(value=batch)

    async def _detect_agent(self, stream: faust.StreamT) -> None:
        async for batch in stream:
            await self.step.handle(batch)


class _Lifecycle(faust.Service):  # type: ignore[misc]
    """Starts and stops the source and the dead-letter producer with the app."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__()
        self.pipeline = pipeline

    async def on_start(self) -> None:
        await self.pipeline.dead_letters.start()
        await self.add_runtime_dependency(self.pipeline.source)

    async def on_stop(self) -> None:
        await self.pipeline.dead_letters.stop()


def build_pipeline(settings: Settings, *, bounded: bool = False, exit_when_drained: bool = True) -> Pipeline:
    return Pipeline(settings, bounded=bounded, exit_when_drained=exit_when_drained)

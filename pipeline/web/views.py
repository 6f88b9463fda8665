"""The worker's web views: /stats, /metrics, /health, /query (read-only SQL), /drain (docs/operations.md)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import TYPE_CHECKING

import faust
from faust.web import Request, Response, View

from pipeline.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from pipeline.web.auth import check_bearer
from pipeline.web.query import answer_query
from pipeline.web.reply import Reply

if TYPE_CHECKING:
    from pipeline.app import Pipeline


class _WorkerView(View):
    pipeline: Pipeline  # the worker's, set on the subclass add_views registers

    def send(self, reply: Reply) -> Response:
        return self.bytes(reply.body, content_type=reply.content_type, status=reply.status, headers=reply.headers)

    def denied(self, request: Request) -> Response | None:
        """The 401 reply when DW_WEB_TOKEN is set and the request does not carry it."""
        denied = check_bearer(request.headers.get("Authorization"), self.pipeline.settings.web_token)
        return None if denied is None else self.send(denied)


class StatsView(_WorkerView):
    async def get(self, request: Request) -> Response:
        pipeline = self.pipeline
        pipeline.stats.accounts = len(pipeline.detector.accounts)
        stats = pipeline.stats.as_dict()
        stats["state"] = asdict(pipeline.state.stats)
        stats["partitions"] = sorted(pipeline.state.owned)
        stats["commit_errors"] = pipeline.source.commit_errors
        stats["source_fetched_events"] = pipeline.source.fetched_events
        stats["partition_lag"] = pipeline.source.progress.lags()
        stats["stalled_partitions"] = sorted(pipeline.source.progress.stalled)
        stats["linking"] = {"mode": "off"} if pipeline.linking is None else pipeline.linking.as_dict()
        return self.json(stats)


class MetricsView(_WorkerView):
    # Open even when DW_WEB_TOKEN is set: Prometheus scrapes it, and it holds no account data.
    async def get(self, request: Request) -> Response:
        # In headers: aiohttp refuses a content_type argument that carries a charset.
        return self.bytes(self.pipeline.metrics.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})


class HealthView(_WorkerView):
    async def get(self, request: Request) -> Response:
        pipeline = self.pipeline
        stalled = sorted(pipeline.source.progress.stalled)
        linking_error = None if pipeline.linking is None else pipeline.linking.error
        ok = pipeline.stats.clickhouse_available and not stalled and linking_error is None
        return self.json({"ok": ok, "clickhouse_available": pipeline.stats.clickhouse_available,
                          "stalled_partitions": stalled, "linking_error": linking_error},
                         status=200 if ok else 503)


class QueryView(_WorkerView):
    async def get(self, request: Request) -> Response:
        if (denied := self.denied(request)) is not None:
            return denied
        # Read-only by ClickHouse's own settings, not by prefix: pipeline/sinks/read_only.py.
        return self.send(await asyncio.to_thread(answer_query, self.pipeline.read_client, request.query))


class DrainView(_WorkerView):
    async def post(self, request: Request) -> Response:
        if (denied := self.denied(request)) is not None:
            return denied
        self.pipeline.source.request_drain()
        return self.json({"draining": True})


VIEWS: dict[str, type[_WorkerView]] = {"/stats": StatsView, "/metrics": MetricsView, "/health": HealthView,
                                       "/query": QueryView, "/drain": DrainView}


def add_views(app: faust.App, pipeline: Pipeline) -> None:
    """Serve VIEWS from ``app``, each reading ``pipeline`` (faust builds a view from its class alone)."""
    for path, view in VIEWS.items():
        app.page(path)(type(view.__name__, (view,), {"pipeline": pipeline}))

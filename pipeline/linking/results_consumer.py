"""The worker's reader of ``<group>-link-results``: the linking process's output, applied here.

The linking process cannot write embedded ClickHouse (one process per data directory), so each
``LinkResult`` is applied by the worker, in order: rows and page transitions (``sink``), their
actions, ``cluster_of`` and stats, then the offset commit (group ``<group>.link-results``):
committed only after it was written, so a crash re-applies it (idempotent). ``cluster_of`` is
seeded at start from the active clusters (``seed``). Every partition is assigned to every worker.
Details: docs/linking.md ("Topology", "Reliability").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from pipeline.alerting.actions import ActionMessage, ActionPublisher, action_messages
from pipeline.alerting.rules import RuleSet
from pipeline.linking.messages import MessageError
from pipeline.linking.results import LinkResult, decode_result
from pipeline.linking.sink import ClusterSink, write_with_retry
from pipeline.retry import fetch_or_wait, retry
from pipeline.sinks.clickhouse import query_rows
from schemas.tables import CLUSTERS

log = logging.getLogger(__name__)

RESULTS_GROUP_SUFFIX = ".link-results"
FETCH_TIMEOUT_MS = 500
FETCH_MAX_RECORDS = 64
# On stop, the result being applied may finish this long before the task is cancelled (then re-read next start).
STOP_GRACE_S = 10.0


def results_group(consumer_group: str) -> str:
    return f"{consumer_group}{RESULTS_GROUP_SUFFIX}"


def current_clusters(client: Any, database: str) -> dict[str, str]:
    """account -> cluster id, for accounts in an active cluster now (the highest score wins)."""
    rows = query_rows(client, f"SELECT cluster_id, account_ids FROM {CLUSTERS.qualified(database)} FINAL "
                              f"WHERE active = 1 ORDER BY score, cluster_id")
    return {a: r["cluster_id"] for r in rows for a in r["account_ids"]}


class ResultsConsumer:
    def __init__(self, bootstrap_servers: list[str], topic: str, group_id: str, sink: ClusterSink, *,
                 source_id: str | None, rules: RuleSet | None = None,
                 actions: ActionPublisher | None = None,
                 seed: Callable[[], Mapping[str, str]] | None = None) -> None:
        """``rules``: for the cluster alerts' actions (with ``actions``); ``source_id``: this worker's source;
        ``seed``: reads account -> cluster id as written so far (``current_clusters``; blocking, run in a thread)."""
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.group_id = group_id
        self.sink = sink
        self.source_id = source_id
        self.rules = rules
        self.actions = actions
        self.seed = seed
        self.cluster_of: dict[str, str] = {}
        self.stats: dict[str, object] = {}  # the last result's (the linking process's counters)
        self.drained = asyncio.Event()
        self.results = 0
        self.bad_results = 0
        self.write_s = 0.0  # ClickHouse, outbox and actions time of the results
        self.last_result_at: float | None = None  # time.monotonic() of the last result read
        self.failure: BaseException | None = None  # the task died (a bug): results no longer applied
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        await self.seed_cluster_of()
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=self.group_id,
                                    client_id="distillwatch-link-results", enable_auto_commit=False,
                                    auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20)
        await consumer.start()
        try:
            await consumer.topics()  # metadata, so that the topic's partitions are known
            partitions = consumer.partitions_for_topic(self.topic) or {0}
            consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="link-results")

    async def seed_cluster_of(self) -> None:
        """Start ``cluster_of`` from ClickHouse; the results read next apply on top. On failure it
        starts empty (the label is missing until those accounts' clusters change again)."""
        if self.seed is None:
            return
        try:
            found = await asyncio.to_thread(self.seed)
        except Exception as exc:  # ClickHouse away, or the table not there yet
            log.warning("could not read the current clusters (%s): account alerts carry a cluster_id "
                        "only for accounts whose cluster changes from now on", exc)
            return
        self.cluster_of.update(found)
        log.info("link results: %d accounts in active clusters", len(found))

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            task, self._task = self._task, None
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=STOP_GRACE_S)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except Exception:  # recorded in self.failure already
                pass
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            while not self._stopping:
                fetched = await fetch_or_wait(consumer, "link results", timeout_ms=FETCH_TIMEOUT_MS,
                                              max_records=FETCH_MAX_RECORDS)
                for tp, messages in fetched.items():
                    for message in messages:
                        await self.apply(message.value)
                    await self._commit(consumer, tp, messages[-1].offset + 1)
        except Exception as exc:
            log.exception("link results consumer stopped: results are no longer written")
            self.failure = exc
            raise

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({tp: OffsetAndMetadata(offset, "")})
        except KafkaError as exc:  # the results are written; a restart re-applies them (idempotent)
            log.warning("committing link results failed: %s", exc)

    async def apply(self, value: bytes | None) -> None:
        """Write one results message, publish its actions, then update the account map, stats and drain."""
        self.last_result_at = time.monotonic()
        try:
            result = decode_result(value or b"")
        except MessageError as exc:
            self.bad_results += 1
            log.error("dropped a malformed link result: %s", exc)
            return
        started = time.perf_counter()
        await write_with_retry(self.sink, result.rows, result.alerts, result.transitions)
        if self.actions is not None and self.rules is not None and result.transitions:
            await publish_with_retry(self.actions, action_messages(result.transitions, self.rules))
        self.write_s += time.perf_counter() - started
        self._remember(result)

    def _remember(self, result: LinkResult) -> None:
        for account, cluster in result.cluster_of.items():
            if cluster:
                self.cluster_of[account] = cluster
            else:
                self.cluster_of.pop(account, None)
        if result.stats:
            self.stats = result.stats
        self.results += 1
        if self.source_id is not None and self.source_id in result.drained_sources:
            log.info("linking drained this worker's source %s", self.source_id)
            self.drained.set()


async def publish_with_retry(publisher: ActionPublisher, messages: Sequence[ActionMessage]) -> None:
    """Publish, retrying with back-off while Kafka refuses (the results wait in their topic meanwhile)."""
    await retry(lambda: publisher.publish(messages), KafkaError, f"publishing {len(messages)} cluster actions failed")

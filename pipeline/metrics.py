"""Every Prometheus metric of the worker, declared once; served as ``GET /metrics``.

One registry per worker (``WorkerMetrics.registry``, never the global one: tests build several
workers in one process). Histograms are observed as the code goes (``WorkerMetrics``, the notifier
delivery counter); values that already live in the worker's objects are read at scrape time by
``WorkerCollector``, so no counter is kept twice. Labels carry bounded values only. The list is in
README.md ("Metrics"); setup: docs/operations.md, "Prometheus".
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from pipeline.decode.isolate import DECODER_ERROR
from pipeline.decode.rejects import REASONS
from pipeline.kernels.layout import NO_TIME
from pipeline.linking.backlog import STAGE_CLUSTERS, STAGE_FEATURES
from pipeline.linking.cluster_outputs import RULE_CLUSTER

if TYPE_CHECKING:
    from pipeline.detect.step import DetectStep
    from pipeline.linking.config import LinkingConfig
    from pipeline.linking.handle import Linking
    from pipeline.sources.kafka_batches import KafkaBatchSource

# No `*_created` series: in the text format each would be one more gauge per counter and
# histogram, which dashboards and rules never read (process-wide switch, set once here).
disable_created_metrics()

PREFIX = "distillwatch_"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Every reason a message can be rejected for (the label values of distillwatch_rejected_events_total).
REJECT_REASONS = (*REASONS, DECODER_ERROR)
# distillwatch_events_total{result}: each decoded event counts under exactly one result.
EVENT_RESULTS = ("valid", "late", "rejected", "duplicate")

# Buckets: a batch takes milliseconds when small and idle, seconds when full (50k events)
# or while ClickHouse is retried; inserts and checkpoints likewise.
BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
INSERT_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CHECKPOINT_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_EVENTS_BUCKETS = (1, 10, 100, 500, 1000, 5000, 10_000, 25_000, 50_000, 100_000, 250_000)
# A notifier request: milliseconds on loopback, up to the 10 s request timeout when a receiver hangs.
NOTIFY_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def package_version() -> str:
    try:
        return version("distillwatch")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class WorkerMetrics:
    """The worker's registry and the instruments observed in the code."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batch_duration = Histogram(
            f"{PREFIX}batch_duration_seconds", "Time to handle one batch: decode, detect, dead letters, "
            "ClickHouse (retries included), linking publish and, when due, checkpoint and commit.",
            buckets=BATCH_SECONDS_BUCKETS, registry=r)
        self.batch_size = Histogram(
            f"{PREFIX}batch_size_events", "Events per handled batch (valid, rejected and duplicate).",
            buckets=BATCH_EVENTS_BUCKETS, registry=r)
        self.insert_duration = Histogram(
            f"{PREFIX}clickhouse_insert_duration_seconds", "Time of one batch's successful ClickHouse inserts "
            "(every table of the batch; failed attempts are counted by distillwatch_clickhouse_retries_total).",
            buckets=INSERT_SECONDS_BUCKETS, registry=r)
        self.checkpoint_duration = Histogram(
            f"{PREFIX}checkpoint_duration_seconds", "Time to prepare and write one state checkpoint and "
            "commit the offsets it covers (retries included).",
            buckets=CHECKPOINT_SECONDS_BUCKETS, registry=r)
        # Notifier deliveries (pipeline/alerting/notifiers): each notifier increments
        # notifications.labels(notifier=<its name>, result=<sent, failed or dropped>).
        self.notifications = Counter(
            f"{PREFIX}notifications", "Alert notifications by notifier (alertmanager, pagerduty, webhook) and "
            "result (sent, failed: will be retried, dropped: given up).",
            ["notifier", "result"], registry=r)
        # The alert delivery task (pipeline/alerting/delivery.py) sets and observes these.
        self.notification_queue = Gauge(
            f"{PREFIX}notification_queue", "Alert notifications waiting for delivery (pending rows of "
            "alert_notifications held by the delivery task), by notifier.", ["notifier"], registry=r)
        self.notification_duration = Histogram(
            f"{PREFIX}notification_delivery_duration_seconds", "Time of one delivery request to a notifier "
            "(a batch of notifications; timeouts included).", ["notifier"],
            buckets=NOTIFY_SECONDS_BUCKETS, registry=r)
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, …
        PlatformCollector(registry=r)  # python_info

    def watch(self, collector: Collector) -> None:
        """Add a scrape-time collector (``WorkerCollector``) to this registry."""
        self.registry.register(collector)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)


class WorkerCollector(Collector):
    """Reads the live worker objects at scrape time (each scrape sees one consistent moment).

    ``source`` and ``linking`` are optional so that the detect step alone (tests) can be scraped.
    """

    def __init__(self, step: DetectStep, *, linking_config: LinkingConfig | None = None,
                 source: KafkaBatchSource | None = None, linking: Linking | None = None) -> None:
        self.step = step
        self.source = source
        self.linking = linking
        scoring = step.detector.config
        self.info = {"version": package_version(), "scoring_config_version": str(scoring.version),
                     "linking_config_version": "" if linking_config is None else str(linking_config.version)}

    def collect(self) -> Iterator[Metric]:
        yield from self._events()
        yield from self._clickhouse()
        yield from self._checkpoints()
        yield from self._partitions()
        yield from self._state()
        if self.linking is not None:
            yield from self._linking(self.linking)
        build = InfoMetricFamily(f"{PREFIX}build", "Version of distillwatch and of its scoring and linking "
                                 "configuration files.")
        build.add_metric([], self.info)
        yield build

    # --- input and detection -----------------------------------------------------------
    def _events(self) -> Iterator[Metric]:
        st = self.step.stats
        yield _counter("messages", "Kafka messages read from the events topic and handled (a batch container "
                       "is one message holding many events).", st.events_in)
        events = CounterMetricFamily(f"{PREFIX}events", "Decoded events by result: valid (counted in the "
                                     "frames), late (valid, stored, but their minute had closed), rejected "
                                     "(dead-lettered), duplicate (a resent copy, counted once).", labels=["result"])
        for result, n in zip(EVENT_RESULTS, (st.events_valid - st.late_events, st.late_events,
                                             st.events_rejected, st.events_duplicate), strict=True):
            events.add_metric([result], n)
        yield events
        rejects = CounterMetricFamily(f"{PREFIX}rejected_events", "Rejected events by reason (every one is "
                                      "dead-lettered and stored in rejected_events).", labels=["reason"])
        for reason in sorted({*REJECT_REASONS, *st.rejected_by_reason}):
            rejects.add_metric([reason], st.rejected_by_reason.get(reason, 0))
        yield rejects
        yield _counter("dead_letters", "Messages produced to the dead-letter topic.", self.step.dead_letters.sent)
        yield _counter("batches", "Batches handled.", st.batches)
        yield _counter("signature_rows", "Closed per-account minute frames written to signatures_1m.",
                       st.signature_rows)
        alerts = CounterMetricFamily(f"{PREFIX}alerts", "Alerts raised, by rule and severity (account rules "
                                     "in the detect step, cluster alerts in the linking stages).",
                                     labels=["rule", "severity"])
        by_rule = dict(st.alerts_by_rule)
        if self.linking is not None:
            for severity, n in _counts(self.linking.stats, "cluster_alerts_by_severity").items():
                by_rule[(RULE_CLUSTER, severity)] = by_rule.get((RULE_CLUSTER, severity), 0) + n
        for (rule, severity), n in sorted(by_rule.items()):
            alerts.add_metric([rule, severity], n)
        yield alerts
        # Firings recorded in `alerts` (suppressed_by set) that paged nobody and published no action.
        suppressed = CounterMetricFamily(f"{PREFIX}alerts_suppressed", "Alert firings suppressed, by rule and "
                                         "reason (allowlist: an allow-list entry; false_positive: an analyst's "
                                         "verdict); each is a row of alerts with suppressed_by set.",
                                         labels=["rule", "reason"])
        by_reason = dict(st.alerts_suppressed)
        if self.linking is not None:
            for key, n in _counts(self.linking.stats, "cluster_alerts_suppressed").items():
                rule, _, reason = key.partition(":")
                by_reason[(rule, reason)] = by_reason.get((rule, reason), 0) + n
        for (rule, reason), n in sorted(by_reason.items()):
            suppressed.add_metric([rule, reason], n)
        yield suppressed
        detector = self.step.detector
        yield _gauge("active_accounts", "Accounts whose state this worker holds (its partitions).",
                     len(detector.accounts))
        yield _gauge("active_api_keys", "API keys whose state this worker holds (DW_TRACK_API_KEYS).",
                     len(detector.keys))
        yield _gauge("account_slots_limit", "Per-account state slots one worker may hold (DW_MAX_ACCOUNTS).",
                     self.step.settings.max_accounts)

    # --- ClickHouse ----------------------------------------------------------------------
    def _clickhouse(self) -> Iterator[Metric]:
        st = self.step.stats
        yield _gauge("clickhouse_available", "1 while ClickHouse accepts the worker's inserts, 0 while they "
                     "fail and the batch is held (back-pressure).", 1 if st.clickhouse_available else 0)
        yield _counter("clickhouse_retries", "Batch writes retried because ClickHouse was unavailable.",
                       st.clickhouse_retries)
        rows = CounterMetricFamily(f"{PREFIX}clickhouse_rows_written", "Rows inserted, by table.",
                                   labels=["table"])
        failures = CounterMetricFamily(f"{PREFIX}clickhouse_insert_failures", "Failed INSERT statements, by "
                                       "table.", labels=["table"])
        for table, ws in sorted(self.step.writer.stats.items()):
            rows.add_metric([table], ws.rows)
            failures.add_metric([table], ws.errors)
        yield rows
        yield failures

    # --- checkpoints and commits -----------------------------------------------------------
    def _checkpoints(self) -> Iterator[Metric]:
        step, st = self.step, self.step.stats
        yield _counter("checkpoints", "State checkpoints written to the state topic.", step.state.stats.checkpoints)
        yield _counter("checkpoint_failures", "State checkpoint writes that failed and were retried.",
                       st.checkpoint_retries)
        yield _gauge("checkpoint_age_seconds", "Seconds since the last successful checkpoint (or since start).",
                     step.checkpoint_age_s)
        yield _gauge("checkpoint_interval_seconds", "Configured checkpoint interval (DW_CHECKPOINT_INTERVAL_S).",
                     step.settings.checkpoint_interval_s)
        yield _gauge("uncommitted_batches", "Batches written to ClickHouse whose offsets are not committed yet.",
                     step.pending_batches)
        yield _counter("batches_committed", "Batches whose state is checkpointed and offsets committed.",
                       st.batches_committed)
        yield _gauge("last_commit_timestamp_seconds", "Unix time of the last offset commit (0: none yet).",
                     st.last_commit_at)
        if self.source is not None:
            yield _counter("offset_commits", "Offset commits to the consumer group.", self.source.commits)
            yield _counter("offset_commit_failures", "Offset commits refused by the broker (partitions lost; "
                           "the next owner re-reads from the checkpoint).", self.source.commit_errors)

    # --- partitions: lag, stalls, watermarks ----------------------------------------------------
    def _partitions(self) -> Iterator[Metric]:
        owned = sorted(self.step.state.owned)
        yield _gauge("assigned_partitions", "Partitions of the events topic this worker holds.", len(owned))
        if self.source is not None:
            progress = self.source.progress
            lag = GaugeMetricFamily(f"{PREFIX}consumer_lag_messages", "Messages waiting in each assigned "
                                    "partition (high watermark - position), measured every 5 s.",
                                    labels=["partition"])
            stalled = GaugeMetricFamily(f"{PREFIX}partition_stalled", "1 when a partition has messages waiting "
                                        "and made no progress for DW_STALL_AFTER_S (back-pressure aside).",
                                        labels=["partition"])
            for p, n in progress.lags().items():
                lag.add_metric([str(p)], n)
                stalled.add_metric([str(p)], 1 if p in progress.stalled else 0)
            yield lag
            yield stalled
        frames = self.step.detector.frames
        now_ms = time.time() * 1000
        watermark = GaugeMetricFamily(f"{PREFIX}watermark_lag_seconds", "Wall clock minus the partition's "
                                      "event-time watermark (newest event time - DW_ALLOWED_LATENESS_S): how far "
                                      "behind real time frames close.", labels=["partition"])
        newest = frames.part_max_ts
        for p in owned:
            if p < len(newest) and newest[p] > NO_TIME:
                watermark.add_metric([str(p)], (now_ms - (int(newest[p]) - frames.lateness_ms)) / 1000)
        yield watermark

    # --- state restores ----------------------------------------------------------------------
    def _state(self) -> Iterator[Metric]:
        ss = self.step.state.stats
        yield _counter("state_restores", "Partition assignments that restored state from the state topic.",
                       ss.restores)
        yield _counter("state_restored_entities", "Accounts and keys restored from the state topic.",
                       ss.restored_entities)

    # --- linking ---------------------------------------------------------------------------
    def _linking(self, linking: Linking) -> Iterator[Metric]:
        ls = linking.stats  # the linking process's last reported counters (pipeline/linking/stages.py StageStats)
        yield _gauge("linking_up", "1 while the linking process runs and its results are applied, 0 while it is "
                     "down or restarting (see /stats linking.error; detection per account goes on).",
                     1 if linking.up else 0)
        yield _counter("linking_restarts", "Times the worker restarted its linking child process after it exited "
                       "(DW_LINKING=child).", linking.restarts)
        backlog = GaugeMetricFamily(f"{PREFIX}linking_backlog_messages", "Messages waiting in each linking "
                                    "stage's input topic (features: observations topic, clusters: edges topic), "
                                    "as the linking process last measured it.", labels=["stage"])
        for stage in (STAGE_FEATURES, STAGE_CLUSTERS):
            backlog.add_metric([stage], linking.backlog.get(stage, 0))
        yield backlog
        busy = CounterMetricFamily(f"{PREFIX}linking_busy_seconds", "Seconds each linking stage spent working "
                                   "(rules and evaluation in the linking process; for clusters also the "
                                   "worker's writes of its results): its rate is the stage's utilisation.",
                                   labels=["stage"])
        busy.add_metric([STAGE_FEATURES], _num(ls, "stage_a_s") + _num(ls, "stage_a_send_s"))
        busy.add_metric([STAGE_CLUSTERS], _num(ls, "stage_b_s") + _num(ls, "stage_b_write_s")
                        + linking.results.write_s)
        yield busy
        yield _counter("linking_messages_published", "Linking messages the detect step produced "
                       "(observations, account updates, end markers).", linking.publisher.sent_messages)
        yield _counter("linking_observations", "(feature, account) observations applied by stage A.",
                       _num(ls, "observations"))
        yield _counter("linking_edges", "Account-pair edges produced by stage A.", _num(ls, "edges"))
        yield _counter("linking_bad_messages", "Malformed linking messages dropped (by the linking process, "
                       "and malformed results by the worker).", _num(ls, "bad_messages") + linking.results.bad_results)
        yield _gauge("linking_clusters", "Clusters (linked components of two or more accounts) held by stage B.",
                     _num(ls, "clusters"))
        yield _gauge("linking_alerts_held", "Cluster alerts (per member) due but held until every linking input is "
                     "read up to their time (the inputs' watermark: one partition read behind the others).",
                     _num(ls, "alerts_held"))


def _num(stats: Mapping[str, object], name: str) -> float:
    value = stats.get(name, 0)
    return float(value) if isinstance(value, int | float) else 0.0


def _counts(stats: Mapping[str, object], name: str) -> dict[str, int]:
    """A Counter the linking process sent as a JSON object (label value -> count)."""
    found = stats.get(name)
    return {str(k): int(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}{name}", doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}{name}", doc, value=value)

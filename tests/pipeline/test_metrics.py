"""Prometheus metrics: they move when the detect step handles batches, and the exposition parses
with exactly the names, types and labels README.md documents ("Metrics")."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.agents import detect
from pipeline.agents.detect import DetectStep
from pipeline.decode.rejects import Rejected
from pipeline.detection import Detector
from pipeline.linking.config import load_linking_config
from pipeline.linking.handle import Linking
from pipeline.linking.publish import LinkPublisher
from pipeline.linking.results_consumer import ResultsConsumer
from pipeline.linking.supervisor import LinkingSupervisor
from pipeline.metrics import REJECT_REASONS, WorkerCollector, WorkerMetrics
from pipeline.settings import load_settings
from pipeline.sinks.clickhouse import WriterStats
from pipeline.sources.progress import ProgressWatch
from pipeline.state.manager import StateManager
from pipeline.stats import PipelineStats
from tests.pipeline.agents.test_detect_step import Effects, FakeStateTopic, FakeWriter, event, make_batch
from tests.schemas.test_event import MINIMAL

README = Path(__file__).resolve().parents[2] / "README.md"
LINKING_CONFIG = load_linking_config(None)
# Families prometheus_client adds to every registry (process_*, python_info): not ours to document.
FOREIGN = ("process_", "python_")


class CountingWriter(FakeWriter):
    """FakeWriter with the real writer's per-table stats."""

    def __init__(self, effects: Effects, failures: int = 0) -> None:
        super().__init__(effects, failures)
        self.stats: dict[str, WriterStats] = {}

    def write(self, table: str, columns: Mapping[str, Any], dedup_token: str | None = None) -> int:
        ws = self.stats.setdefault(table, WriterStats())
        try:
            rows = super().write(table, columns, dedup_token)
        except Exception:
            ws.errors += 1
            raise
        ws.inserts += 1
        ws.rows += rows
        return rows


class CountingDeadLetters:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, rejects: Sequence[Rejected]) -> None:
        self.sent += len(rejects)


def make_worker(*, ch_failures: int = 0, state_failures: int = 0, source: object = None,
                linking: Linking | None = None, **settings: Any) -> tuple[DetectStep, WorkerMetrics, Effects]:
    """A detect step over recording fakes, its metrics watched by a WorkerCollector (plus a source and linking)."""
    effects = Effects()
    s = load_settings(checkpoint_interval_s=0, **settings)
    state = StateManager(make_detector=lambda: Detector(s, 2), topic=FakeStateTopic(effects, state_failures),  # type: ignore[arg-type]
                         events_topic="e", bootstrap_servers=["unused:1"], dedup_window=1000,
                         decode=lambda *a: None)  # type: ignore[arg-type,return-value]
    state.owned = {0}
    metrics = WorkerMetrics()
    step = DetectStep(s, state, CountingWriter(effects, ch_failures), CountingDeadLetters(),  # type: ignore[arg-type]
                      PipelineStats(), on_drained=lambda: None, metrics=metrics)
    metrics.watch(WorkerCollector(step, linking_config=LINKING_CONFIG, source=source,  # type: ignore[arg-type]
                                  linking=linking))
    return step, metrics, effects


def make_linking(stats: dict[str, object] | None = None, supervisor: LinkingSupervisor | None = None) -> Linking:
    """The worker's linking handle, not started: ``stats`` as the linking process last reported them."""
    async def send(topic: str, partition: int, value: bytes) -> Any:
        raise AssertionError("nothing is sent here")

    publisher = LinkPublisher(LINKING_CONFIG, send, observations_topic="o", edges_topic="e", partitions=2)
    results = ResultsConsumer(["unused:1"], "r", "g", sink=None, source_id="me")  # type: ignore[arg-type]
    results.stats = stats or {}
    return Linking(publisher, results, supervisor)


def scrape(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Sample name + sorted labels -> value, parsed back from the text exposition."""
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect, "RETRY_BACKOFF_S", (0.0,))


def test_a_handled_batch_moves_events_rejects_durations_and_checkpoint_metrics() -> None:
    step, metrics, effects = make_worker()
    before = scrape(metrics)
    assert value(before, "distillwatch_events_total", result="valid") == 0
    assert value(before, "distillwatch_batch_duration_seconds_count") == 0
    assert value(before, "distillwatch_last_commit_timestamp_seconds") == 0
    assert all(value(before, "distillwatch_rejected_events_total", reason=r) == 0 for r in REJECT_REASONS)

    asyncio.run(step.handle(make_batch(effects, [event(0), b"not json", event(1), event(0)])))
    after = scrape(metrics)
    assert value(after, "distillwatch_messages_total") == 4
    assert value(after, "distillwatch_events_total", result="valid") == 2
    assert value(after, "distillwatch_events_total", result="rejected") == 1
    assert value(after, "distillwatch_events_total", result="duplicate") == 1
    assert value(after, "distillwatch_events_total", result="late") == 0
    assert value(after, "distillwatch_rejected_events_total", reason="invalid_json") == 1
    assert value(after, "distillwatch_dead_letters_total") == 1
    assert value(after, "distillwatch_batches_total") == 1
    assert value(after, "distillwatch_batch_duration_seconds_count") == 1
    assert value(after, "distillwatch_batch_duration_seconds_sum") > 0
    assert value(after, "distillwatch_batch_size_events_sum") == 4
    assert value(after, "distillwatch_batch_size_events_bucket", le="1.0") == 0
    assert value(after, "distillwatch_batch_size_events_bucket", le="10.0") == 1
    assert value(after, "distillwatch_clickhouse_insert_duration_seconds_count") == 1
    assert value(after, "distillwatch_clickhouse_rows_written_total", table="api_calls") == 2
    assert value(after, "distillwatch_clickhouse_rows_written_total", table="rejected_events") == 2
    assert value(after, "distillwatch_checkpoints_total") == 1
    assert value(after, "distillwatch_checkpoint_duration_seconds_count") == 1
    assert value(after, "distillwatch_batches_committed_total") == 1
    assert value(after, "distillwatch_uncommitted_batches") == 0
    assert value(after, "distillwatch_last_commit_timestamp_seconds") > 1.7e9
    assert value(after, "distillwatch_active_accounts") == 1
    assert value(after, "distillwatch_assigned_partitions") == 1
    # Events of 2026-02-12 read now: the watermark is far behind the wall clock.
    assert value(after, "distillwatch_watermark_lag_seconds", partition="0") > 120


def test_clickhouse_outage_and_checkpoint_failures_are_counted() -> None:
    step, metrics, effects = make_worker(ch_failures=3, state_failures=2)
    asyncio.run(step.handle(make_batch(effects, [event(0)])))
    samples = scrape(metrics)
    assert value(samples, "distillwatch_clickhouse_retries_total") == 3
    assert value(samples, "distillwatch_clickhouse_insert_failures_total", table="api_calls") == 3
    assert value(samples, "distillwatch_checkpoint_failures_total") == 2
    assert value(samples, "distillwatch_clickhouse_available") == 1  # back, the batch went through
    step.stats.clickhouse_available = False  # what the step sets while it holds a batch
    assert value(scrape(metrics), "distillwatch_clickhouse_available") == 0


def test_alerts_are_counted_by_rule_and_severity() -> None:
    step, metrics, effects = make_worker(alert_score_threshold=0)  # every closed frame fires
    other = orjson.dumps({**MINIMAL, "event_id": "x", "ts": 1_770_888_600_000, "account_id": "org-2"})
    asyncio.run(step.handle(make_batch(effects, [event(0), other])))
    asyncio.run(step.handle(make_batch(effects, [], drain=True)))  # closes every frame
    assert step.stats.alerts == 2
    samples = scrape(metrics)
    assert value(samples, "distillwatch_alerts_total", rule="extraction_score_high", severity="warning") == 2


def test_source_and_linking_values_are_read_at_scrape_time() -> None:
    progress = ProgressWatch(stall_after_s=30)
    supervisor = LinkingSupervisor(["unused"], {}, bounded=False)
    linking = make_linking(supervisor=supervisor)
    _, metrics, _ = make_worker(source=SimpleNamespace(progress=progress, commits=5, commit_errors=1),
                                linking=linking)
    progress.observe(0, position=10, highwater=50, now=0.0)
    progress.observe(1, position=7, highwater=7, now=0.0)
    progress.evaluate(now=31.0)
    # As a LinkResult's stats arrive: a StageStats Counter is a JSON object by then.
    linking.results.stats = {"backlog": {"features": 12, "clusters": 3}, "stage_b_s": 1.5,
                             "cluster_alerts_by_severity": {"critical": 2, "warning": 1}}
    linking.results.write_s = 0.25
    supervisor.exit_codes.append(1)  # the child died and was restarted twice: it runs again now
    supervisor.restarts = 2
    supervisor._proc = SimpleNamespace(returncode=None)  # type: ignore[assignment]
    samples = scrape(metrics)
    assert value(samples, "distillwatch_consumer_lag_messages", partition="0") == 40
    assert value(samples, "distillwatch_consumer_lag_messages", partition="1") == 0
    assert value(samples, "distillwatch_partition_stalled", partition="0") == 1
    assert value(samples, "distillwatch_partition_stalled", partition="1") == 0
    assert value(samples, "distillwatch_offset_commits_total") == 5
    assert value(samples, "distillwatch_offset_commit_failures_total") == 1
    assert value(samples, "distillwatch_linking_backlog_messages", stage="features") == 12
    assert value(samples, "distillwatch_linking_backlog_messages", stage="clusters") == 3
    assert value(samples, "distillwatch_alerts_total", rule="cluster_extraction", severity="critical") == 2
    assert value(samples, "distillwatch_linking_busy_seconds_total", stage="clusters") == 1.75
    assert value(samples, "distillwatch_linking_up") == 1
    assert value(samples, "distillwatch_linking_restarts_total") == 2
    info = {dict(k[1])["linking_config_version"] for k in samples if k[0] == "distillwatch_build_info"}
    assert info == {str(LINKING_CONFIG.version)}
    supervisor._proc = SimpleNamespace(returncode=1)  # type: ignore[assignment]
    assert value(scrape(metrics), "distillwatch_linking_up") == 0  # down until the next restart


def documented_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """README.md "Metrics" table: name -> (type, label names)."""
    text = README.read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(distillwatch_\w+)` \| (\w+) \|([^|]*)\|", section, re.M)
    return {name: (kind, frozenset(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def test_the_exposition_holds_exactly_the_documented_names_types_and_labels() -> None:
    linking = make_linking({"cluster_alerts_by_severity": {"warning": 1}})
    source = SimpleNamespace(progress=ProgressWatch(60), commits=0, commit_errors=0)
    source.progress.observe(0, 1, 2, 0.0)
    step, metrics, effects = make_worker(source=source, linking=linking)
    metrics.notifications.labels(notifier="webhook", result="sent").inc()
    asyncio.run(step.handle(make_batch(effects, [event(0)])))

    documented = documented_metrics()
    exposed: dict[str, tuple[str, frozenset[str]]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        if family.name.startswith(FOREIGN):
            continue
        assert family.name.startswith("distillwatch_"), family.name
        labels = frozenset(k for s in family.samples for k in s.labels if k not in ("le", "quantile"))
        name = family.name + ("_total" if family.type == "counter" else "")
        if not family.samples:  # a labelled instrument nobody has used yet: no label names to read
            labels = documented.get(name, ("", frozenset()))[1]
        exposed[name] = (family.type, labels)
        if family.type == "counter":
            assert name.endswith("_total")
        if family.type == "histogram":
            assert name.endswith(("_seconds", "_events")), name
    assert exposed == documented

"""Prometheus metrics: they move when the detect step handles batches, and the exposition parses
with exactly the names, types and labels README.md documents ("Metrics")."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.linking.supervisor import LinkingSupervisor
from pipeline.metrics import REJECT_REASONS
from pipeline.sources.progress import ProgressWatch
from tests.support.detect_step import event, make_batch
from tests.support.events import MINIMAL
from tests.support.metrics import LINKING_CONFIG, documented_metrics, make_linking, make_worker, scrape, value

# Families prometheus_client adds to every registry (process_*, python_info): not ours to document.
FOREIGN = ("process_", "python_")


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.retry.RETRY_BACKOFF_S", (0.0,))


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

"""The Pipeline health dashboard's PromQL: only metrics the worker exports, valid syntax (promtool)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from jobs.grafana import build
from jobs.grafana.datasources import PROMETHEUS
from jobs.grafana.links import PIPELINE
from pipeline.linking.config import load_linking_config
from pipeline.metrics import PREFIX, WorkerCollector, WorkerMetrics
from pipeline.sources.progress import ProgressWatch
from tests.jobs.grafana.dashboard_json import Query, queries
from tests.support.detect_step import event, make_batch
from tests.support.metrics import make_linking, make_worker

# Series names each metric type exposes, from the family name prometheus_client reports.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "info": ("_info",)}
# Labels Prometheus adds at scrape time, and the histogram bucket label.
SCRAPE_LABELS = {"instance", "job", "le"}
# Grafana's own variables, as Grafana would expand them for promtool.
GRAFANA_VARS = {"$__rate_interval": "1m", '"$instance"': '".*"'}


def exported_series() -> dict[str, set[str]]:
    """Series name -> label names, from a fully wired worker registry (detect step, source, linking)."""
    step, _, effects = make_worker()
    config = load_linking_config(None)
    linking = make_linking({"cluster_alerts_by_severity": {"warning": 1}})
    source = SimpleNamespace(progress=ProgressWatch(60), commits=0, commit_errors=0)
    source.progress.observe(0, 1, 2, 0.0)
    metrics = WorkerMetrics()
    metrics.watch(WorkerCollector(step, linking_config=config, source=source, linking=linking))  # type: ignore[arg-type]
    asyncio.run(step.handle(make_batch(effects, [event(0)])))
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        labels = {k for s in family.samples for k in s.labels}
        for suffix in SUFFIXES.get(family.type, ("",)):
            series[family.name + suffix] = labels
    return series


def prometheus_queries() -> list[Query]:
    pipeline = next(m for m in build.dashboards() if m.uid == PIPELINE.uid)
    found = [q for q in queries(build.to_dict(pipeline)) if q.plugin == PROMETHEUS.type]
    assert len(found) >= 20
    return found


def test_every_expression_uses_only_exported_metrics_and_their_labels() -> None:
    series = exported_series()
    used: set[str] = set()
    for query in prometheus_queries():
        names = set(re.findall(rf"\b{PREFIX}\w+", query.text))
        assert names or query.where.startswith("variable"), query.where
        unknown = names - set(series)
        assert not unknown, f"{query.where}: {query.text} uses metrics the worker does not export: {unknown}"
        used |= names
        known_labels = set().union(*(series[n] for n in names)) | SCRAPE_LABELS
        grouped = {label.strip() for group in re.findall(r"\bby \(([^)]*)\)", query.text) for label in group.split(",")}
        assert grouped <= known_labels, f"{query.where}: grouped by unknown labels {grouped - known_labels}"
    # The list: events, rejects, lag, batches, inserts, retries, checkpoints, watermarks, dead letters, linking.
    for needed in ("events_total", "rejected_events_total", "consumer_lag_messages", "batch_duration_seconds_bucket",
                   "clickhouse_insert_duration_seconds_bucket", "clickhouse_retries_total", "checkpoint_age_seconds",
                   "watermark_lag_seconds", "dead_letters_total", "linking_backlog_messages"):
        assert PREFIX + needed in used, needed


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for i, query in enumerate(q for q in prometheus_queries() if not q.where.startswith("variable")):
        expr = query.text
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"{query.where}: unexpanded Grafana variable in {expr}"
        rules.append({"record": f"dashboard:panel_query:{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout

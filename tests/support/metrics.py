"""A detect step over recording fakes with its Prometheus metrics, the linking handle, and the README's
metrics table: shared by the metrics, alerting and Grafana panel tests."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from pipeline.decode.rejects import Rejected
from pipeline.detect.detector import Detector
from pipeline.detect.step import DetectStep
from pipeline.linking.config import load_linking_config
from pipeline.linking.handle import Linking
from pipeline.linking.publish import LinkPublisher
from pipeline.linking.results_consumer import ResultsConsumer
from pipeline.linking.supervisor import LinkingSupervisor
from pipeline.metrics import WorkerCollector, WorkerMetrics
from pipeline.settings import load_settings
from pipeline.sinks.clickhouse import WriterStats
from pipeline.state.manager import StateManager
from pipeline.stats import PipelineStats
from tests.support.detect_step import Effects, FakeStateTopic, FakeWriter

README = Path(__file__).resolve().parents[2] / "README.md"
LINKING_CONFIG = load_linking_config(None)


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


def documented_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """README.md "Metrics" table: name -> (type, label names)."""
    text = README.read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(distillwatch_\w+)` \| (\w+) \|([^|]*)\|", section, re.M)
    return {name: (kind, frozenset(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}

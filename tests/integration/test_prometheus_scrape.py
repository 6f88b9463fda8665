"""A real Prometheus (Debian's, on loopback) scrapes a running worker that processes real events:
PromQL through Prometheus' HTTP API returns the worker's event rate, its totals match the input,
and the shipped rules load."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from jobs.apache_kafka import ApacheKafkaBroker
from jobs.embedded_broker import EmbeddedBroker, free_port
from jobs.produce_file import produce_lines, read_lines
from jobs.worker_process import WorkerProcess
from pipeline.metrics import CONTENT_TYPE
from pipeline.settings import Settings, load_settings
from pipeline.topics import ensure_topics
from tests.support.end_to_end import write_events

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "infra" / "prometheus" / "rules.yml"
PARTITIONS = 4
N_VALID = 6000
N_INVALID = len(range(0, N_VALID, 250))  # write_events adds one bad line every 250 events
DEADLINE_S = 240.0


class PrometheusServer:
    """``prometheus`` on 127.0.0.1 with a temporary TSDB, scraping ``target`` every second."""

    def __init__(self, workdir: Path, target: str) -> None:
        exe = shutil.which("prometheus")
        if exe is None:
            pytest.fail("prometheus not found: install Debian's prometheus package (`make test` does)")
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "distillwatch", "static_configs": [{"targets": [target]}]}],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [exe, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self.api("query", query=promql)["result"]  # type: ignore[no-any-return]

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def poll(what: str, check: Callable[[], Any], deadline_s: float, on_timeout: Callable[[], str]) -> Any:
    """``check()`` until it returns something truthy (connection errors count as not yet)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{on_timeout()}")


def scalar(result: list[dict[str, Any]]) -> float | None:
    """The value of a one-element instant vector (None when empty)."""
    return float(result[0]["value"][1]) if result else None


@pytest.fixture
def worker_settings(kafka_broker: EmbeddedBroker | ApacheKafkaBroker, tmp_path: Path) -> Settings:
    run = uuid.uuid4().hex[:8]
    return load_settings(
        kafka_bootstrap=kafka_broker.bootstrap, data_dir=tmp_path / "state", clickhouse_dsn="",
        partitions=PARTITIONS, topic_events=f"prom-{run}-api-calls", topic_dlq=f"prom-{run}-dlq",
        consumer_group=f"prom-{run}", web_port=free_port(), checkpoint_interval_s=1.0,
        web_token="scrapes-need-no-token")  # /metrics stays open; /query and /drain do not


@pytest.fixture
def running(worker_settings: Settings, tmp_path: Path) -> Iterator[tuple[WorkerProcess, PrometheusServer]]:
    ensure_topics(worker_settings)
    worker = WorkerProcess(worker_settings, bounded=False, log_path=tmp_path / "worker.log")
    prometheus = None
    try:
        prometheus = PrometheusServer(tmp_path, f"{worker_settings.web_host}:{worker_settings.web_port}")
        yield worker, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        worker.kill()


def test_prometheus_scrapes_the_worker_and_promql_returns_its_event_rate(
        running: tuple[WorkerProcess, PrometheusServer], worker_settings: Settings, tmp_path: Path) -> None:
    worker, prometheus = running

    def logs() -> str:
        return f"worker:\n{worker.log_tail(30)}\nprometheus:\n{prometheus.log_tail()}"

    # Prometheus holds a sample of the idle worker before any event: the rate starts from there.
    poll("a first scrape of the worker", lambda: scalar(prometheus.query(
        'sum(distillwatch_messages_total{job="distillwatch"}) == 0')) == 0, DEADLINE_S, logs)

    # The worker serves the text format itself, with the documented content type, without the token
    # that the SQL view of the same worker requires.
    base = f"http://{worker_settings.web_host}:{worker_settings.web_port}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/query?sql=SELECT%201", timeout=5)
    assert refused.value.code == 401
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"] == CONTENT_TYPE
        names = {f.name for f in text_string_to_metric_families(resp.read().decode())}
    assert {"distillwatch_events", "distillwatch_consumer_lag_messages", "distillwatch_build_info"} <= names

    write_events(tmp_path / "events.jsonl", N_VALID)
    asyncio.run(produce_lines(read_lines(tmp_path / "events.jsonl"), worker_settings.bootstrap_servers,
                              worker_settings.topic_events, PARTITIONS))

    rate = poll("a non-zero event rate in PromQL", lambda: scalar(prometheus.query(
        'sum(rate(distillwatch_events_total{job="distillwatch"}[30s])) > 0')), DEADLINE_S, logs)
    assert rate > 0

    # Prometheus' view of the totals ends equal to the input: every event, under its result.
    def totals() -> dict[str, float] | None:
        got = {r["metric"]["result"]: float(r["value"][1])
               for r in prometheus.query('distillwatch_events_total{job="distillwatch"}')}
        return got if got.get("valid") == N_VALID and got.get("rejected") == N_INVALID else None

    assert poll("the event totals in Prometheus", totals, DEADLINE_S, logs) == {
        "valid": N_VALID, "late": 0, "rejected": N_INVALID, "duplicate": 0}
    increase = scalar(prometheus.query('sum(increase(distillwatch_messages_total{job="distillwatch"}[5m]))'))
    assert increase is not None and increase > 0
    lag = prometheus.query('distillwatch_consumer_lag_messages{job="distillwatch"}')
    assert {r["metric"]["partition"] for r in lag} <= {str(p) for p in range(PARTITIONS)}

    # The shipped rules load in this Prometheus, and a healthy worker fires none of the critical ones.
    def evaluated_rules() -> list[dict[str, Any]] | None:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        return rules if all(r["health"] != "unknown" for r in rules) else None  # unknown: not evaluated yet

    rules = poll("the rules' first evaluation", evaluated_rules, DEADLINE_S, logs)
    assert len(rules) == len(yaml.safe_load(RULES.read_text())["groups"][0]["rules"])
    assert all(r["health"] == "ok" for r in rules), rules
    firing = [a for a in prometheus.api("alerts")["alerts"]
              if a["state"] == "firing" and a["labels"]["severity"] == "critical"]
    assert firing == [], firing

"""A running worker's /query and /drain over HTTP: the bearer token, and read-only SQL in fact
(a table function aimed at a server this test runs makes no request to it)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.apache_kafka import ApacheKafkaBroker
from jobs.embedded_broker import EmbeddedBroker, free_port
from jobs.worker_process import WorkerProcess
from pipeline.settings import load_settings
from pipeline.topics import ensure_topics
from tests.support.loopback_servers import SECRET, CountingHttp

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse]

TOKEN = f"tok-{uuid.uuid4().hex}"
START_S = 240.0


def call(worker: WorkerProcess, path: str, *, token: str | None = TOKEN, method: str = "GET",
         **params: str) -> tuple[int, dict[str, str], Any]:
    url = f"{worker.base_url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, method=method, headers=headers, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, dict(exc.headers), json.loads(body) if body.startswith(b"{") else body


@pytest.fixture(scope="module")
def worker(kafka_broker: EmbeddedBroker | ApacheKafkaBroker, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[WorkerProcess]:
    run = uuid.uuid4().hex[:8]
    tmp: Path = tmp_path_factory.mktemp("query-endpoint")
    settings = load_settings(
        kafka_bootstrap=kafka_broker.bootstrap, data_dir=tmp / "state", clickhouse_dsn="", partitions=2,
        topic_events=f"q-{run}-api-calls", topic_dlq=f"q-{run}-dlq", consumer_group=f"q-{run}",
        web_port=free_port(), web_token=TOKEN)
    ensure_topics(settings)
    proc = WorkerProcess(settings, bounded=False, log_path=tmp / "worker.log")
    try:
        deadline = time.monotonic() + START_S
        while proc.stats() is None:  # /stats needs no token
            assert proc.proc.poll() is None, proc.log_tail()
            assert time.monotonic() < deadline, f"worker not up within {START_S:.0f}s:\n{proc.log_tail()}"
            time.sleep(0.5)
        yield proc
    finally:
        proc.kill()


def test_query_and_drain_need_the_token_the_rest_stays_open(worker: WorkerProcess) -> None:
    status, headers, body = call(worker, "/query", token=None, sql="SELECT 1")
    assert (status, headers["WWW-Authenticate"], body["reason"]) == (401, 'Bearer realm="distillwatch"',
                                                                     "unauthorized")
    status, headers, _ = call(worker, "/query", token="wrong", sql="SELECT 1")
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
    status, headers, _ = call(worker, "/drain", token=None, method="POST")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    for path, served in (("/stats", {200}), ("/health", {200, 503}), ("/metrics", {200})):
        assert _status(worker, path) in served, path  # open without the token, and served (not a 404)


def _status(worker: WorkerProcess, path: str) -> int:
    try:
        with urllib.request.urlopen(f"{worker.base_url}{path}", timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_query_is_read_only_in_fact(worker: WorkerProcess) -> None:
    web = CountingHttp()
    try:
        status, _, body = call(worker, "/query", sql=f"SELECT * FROM url('http://127.0.0.1:{web.port}/secret',"
                                                       "'LineAsString')")
        assert (status, body["reason"]) == (403, "table_function") and SECRET not in json.dumps(body)
        assert web.hits == []
    finally:
        web.close()
    refusals = {
        "SELECT * FROM file('/etc/hostname', 'LineAsString')": 403,
        "INSERT INTO api_calls (event_id) VALUES ('x')": 403,
        "CREATE TABLE x (a UInt8) ENGINE = Memory": 403,
        "SET max_threads = 1": 403,
        "SELECT 1 SETTINGS readonly = 0": 403,
        "SELEC 1": 400,
    }
    for sql, expected in refusals.items():
        status, headers, body = call(worker, "/query", sql=sql)
        assert status == expected and headers["Content-Type"].startswith("application/json"), (sql, body)
        assert body["error"] and body["reason"]
    status, _, body = call(worker, "/query", sql="SELECT count() AS n FROM api_calls WHERE account_id = {a:String}",
                           param_a="nobody")
    assert (status, body["rows"], body["truncated"]) == (200, [{"n": 0}], False)


def test_the_worker_drains_when_its_own_client_sends_the_token(worker: WorkerProcess) -> None:
    worker.request_drain()  # jobs.worker_process sends settings.web_token
    assert worker.wait(timeout_s=120) == 0, worker.log_tail()

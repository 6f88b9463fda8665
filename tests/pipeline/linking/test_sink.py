from __future__ import annotations

import asyncio

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.linking.config import LinkingConfig
from pipeline.linking.sink import ClickHouseClusterSink, write_with_retry
from pipeline.sinks.clickhouse import ClickHouseUnavailable, ClickHouseWriter, query_rows
from schemas.migrate import apply_migrations
from tests.support.link_stages import run_fleet

pytestmark = pytest.mark.clickhouse


@pytest.fixture
def writer(ch_client: Client, ch_database: str) -> ClickHouseWriter:
    apply_migrations(ch_client, ch_database)
    return ClickHouseWriter(ch_client, ch_database)


def test_cluster_rows_and_alerts_land_and_final_gives_the_current_clusters(
    config: LinkingConfig, writer: ClickHouseWriter, ch_client: Client, ch_database: str
) -> None:
    h = run_fleet(config)
    sink = ClickHouseClusterSink(writer)
    for out in h.outputs:
        sink.write(out.rows, out.alerts)
        sink.write(out.rows, out.alerts)  # a retry of the same rows stores nothing twice
    current = query_rows(ch_client, f"SELECT cluster_id, account_ids, score, active FROM `{ch_database}`.clusters "
                                    "FINAL WHERE active = 1 ORDER BY cluster_id")
    assert {r["cluster_id"]: (tuple(r["account_ids"]), round(r["score"], 2)) for r in current} == {
        cid: (members, round(score, 2)) for cid, (members, score) in h.clusters().items()}
    written = query_rows(ch_client, f"SELECT count() AS n FROM `{ch_database}`.clusters")[0]["n"]
    assert written == sum(len(o.rows) for o in h.outputs)
    alerts = query_rows(ch_client, f"SELECT account_id, rule, signals FROM `{ch_database}`.alerts FINAL")
    assert sorted(a["account_id"] for a in alerts) == sorted(f"fleet-{i}" for i in range(10))
    assert {a["rule"] for a in alerts} == {"cluster_extraction"}


class _FlakySink:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def write(self, rows: object, alerts: object) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ClickHouseUnavailable("down")


def test_write_with_retry_holds_rows_while_clickhouse_is_down(
    config: LinkingConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pipeline.retry.RETRY_BACKOFF_S", (0.0,))
    out = run_fleet(config).outputs[-1]
    sink = _FlakySink(failures=2)
    assert asyncio.run(write_with_retry(sink, out.rows, out.alerts))  # type: ignore[arg-type]
    assert sink.calls == 3

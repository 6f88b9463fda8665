"""Every ClickHouse query of the dashboards runs on a real demo run's data and returns rows.

Macros and variables are substituted as the plugin and Grafana do (dashboard_json.expand),
over the time range the demo's data covers; variables take values their own queries return.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from jobs.grafana import build
from jobs.grafana.datasources import CLICKHOUSE
from jobs.grafana.links import ACCOUNT_VAR, CLUSTER_VAR
from jobs.grafana.overview import TOP_ACCOUNTS_SQL
from jobs.grafana.sql_parts import campaign_min_score
from tests.jobs.grafana.dashboard_json import Query, expand, queries
from tests.support.demo_data import DemoData

pytestmark = [pytest.mark.clickhouse, pytest.mark.slow]

# Grafana's $__interval for these dashboards: the panels' 1m minimum.
INTERVAL_S = 60


@pytest.fixture(scope="module")
def demo(demo_db: DemoData) -> Iterator[DemoData]:
    """The demo data, with unqualified table names resolving to its database (as the datasource's default)."""
    before = demo_db.client.database
    demo_db.client.database = demo_db.database
    yield demo_db
    demo_db.client.database = before


@pytest.fixture(scope="module")
def time_range(demo: DemoData) -> tuple[datetime, datetime]:
    """From the first event to the last frame's end: the range an analyst would pick for this run."""
    row = demo.client.query("SELECT min(ts), max(ts) FROM api_calls").result_rows[0]
    start, end = row[0].replace(microsecond=0), row[1].replace(microsecond=0) + timedelta(minutes=2)
    assert end - start < timedelta(hours=2)  # a short run: the hourly rollups' partial hours must work too
    return start, end


def _run(demo: DemoData, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in demo.client.query(sql).result_rows]


def _all_queries() -> list[Query]:
    return [q for model in build.dashboards() for q in queries(build.to_dict(model)) if q.plugin == CLICKHOUSE.type]


@pytest.fixture(scope="module")
def variables(demo: DemoData, time_range: tuple[datetime, datetime]) -> dict[str, str]:
    """Values of the template variables, chosen among the options their own queries offer."""
    start, end = time_range
    options = {q.where.removeprefix("variable "): [r[0] for r in _run(demo, expand(q.text, start, end, INTERVAL_S, {}))]
               for q in _all_queries() if q.where.startswith("variable")}
    assert set(options) == {ACCOUNT_VAR, CLUSTER_VAR}
    assert options[ACCOUNT_VAR] and options[CLUSTER_VAR], options
    # The account: the riskiest one offered that belongs to a campaign, so every panel has data for it.
    members = {r[0] for r in _run(demo, "SELECT arrayJoin(account_ids) FROM clusters FINAL WHERE active = 1")}
    account = next(a for a in options[ACCOUNT_VAR] if a in members)
    assert demo.accounts[account]["is_attack"], account  # the demo's linked fleet is an attacker fleet
    # The campaign: the variable's default (its first option, the highest score).
    return {ACCOUNT_VAR: account, CLUSTER_VAR: options[CLUSTER_VAR][0]}


@pytest.mark.parametrize("query", _all_queries(), ids=lambda q: f"{q.dashboard}:{q.where}")
def test_query_runs_on_demo_data_and_returns_rows(query: Query, demo: DemoData, time_range: tuple[datetime, datetime],
                                                  variables: dict[str, str]) -> None:
    start, end = time_range
    sql = expand(query.text, start, end, INTERVAL_S, variables)
    rows = _run(demo, sql)
    assert rows, f"{query.dashboard} {query.where} returned no rows:\n{sql}"
    assert any(v not in (None, 0, "") for row in rows for v in row), f"{query.where}: only empty values"


def test_rollup_panels_agree_with_the_base_tables(demo: DemoData, time_range: tuple[datetime, datetime]) -> None:
    """The overview's calls/s is the raw count of the minutes in the range per second (the rollups are complete)."""
    start, end = time_range
    overview = build.to_dict(build.dashboards()[0])
    calls = next(q for q in queries(overview) if "Calls/s'" in q.where)
    (rate,), = _run(demo, expand(calls.text, start, end, INTERVAL_S, {}))
    # The rollup holds whole minutes: the range selects the minutes that start inside it.
    (raw,), = _run(demo, f"SELECT count() FROM api_calls WHERE toStartOfMinute(ts) "
                         f"BETWEEN toDateTime({int(start.timestamp())}) AND toDateTime({int(end.timestamp())})")
    assert raw > 0
    assert rate == pytest.approx(raw / (end - start).total_seconds())


def _overview_stat(demo: DemoData, time_range: tuple[datetime, datetime], title: str) -> Any:
    start, end = time_range
    overview = build.to_dict(build.dashboards()[0])
    query = next(q for q in queries(overview) if f"'{title}'" in q.where)
    (value,), = _run(demo, expand(query.text, start, end, INTERVAL_S, {}))
    return value


def test_output_tokens_are_completion_plus_reasoning(demo: DemoData, time_range: tuple[datetime, datetime]) -> None:
    start, end = time_range
    rate = _overview_stat(demo, time_range, "Output tokens/s")
    (completion, reasoning), = _run(demo, f"SELECT sum(completion_tokens), sum(reasoning_tokens) FROM api_calls "
                                          f"WHERE toStartOfMinute(ts) BETWEEN toDateTime({int(start.timestamp())}) "
                                          f"AND toDateTime({int(end.timestamp())})")
    assert completion > 0 and reasoning > 0  # the demo's reasoning traffic makes the difference visible
    assert rate == pytest.approx((completion + reasoning) / (end - start).total_seconds())


def test_active_campaigns_count_only_clusters_at_the_rules_threshold(
        demo: DemoData, time_range: tuple[datetime, datetime]) -> None:
    start, _ = time_range
    counted = _overview_stat(demo, time_range, "Active campaigns")
    scores = [r[0] for r in _run(demo, f"SELECT score FROM clusters FINAL WHERE active = 1 "
                                       f"AND updated_ts >= toDateTime({int(start.timestamp())})")]
    assert counted == sum(score >= campaign_min_score() for score in scores) >= 1


def test_top_signals_read_only_the_top_accounts_and_lose_nothing(
        demo: DemoData, time_range: tuple[datetime, datetime]) -> None:
    start, end = time_range
    restriction = "account_id IN (SELECT account_id FROM top) AND "
    assert restriction in TOP_ACCOUNTS_SQL
    restricted = _run(demo, expand(TOP_ACCOUNTS_SQL, start, end, INTERVAL_S, {}))
    everyone = _run(demo, expand(TOP_ACCOUNTS_SQL.replace(restriction, ""), start, end, INTERVAL_S, {}))
    assert restricted == everyone and any(row[2] for row in restricted)

"""``answer_query``: the /query view's whole answer, against the session's chDB."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.settings import Settings
from pipeline.sinks.clickhouse import connect_read_only
from pipeline.web.query import answer_query

pytestmark = pytest.mark.clickhouse


@pytest.fixture
def ro(ch_client: Client, ch_settings: Settings) -> Client:
    return connect_read_only(ch_settings)


def test_a_select_answers_columns_rows_and_truncated(ro: Client) -> None:
    reply = answer_query(ro, {"sql": "SELECT number AS n, toString(number) AS s FROM numbers({k:UInt8})",
                              "param_k": "2"})
    assert (reply.status, reply.content_type) == (200, "application/json")
    assert reply.json() == {"columns": ["n", "s"], "rows": [{"n": 0, "s": "0"}, {"n": 1, "s": "1"}],
                            "truncated": False}


def test_values_json_cannot_hold_become_text(ro: Client) -> None:
    reply = answer_query(ro, {"sql": "SELECT toDateTime('2026-01-02 03:04:05', 'UTC') AS t, toUUID("
                                     "'00000000-0000-0000-0000-000000000001') AS u"})
    assert reply.status == 200
    row = reply.json()["rows"][0]
    assert row["t"].startswith("2026-01-02 03:04:05") and row["u"] == "00000000-0000-0000-0000-000000000001"


@pytest.mark.parametrize(("query", "status", "reason"), [
    ({"sql": "SELECT * FROM file('/etc/hostname', 'LineAsString')"}, 403, "function"),
    ({"sql": "INSERT INTO api_calls (event_id) VALUES ('x')"}, 403, "statement"),
    ({"sql": "SELECT 1 SETTINGS readonly = 0"}, 403, "read_only"),
    ({}, 400, "syntax"),
    ({"sql": "SELECT {x:UInt8}", "param_x": "abc"}, 400, "query"),
    ({"sql": "SELECT 1", "param_bad-name": "1"}, 400, "params"),
])
def test_refusals_are_json_with_a_reason(ro: Client, query: dict[str, str], status: int, reason: str) -> None:
    reply = answer_query(ro, query)
    assert (reply.status, reply.content_type) == (status, "application/json")
    body = reply.json()
    assert body["reason"] == reason and body["error"]

"""Query results as table / json lines / csv, and name=value parameters (pipeline/sinks/formats.py)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.sinks.formats import QueryResult, params_from_query, parse_params, render, run_query
from pipeline.sinks.read_only import ReadOnlyAnswer
from pipeline.web.query import format_answer

RESULT = QueryResult(("account", "calls", "score", "signals", "at"), [
    ("a-1", 5, 12.5, ["x", "y"], datetime(2026, 1, 2, 3, 4, 5)),
    ('b "quoted", with comma\nand newline', 12345, 7.0, [], None),
])


def test_csv_parses_back_with_the_csv_module() -> None:
    rows = list(csv.reader(io.StringIO(render(RESULT, "csv"))))
    assert rows[0] == list(RESULT.columns)
    assert rows[1] == ["a-1", "5", "12.5", '["x", "y"]', "2026-01-02 03:04:05"]
    assert rows[2][0] == 'b "quoted", with comma\nand newline' and rows[2][4] == "NULL"


def test_json_lines_one_object_per_row() -> None:
    lines = render(RESULT, "json").splitlines()
    assert [json.loads(line)["calls"] for line in lines] == [5, 12345]
    assert json.loads(lines[0])["at"] == "2026-01-02 03:04:05"


def test_table_columns_are_aligned() -> None:
    result = QueryResult(("name", "calls"), [("a", 5), ("longer-name", 12345)])
    lines = render(result, "table").splitlines()
    assert lines[0] == "name         calls"
    assert lines[1] == "-----------  -----"
    assert lines[2] == "a                5"  # text left, numbers right
    assert lines[3] == "longer-name  12345"
    assert lines[-1] == "(2 rows)"
    assert render(QueryResult(("x",), []), "table").splitlines() == ["x", "-", "(0 rows)"]


def test_unknown_format_and_bad_params_are_named() -> None:
    with pytest.raises(ValueError, match="'xml'"):
        render(RESULT, "xml")
    assert parse_params(["account=a=b", "since=2026-01-01 00:00:00"]) == {
        "account": "a=b", "since": "2026-01-01 00:00:00"}
    for bad in ("noequals", "1x=2", "a-b=c"):
        with pytest.raises(ValueError, match=bad):
            parse_params([bad])
    assert params_from_query({"sql": "S", "param_account": "a-1", "format": "csv"}) == {"account": "a-1"}


def test_query_view_formats() -> None:
    answer = ReadOnlyAnswer(QueryResult(("n",), [(1,), (2,)]), truncated=True)
    table = format_answer(answer, "table")
    assert table.content_type.startswith("text/plain") and table.body.decode().splitlines()[-1] == "(2 rows)"
    assert table.headers == {"X-Distillwatch-Truncated": "true"}
    as_csv = format_answer(answer, "csv")
    assert list(csv.reader(io.StringIO(as_csv.body.decode()))) == [["n"], ["1"], ["2"]]
    assert format_answer(answer, "json").json()["rows"] == [{"n": 1}, {"n": 2}]


@pytest.mark.clickhouse
def test_params_are_bound_by_clickhouse_and_cannot_inject(ch_client: Client) -> None:
    sql = "SELECT count() AS n FROM numbers(10) WHERE toString(number) = {v:String}"
    assert run_query(ch_client, sql, {"v": "3"}).rows == [(1,)]
    # The value is data, never SQL text: a classic injection matches nothing.
    assert run_query(ch_client, sql, {"v": "3' OR '1'='1"}).rows == [(0,)]
    assert run_query(ch_client, sql, {"v": "3 OR 1=1 --"}).rows == [(0,)]
    result = run_query(ch_client, "SELECT {a:Array(String)} AS a, {t:DateTime64(3, 'UTC')} AS t",
                       {"a": ["x'y"], "t": "2026-01-02 03:04:05.678"})
    assert result.columns == ("a", "t") and result.rows[0][0] == ["x'y"]

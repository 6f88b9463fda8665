"""Query results as table / json lines / csv, and name=value parameters (pipeline/sinks/formats.py)."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime

import numpy as np
import pytest
from clickhouse_connect.driver.client import Client
from multidict import MultiDict

from pipeline.sinks.formats import (
    QueryResult,
    params_from_query,
    parse_params,
    render,
    run_query,
    shortest_float32,
)
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


FLOATS = ("SELECT toFloat32(94.1283) AS f32, round(toFloat32(61.29), 1) AS r, toNullable(toFloat32(0.2)) AS n, "
          "[toFloat32(0.1)] AS arr, (toFloat32(0.1), 0.1) AS tup, map('k', toFloat32(0.3)) AS m, "
          "0.1 + 0.2 AS f64, toFloat32(NULL) AS null32, toFloat32(1e20) AS big")


@pytest.mark.clickhouse
def test_float32_prints_as_its_shortest_decimal_and_float64_as_repr(ch_client: Client) -> None:
    result = run_query(ch_client, FLOATS)
    assert result.rows == [(94.1283, 61.3, 0.2, [0.1], (0.1, 0.1), {"k": 0.3}, 0.30000000000000004, None, 1e20)]
    as_json = json.loads(render(result, "json"))
    assert as_json["f32"] == 94.1283 and as_json["tup"] == [0.1, 0.1]
    assert '"f32": 94.1283, "r": 61.3,' in render(result, "json")
    csv_row = list(csv.reader(io.StringIO(render(result, "csv"))))[1]
    assert csv_row[:3] == ["94.1283", "61.3", "0.2"] and csv_row[3] == "[0.1]"
    assert csv_row[6] == "0.30000000000000004" and csv_row[7] == "NULL" and csv_row[8] == "1e+20"
    table = render(result, "table").splitlines()
    assert table[2].split()[:3] == ["94.1283", "61.3", "0.2"]


@pytest.mark.clickhouse
def test_float32_stays_the_same_float32(ch_client: Client) -> None:
    """The shortened value reads back as exactly the Float32 ClickHouse holds."""
    sql = "SELECT toFloat32(number * 0.37 + 1 / (number + 3)) AS v FROM numbers(2000)"
    shortened = [row[0] for row in run_query(ch_client, sql).rows]
    widened = [row[0] for row in ch_client.query(sql).result_rows]
    assert all(np.float32(s) == np.float32(w) and len(repr(s)) <= len(repr(w))
               for s, w in zip(shortened, widened, strict=True))
    nan = shortest_float32(float("nan"))
    assert shortest_float32(None) is None and nan is not None and math.isnan(nan)


@pytest.mark.clickhouse
def test_params_never_reach_the_text_without_a_placeholder(ch_client: Client) -> None:
    """Without a {name:Type} placeholder the driver would format ``%`` itself: parameters are left out."""
    sql = "SELECT count() AS n FROM numbers(20) WHERE toString(number) LIKE '%1%'"
    assert run_query(ch_client, sql, {"x": "1"}).rows == [(11,)]
    assert run_query(ch_client, "SELECT '%(x)s' AS v", {"x": "injected"}).rows == [("%(x)s",)]


def test_a_parameter_given_twice_is_refused_not_overwritten() -> None:
    with pytest.raises(ValueError, match=r"parameter 'account' given twice \('a-1' and 'a-2'\)"):
        parse_params(["account=a-1", "since=x", "account=a-2"])
    # /query's URL parameters arrive as a multidict: ?param_account=a-1&param_account=a-2
    with pytest.raises(ValueError, match="given twice"):
        params_from_query(MultiDict([("sql", "S"), ("param_account", "a-1"), ("param_account", "a-2")]))

"""/query's SQL is read-only in fact: what ClickHouse's readonly=1 session refuses by itself, what
the statement check adds for embedded chDB, and that plain reads still work. Against the session's
chDB; table functions aim at servers this test runs on loopback and counts the hits of."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver import exceptions as driver_errors
from clickhouse_connect.driver.client import Client

from pipeline.settings import Settings
from pipeline.sinks.clickhouse import QUERY_ROW_LIMIT, READ_ONLY_SETTINGS, connect_read_only
from pipeline.sinks.read_only import QueryRefused, check_ast, check_text, read_only_query
from tests.support.loopback_servers import SECRET, CountingHttp, CountingTcp

pytestmark = pytest.mark.clickhouse


@pytest.fixture(scope="module")
def web() -> Iterator[CountingHttp]:
    server = CountingHttp()
    yield server
    server.close()


@pytest.fixture(scope="module")
def tcp() -> Iterator[CountingTcp]:
    server = CountingTcp()
    yield server
    server.close()


@pytest.fixture
def ro(ch_client: Client, ch_settings: Settings) -> Client:
    return connect_read_only(ch_settings)


def refused(client: Client, sql: str) -> QueryRefused:
    with pytest.raises(QueryRefused) as info:
        read_only_query(client, sql)
    assert SECRET not in str(info.value)
    return info.value


# --- layer 1: the session's readonly=1, by itself (statements sent straight to the client) ----------

OUTSIDE = {
    "url": "SELECT * FROM url('http://127.0.0.1:{http}/secret', 'LineAsString')",
    "s3": "SELECT * FROM s3('http://127.0.0.1:{http}/some-bucket/key.csv', 'CSV')",
    "remote": "SELECT * FROM remote('127.0.0.1:{tcp}', system.one)",
    "file": "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "executable": "SELECT * FROM executable('cat', 'TSV', 'x String', (SELECT 1))",
    "subquery_settings": "SELECT * FROM (SELECT * FROM url('http://127.0.0.1:{http}/s', 'LineAsString') "
                         "SETTINGS readonly = 0)",
    "insert": "INSERT INTO dw_session.rejected_events (kafka_partition) VALUES (1)",
    "create": "CREATE TABLE dw_session.x (a UInt8) ENGINE = Memory",
    "drop": "DROP TABLE dw_session.api_calls",
    "set": "SET max_execution_time = 0",
    "settings_clause": "SELECT 1 SETTINGS readonly = 0",
    "system": "SYSTEM DROP DNS CACHE",
}


@pytest.mark.parametrize("case", sorted(OUTSIDE))
def test_the_readonly_session_refuses_writes_settings_and_outside_table_functions(
        ro: Client, web: CountingHttp, tcp: CountingTcp, case: str) -> None:
    web.hits.clear()
    before = tcp.connections
    with pytest.raises(driver_errors.DatabaseError, match=r"\(READONLY\)"):
        ro.query(OUTSIDE[case].format(http=web.port, tcp=tcp.port))
    assert web.hits == [] and tcp.connections == before


def test_readonly_2_would_let_table_functions_fetch(ch_settings: Settings, web: CountingHttp) -> None:
    """Why the session is readonly=1: readonly=2 (settings allowed) runs url() and reads the answer."""
    web.hits.clear()
    lax = clickhouse_connect.get_client(dsn=ch_settings.effective_clickhouse_dsn, settings={"readonly": 2})
    try:
        rows = lax.query(f"SELECT * FROM url('http://127.0.0.1:{web.port}/s', 'LineAsString')").result_rows
    finally:
        lax.close()
    assert rows == [(SECRET,)] and web.hits


def test_what_readonly_1_lets_through_in_embedded_chdb(ro: Client, tmp_path: Path) -> None:
    """The gaps the statement check closes (measured on chDB 26.9): local mode reads and writes files."""
    assert ro.query("SELECT length(file('/etc/hostname')) > 0").result_rows == [(1,)]
    out = tmp_path / "out.txt"
    ro.query(f"SELECT 1 INTO OUTFILE '{out}'")
    assert out.exists()


# --- layer 2: read_only_query, what /query runs ------------------------------------------------


def test_url_is_refused_without_a_request(ro: Client, web: CountingHttp) -> None:
    web.hits.clear()
    error = refused(ro, f"SELECT * FROM url('http://127.0.0.1:{web.port}/secret','LineAsString')")
    assert (error.status, error.reason) == (403, "table_function") and "url()" in error.message
    assert web.hits == []


@pytest.mark.parametrize(("sql", "status", "reason"), [
    ("SELECT * FROM file('/etc/hostname', 'LineAsString')", 403, "function"),
    ("SELECT file('/etc/hostname')", 403, "function"),
    ("SELECT * FROM (SELECT toUInt8(file('/etc/hostname')))", 403, "function"),
    ("SELECT 1 INTO OUTFILE '/tmp/distillwatch-read-only-test.txt'", 403, "into_outfile"),
    ("INSERT INTO api_calls (event_id) VALUES ('x')", 403, "statement"),
    ("CREATE TABLE x (a UInt8) ENGINE = Memory", 403, "statement"),
    ("SET max_threads = 1", 403, "statement"),
    ("KILL QUERY WHERE 1", 403, "statement"),
    ("SYSTEM STOP MERGES", 403, "statement"),  # readonly=1 lets this one through (chDB 26.9)
    ("OPTIMIZE TABLE api_calls FINAL", 403, "statement"),
    ("SELECT 1 SETTINGS readonly = 0", 403, "read_only"),
    ("WITH 1 AS a SELECT a SETTINGS max_execution_time = 0", 403, "read_only"),
    ("SELECT * FROM eval('SELECT 1')", 403, "table_function"),
    ("SELECT * FROM python('settings')", 403, "table_function"),
    ("SELECT * FROM remote('127.0.0.1:9000', system.one)", 403, "table_function"),
    ("SELECT 1; INSERT INTO api_calls (event_id) VALUES ('x')", 400, "syntax"),
    ("SELECT 1 FORMAT JSON", 400, "format"),
    ("SELEC 1", 400, "syntax"),
    ("   ", 400, "syntax"),
    ("SELECT * FROM no_such_table", 400, "query"),
])
def test_refusals_name_why(ro: Client, sql: str, status: int, reason: str) -> None:
    error = refused(ro, sql)
    assert (error.status, error.reason) == (status, reason), error.message
    assert error.as_dict() == {"error": error.message, "reason": reason}


def test_into_outfile_writes_nothing(ro: Client, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    refused(ro, f"SELECT 1 INTO OUTFILE '{out}'")
    assert not out.exists()


# INTO OUTFILE as every statement kind takes it; {new}: a file that must not appear, {old}: one
# that must keep its content (TRUNCATE / APPEND would overwrite / extend it).
OUTFILE_FORMS = {
    "explain_truncate": "EXPLAIN SELECT 'x' INTO OUTFILE '{old}' TRUNCATE",
    "explain_append": "EXPLAIN SELECT 'x' INTO OUTFILE '{old}' APPEND",
    "explain": "EXPLAIN SELECT 'x' INTO OUTFILE '{new}'",
    "explain_syntax": "EXPLAIN SYNTAX SELECT 'PAYLOAD' INTO OUTFILE '{new}'",
    "explain_syntax_format": "EXPLAIN SYNTAX SELECT 'PAYLOAD' INTO OUTFILE '{new}' FORMAT TSVRaw",
    "explain_plan": "EXPLAIN PLAN SELECT 1 INTO OUTFILE '{new}'",
    "explain_ast": "EXPLAIN AST SELECT 1 INTO OUTFILE '{new}'",
    "show_tables": "SHOW TABLES INTO OUTFILE '{new}'",
    "show_tables_like": "SHOW TABLES LIKE '%a%' LIMIT 3 INTO OUTFILE '{new}' FORMAT TSVRaw",
    "show_create": "SHOW CREATE TABLE alerts INTO OUTFILE '{new}'",
    "describe": "DESCRIBE TABLE alerts INTO OUTFILE '{new}'",
    "exists": "EXISTS TABLE alerts INTO OUTFILE '{new}'",
    "select_truncate": "select 'x' into   outfile '{old}' truncate",
    "union_gzip": "SELECT 1 UNION ALL SELECT 2 INTO OUTFILE '{new}' COMPRESSION 'gzip' LEVEL 3",
    "intersect_and_stdout": "SELECT 1 INTERSECT SELECT 1 INTO OUTFILE '{new}' AND STDOUT",
}


@pytest.fixture
def outfile_targets(tmp_path: Path) -> dict[str, Path]:
    old = tmp_path / "victim.txt"
    old.write_text("ORIGINAL\n")
    return {"new": tmp_path / "new.txt", "old": old}


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.mark.parametrize("case", sorted(OUTFILE_FORMS))
def test_into_outfile_is_refused_for_every_statement_kind_and_writes_nothing(
        ro: Client, outfile_targets: dict[str, Path], case: str) -> None:
    folder = outfile_targets["new"].parent
    before = _files(folder)
    error = refused(ro, OUTFILE_FORMS[case].format(**outfile_targets))
    assert (error.status, error.reason) == (403, "into_outfile"), error.message
    assert _files(folder) == before == {"victim.txt": b"ORIGINAL\n"}


@pytest.mark.parametrize("case", sorted(OUTFILE_FORMS))
def test_the_syntax_tree_check_alone_finds_into_outfile(
        ro: Client, outfile_targets: dict[str, Path], case: str) -> None:
    """Without the text check: ClickHouse's own EXPLAIN AST of each form is refused too."""
    folder = outfile_targets["new"].parent
    before = _files(folder)
    lines = [str(row[0]) for row in ro.query(f"EXPLAIN AST {OUTFILE_FORMS[case].format(**outfile_targets)}")
             .result_rows]
    with pytest.raises(QueryRefused) as info:
        check_ast(lines)
    assert info.value.reason == "into_outfile"
    assert _files(folder) == before  # EXPLAIN AST itself writes nothing


def test_the_text_check_skips_quoted_strings_and_names() -> None:
    check_text("SELECT 'a INTO OUTFILE \\'b\\'' AS `c\\nINTO OUTFILE`, \"INTO OUTFILE\" AS into")
    with pytest.raises(QueryRefused, match="INTO OUTFILE"):
        check_text("SELECT 'it\\'s' AS `x`\nINTO OUTFILE 'y'")


@pytest.mark.parametrize("sql", [
    "EXPLAIN AST INSERT INTO api_calls (event_id) VALUES ('x')",
    "EXPLAIN AST CREATE TABLE x (a UInt8) ENGINE = Memory",
    "SHOW CREATE USER default",
    "SHOW PROCESSLIST",
    "SHOW GRANTS",
])
def test_statement_kinds_outside_the_allow_list_are_refused_nested_too(ro: Client, sql: str) -> None:
    error = refused(ro, sql)
    assert (error.status, error.reason) == (403, "statement"), error.message


def test_a_scan_past_the_read_limit_is_refused(ro: Client) -> None:
    error = refused(ro, "SELECT count() FROM numbers(100000000000)")
    assert error.reason == "query" and "TOO_MANY_ROWS" in error.message
    assert READ_ONLY_SETTINGS["max_rows_to_read"] < 100_000_000_000


@pytest.mark.parametrize(("sql", "first_row"), [
    ("SELECT count() AS n FROM api_calls", {"n": 0}),
    ("  with a AS (SELECT 2 AS b) select b * 2 AS c FROM a", {"c": 4}),
    ("SELECT number FROM numbers(3) ORDER BY number DESC", {"number": 2}),
    ("SELECT {x:UInt8} + 1 AS y", {"y": 42}),
    ("EXISTS TABLE signatures_1m", {"result": 1}),
    ("DESCRIBE TABLE traffic_1m", None),
    ("SHOW TABLES", None),
    ("EXPLAIN SELECT 1", None),
    ("EXPLAIN AST SELECT 1", None),
    ("EXPLAIN json = 1 SELECT 1", None),
    ("SHOW TABLES LIKE '%alert%'", None),
    ("SHOW CREATE TABLE alerts", None),
    ("SELECT 1 AS z EXCEPT SELECT 2", {"z": 1}),
    ("SELECT 'x INTO OUTFILE y' AS `into outfile`", {"into outfile": "x INTO OUTFILE y"}),
])
def test_plain_reads_work(ro: Client, sql: str, first_row: dict[str, object] | None) -> None:
    answer = read_only_query(ro, sql, {"x": 41})
    assert answer.result.rows and not answer.truncated
    if first_row is not None:
        assert answer.result.dicts()[0] == first_row


def test_results_past_the_limit_are_cut_and_flagged(ro: Client) -> None:
    cut = read_only_query(ro, f"SELECT number FROM numbers({QUERY_ROW_LIMIT + 5})")
    assert cut.truncated and len(cut.result.rows) == QUERY_ROW_LIMIT
    exact = read_only_query(ro, f"SELECT number FROM numbers({QUERY_ROW_LIMIT})")
    assert not exact.truncated and len(exact.result.rows) == QUERY_ROW_LIMIT


def test_a_query_failing_midway_leaves_the_next_answer_right(ro: Client) -> None:
    for k in range(3):
        error = refused(ro, "SELECT throwIf(number = 70000) FROM numbers(90000)")
        assert error.reason == "query" and "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO" in error.message
        assert read_only_query(ro, "SELECT {k:UInt8} AS k", {"k": k}).result.rows == [(k,)]


def test_the_session_limits_are_in_force_and_fixed(ro: Client) -> None:
    names = ", ".join(f"'{name}'" for name in READ_ONLY_SETTINGS)
    got = dict(ro.query(f"SELECT name, value FROM system.settings WHERE name IN ({names})").result_rows)
    assert got == {name: str(value) for name, value in READ_ONLY_SETTINGS.items()}
    assert refused(ro, "SELECT 1 SETTINGS max_memory_usage = 0").reason == "read_only"


def test_the_writer_session_stays_writable_and_is_not_accepted(ro: Client, ch_client: Client) -> None:
    refused(ro, "SET readonly = 0")
    assert ch_client.query("SELECT getSetting('readonly')").result_rows == [(0,)]
    with pytest.raises(ValueError, match="connect_read_only"):
        read_only_query(ch_client, "SELECT 1")


def test_check_ast_reads_clickhouse_explain_output() -> None:
    select = ["SelectWithUnionQuery (children 2)", " ExpressionList (children 1)", "  SelectQuery (children 2)",
              "   ExpressionList (children 1)", "    Asterisk", "   TablesInSelectQuery (children 1)",
              "    TablesInSelectQueryElement (children 1)", "     TableExpression (children 1)",
              "      Function numbers (children 1)", "       ExpressionList (children 1)",
              "        Literal UInt64_3", " Identifier Native"]
    check_ast(select)
    with pytest.raises(QueryRefused, match=r"table function URL\(\)"):
        check_ast([line.replace("Function numbers", "Function URL") for line in select])
    with pytest.raises(QueryRefused, match="no syntax tree"):
        check_ast([])

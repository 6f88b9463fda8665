"""Untrusted SQL (the worker's ``/query``): run only read-only queries, refuse the rest with a reason.

Three layers, each resting on ClickHouse's own rules or parser: the ``readonly=1`` session of
``connect_read_only``; a check of ClickHouse's parse (``formatQuery``, ``EXPLAIN AST``) for what
readonly=1 lets through in embedded chDB (``STATEMENT_KINDS`` at any depth, ``_CLAUSE_KINDS``,
no ``INTO OUTFILE``, no scalar ``file()``, ``ALLOWED_TABLE_FUNCTIONS``); and the session's limits
(``READ_ONLY_SETTINGS``). The statement that runs is the checked one (ClickHouse's formatting of
it), never the raw text. Each rule and why: docs/operations.md ("`/query` and the web token");
the tests that prove them: tests/pipeline/sinks/test_read_only.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from clickhouse_connect.driver import exceptions as driver_errors

from pipeline.sinks.clickhouse import QUERY_ROW_LIMIT, READ_ONLY_SETTINGS, ClickHouseUnavailable
from pipeline.sinks.formats import QueryResult, run_query

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

# EXPLAIN AST node kinds (first word of a line) of the statements /query runs.
STATEMENT_KINDS = frozenset({
    "SelectWithUnionQuery", "SelectIntersectExceptQuery",  # SELECT, WITH, UNION, EXCEPT, INTERSECT
    "ShowTables",  # SHOW TABLES / DATABASES / DICTIONARIES / SETTINGS
    "ShowColumns", "ShowCreateTableQuery", "ShowCreateDatabaseQuery", "ShowCreateViewQuery",
    "ShowCreateDictionaryQuery", "DescribeQuery", "ExistsTableQuery", "ExistsDatabaseQuery",
    "ExistsViewQuery", "ExistsDictionaryQuery", "Explain",
})
# What a statement node may hold directly besides nested statements: the selects of a union,
# DESCRIBE's table, names and FORMAT, SETTINGS / EXPLAIN options. Not a Literal: that is
# INTO OUTFILE's file name (and COMPRESSION's method and level).
_CLAUSE_KINDS = frozenset({"ExpressionList", "SelectQuery", "TableExpression", "Identifier", "Set"})
_ONLY = "only SELECT, WITH, SHOW, DESCRIBE, EXISTS and EXPLAIN statements may run here"
_OUTFILE = "refused: INTO OUTFILE writes files on the worker's host"
# INTO OUTFILE in formatQuery's text once quoted strings and names are cut out (it escapes
# quotes and newlines inside them with a backslash).
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"", re.DOTALL)
_INTO_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)
# Generators and local tables only; compared lower-cased.
ALLOWED_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "values", "generaterandom", "generate_series",
    "generateseries", "null", "merge", "view", "viewifpermitted",
})
# Scalar functions that read the worker's host (compared lower-cased).
_DENIED_FUNCTIONS = {"file": "file() reads files on the worker's host"}
_READONLY_CODES = frozenset({164, 497})  # READONLY, ACCESS_DENIED
_CODE = re.compile(r"Code: (\d+)")
_EXCEPTION_TEXT = re.compile(
    r"DB::Exception: (?:Code: \d+\. DB::Exception: )?(.*?)(?: \(version [^)]*\))?\.? \((\w+)\)"
)


class QueryRefused(Exception):
    """The statement was not run (or ClickHouse refused it). ``status``: the HTTP status to answer.

    ``reason``: read_only | statement | function | table_function | into_outfile | format |
    syntax | query (ClickHouse failed it: unknown table, bad type, limit exceeded, ...).
    """

    def __init__(self, message: str, reason: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.status = status

    def as_dict(self) -> dict[str, str]:
        return {"error": self.message, "reason": self.reason}


@dataclass(frozen=True)
class _Node:
    depth: int
    kind: str  # first word of the EXPLAIN AST line: SelectQuery, Function, Literal, ...
    name: str  # second word (a function's name), or ""
    parent: _Node | None


class ReadOnlyAnswer(NamedTuple):
    result: QueryResult  # columns and at most QUERY_ROW_LIMIT rows
    truncated: bool  # the statement had more rows than QUERY_ROW_LIMIT


def read_only_query(client: Client, sql: str, params: Mapping[str, Any] | None = None) -> ReadOnlyAnswer:
    """The result of ``sql``, run on a ``connect_read_only`` client.

    ``params`` binds ``{name:Type}`` placeholders. Raises QueryRefused (status 403 when the
    statement is not allowed, 400 when it is wrong or ClickHouse failed it),
    ClickHouseUnavailable when ClickHouse cannot be reached, and ValueError when ``client``
    is not a read-only session.
    """
    if client.get_client_setting("readonly") != str(READ_ONLY_SETTINGS["readonly"]):
        raise ValueError("read_only_query needs a client from connect_read_only (readonly=1 session)")
    if not sql.strip():
        raise QueryRefused("no SQL given: pass the statement as ?sql=SELECT…", "syntax")
    bound = dict(params) if params else None
    # Parsed as a string value: never executed, and more than one statement is a syntax error.
    statement = str(_run(client, "SELECT formatQuery({sql:String})", {"sql": sql}).rows[0][0])
    check_text(statement)  # before EXPLAIN AST runs it inside a statement of its own
    try:
        ast = _run(client, f"EXPLAIN AST {statement}", bound)
    except QueryRefused as exc:
        if exc.reason != "syntax":
            raise
        # It parsed on its own, so EXPLAIN does not take this kind of statement (SYSTEM, KILL, ...).
        raise QueryRefused(f"{_ONLY} (got {statement.split()[0].upper()})", "statement", 403) from None
    check_ast([str(row[0]) for row in ast.rows])
    result = _run(client, statement, bound)
    truncated = len(result.rows) > QUERY_ROW_LIMIT
    return ReadOnlyAnswer(QueryResult(result.columns, result.rows[:QUERY_ROW_LIMIT]), truncated)


def check_text(statement: str) -> None:
    """Raise QueryRefused when ``statement`` (formatQuery's text) has an INTO OUTFILE clause."""
    if _INTO_OUTFILE.search(_QUOTED.sub("''", statement)):
        raise QueryRefused(_OUTFILE, "into_outfile", 403)


def check_ast(lines: list[str]) -> None:
    """Raise QueryRefused unless the ``EXPLAIN AST`` lines are of a statement /query may run."""
    nodes = _nodes(lines)
    if not nodes:
        raise QueryRefused("ClickHouse returned no syntax tree for the statement", "syntax")
    root = nodes[0]
    if root.kind not in STATEMENT_KINDS:
        raise QueryRefused(f"{_ONLY} (got {root.kind})", "statement", 403)
    for node in nodes:
        parent = node.parent
        if parent is not None and parent.kind in STATEMENT_KINDS:
            _check_clause(node, parent)
        if node.kind == "Function" and node.name.lower() in _DENIED_FUNCTIONS:
            raise QueryRefused(f"refused: {_DENIED_FUNCTIONS[node.name.lower()]}", "function", 403)
        if (node.kind == "Function" and parent is not None and parent.kind == "TableExpression"
                and node.name.lower() not in ALLOWED_TABLE_FUNCTIONS):
            raise QueryRefused(f"refused: table function {node.name}() may reach outside ClickHouse's tables; "
                               f"allowed here: {', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))}", "table_function", 403)
    # EXPLAIN AST shows the statement's FORMAT as the root's last child; Native is the one
    # clickhouse-connect adds when the statement has none.
    last = [node for node in nodes if node.parent is root][-1:]
    if last and last[0].kind == "Identifier" and last[0].name != "Native":
        raise QueryRefused(f"FORMAT {last[0].name} is not supported here: rows are returned as JSON", "format")


def _check_clause(node: _Node, statement: _Node) -> None:
    """``node`` sits directly under the statement node ``statement``: a clause or a nested statement."""
    if node.kind in _CLAUSE_KINDS or node.kind in STATEMENT_KINDS:
        return
    if node.kind == "Literal":
        raise QueryRefused(_OUTFILE, "into_outfile", 403)
    raise QueryRefused(f"{_ONLY} (got {node.kind} in {statement.kind})", "statement", 403)


def _nodes(lines: list[str]) -> list[_Node]:
    nodes: list[_Node] = []
    stack: list[_Node] = []
    for line in lines:
        words = line.split()
        if not words:
            continue
        depth = len(line) - len(line.lstrip(" "))
        while stack and stack[-1].depth >= depth:
            stack.pop()
        node = _Node(depth, words[0], words[1] if len(words) > 1 else "", stack[-1] if stack else None)
        nodes.append(node)
        stack.append(node)
    return nodes


def _run(client: Client, sql: str, params: dict[str, Any] | None) -> QueryResult:
    try:
        try:
            return run_query(client, sql, params)
        except driver_errors.StreamFailureError:
            # chDB sometimes hands the tail of a failed query's result to the next query on the
            # handle (measured after a runtime error in the middle of a result); it is read-only, so
            # asking again is safe and gets the real answer.
            return run_query(client, sql, params)
    except (driver_errors.OperationalError, OSError) as exc:
        raise ClickHouseUnavailable(f"ClickHouse unavailable: {type(exc).__name__}: {exc}") from exc
    except driver_errors.ClickHouseError as exc:
        raise _refusal(exc) from exc


def _refusal(exc: Exception) -> QueryRefused:
    code = _code(exc)
    text = str(exc)
    match = _EXCEPTION_TEXT.search(text)
    detail = f"{match.group(1)} ({match.group(2)})" if match else text.strip()
    if code in _READONLY_CODES:
        return QueryRefused(f"refused: /query is read-only; ClickHouse: {detail}", "read_only", 403)
    if code == 62:
        return QueryRefused(f"syntax error: {detail}", "syntax")
    return QueryRefused(f"ClickHouse error: {detail}", "query")


def _code(exc: Exception) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None

"""``GET /query?sql=…``: read-only SQL on the worker's ClickHouse, answered as JSON.

Parameters: ``sql`` (required), ``param_<name>=value`` bound to ``{name:Type}``
placeholders (the ClickHouse HTTP convention) and ``format``: ``json`` (default, the object
below), ``csv`` or ``table`` (text from pipeline/sinks/formats.py, as ``distillwatch sql``;
header ``X-Distillwatch-Truncated: true`` when rows were cut). Refusals are JSON ``{"error", "reason"}``
with 403 (not allowed: pipeline/sinks/read_only.py says why) or 400 (wrong), 503 when
ClickHouse is unreachable; never a 500 and never content a refused statement fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pipeline.sinks.clickhouse import ClickHouseUnavailable
from pipeline.sinks.formats import TEXT_CONTENT_TYPES, check_format, params_from_query, render
from pipeline.sinks.read_only import QueryRefused, ReadOnlyAnswer, read_only_query
from pipeline.web.reply import Reply, json_reply

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def answer_query(client: Client, query: Mapping[str, str]) -> Reply:
    """The reply to a /query request with URL parameters ``query`` (blocking: run it in a thread)."""
    try:
        params = params_from_query(query)
    except ValueError as exc:
        return json_reply({"error": str(exc), "reason": "params"}, 400)
    try:
        fmt = check_format(query.get("format", "json"))
    except ValueError as exc:
        return json_reply({"error": str(exc), "reason": "format"}, 400)
    try:
        answer = read_only_query(client, query.get("sql", ""), params)
    except QueryRefused as exc:
        return json_reply(exc.as_dict(), exc.status)
    except ClickHouseUnavailable as exc:
        return json_reply({"error": f"ClickHouse is unavailable ({type(exc).__name__}); see the worker log",
                           "reason": "unavailable"}, 503)
    return format_answer(answer, fmt)


def format_answer(answer: ReadOnlyAnswer, fmt: str = "json") -> Reply:
    """The one place a result becomes a body: ``{"columns", "rows": [{column: value}], "truncated"}``."""
    if fmt in TEXT_CONTENT_TYPES:
        headers = {"X-Distillwatch-Truncated": "true"} if answer.truncated else {}
        return Reply(200, render(answer.result, fmt).encode(), TEXT_CONTENT_TYPES[fmt], headers)
    return json_reply({"columns": list(answer.result.columns), "rows": answer.result.dicts(),
                       "truncated": answer.truncated})

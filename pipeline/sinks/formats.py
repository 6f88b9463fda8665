"""Query results as text: ``table`` (aligned columns), ``json`` (JSON lines) or ``csv``.

Shared by ``distillwatch sql`` and the worker's ``GET /query`` so both print the
same thing. Also parses ``name=value`` query parameters: values are bound by
ClickHouse to ``{name:Type}`` placeholders, never pasted into the SQL text.
Float32 values (also inside arrays, tuples and maps) come out as ClickHouse prints
them, the shortest decimal that reads back as the same Float32 (``94.1283``, not
``94.12830352783203``); Float64 as Python's repr.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from clickhouse_connect.datatypes.base import ClickHouseType
    from clickhouse_connect.driver.client import Client

FORMATS: Final = ("table", "json", "csv")
# HTTP content types of the text formats (/query answers json as one JSON object instead).
TEXT_CONTENT_TYPES: Final = {"table": "text/plain; charset=utf-8", "csv": "text/csv; charset=utf-8"}
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class QueryResult:
    """Column names (in the query's order, kept even when there are no rows) and row tuples."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def run_query(client: Client, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
    """Run ``sql`` with ``parameters`` bound server-side; raises the driver's errors unchanged.

    Parameters are passed only when ``sql`` has a ``{name:Type}`` placeholder: without one,
    clickhouse-connect would paste them into the text itself (``%(name)s``, and any ``%``
    in the SQL, a ``LIKE '%x%'``, would fail). ClickHouse ignores the unused ones anyway.
    """
    # Imported here: ``distillwatch sql`` imports this module at start, before it needs them.
    from clickhouse_connect.driver.binding import external_bind_re

    bound = dict(parameters) if parameters and external_bind_re.search(sql) else None
    result = client.query(sql, parameters=bound)
    converters = [_float32_converter(t) for t in result.column_types]
    if not any(converters):
        return QueryResult(tuple(result.column_names), [tuple(r) for r in result.result_rows])
    rows = [tuple(v if c is None else c(v) for v, c in zip(row, converters, strict=True))
            for row in result.result_rows]
    return QueryResult(tuple(result.column_names), rows)


def parse_params(pairs: Iterable[str]) -> dict[str, str]:
    """``["account=a-1", "since=2026-01-01 00:00:00"]`` → dict; raises ValueError naming a bad pair.

    A name given twice is an error (which value was meant cannot be known), not the last one wins.
    """
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not _PARAM_NAME.match(name):
            raise ValueError(f"bad parameter {pair!r}: expected name=value with name a plain identifier")
        if name in params:
            raise ValueError(f"parameter {name!r} given twice ({params[name]!r} and {value!r}): give each name once")
        params[name] = value
    return params


def params_from_query(query: Mapping[str, str], prefix: str = "param_") -> dict[str, str]:
    """The ``param_<name>=value`` entries of a URL query (the ClickHouse HTTP convention), prefix removed."""
    return parse_params(f"{k[len(prefix):]}={v}" for k, v in query.items() if k.startswith(prefix))


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def render(result: QueryResult, fmt: str) -> str:
    """The whole result in ``fmt`` (one of FORMATS), ending with a newline unless empty json."""
    check_format(fmt)
    if fmt == "json":
        return "".join(json.dumps(d, default=_json_default) + "\n" for d in result.dicts())
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([_cell(v) for v in row] for row in result.rows)
        return buf.getvalue()
    return render_table(result.columns, result.rows)


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned columns: a header, a rule, numbers right-aligned and text left-aligned; row count last."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [bool(rows) and all(_is_number(row[j]) for row in rows) for j in range(len(columns))]
    widths = [max([len(c), *(len(r[j]) for r in cells)]) for j, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(out) + "\n"


def shortest_float32(value: float | None) -> float | None:
    """The float whose repr is the shortest decimal that reads back as the same Float32.

    clickhouse-connect hands Float32 values over widened to float64, whose repr shows the
    widening's digits (``61.29999923706055`` for a stored ``61.3``).
    """
    import numpy as np  # str() of a numpy float32 is its shortest round-trip decimal

    return None if value is None else float(str(np.float32(value)))


def _float32_converter(ch_type: ClickHouseType) -> Callable[[Any], Any] | None:
    """What to apply to one value of ``ch_type`` to shorten its Float32s; None when it has none."""
    from clickhouse_connect.datatypes.container import Array, Map, Tuple
    from clickhouse_connect.datatypes.numeric import Float32

    if isinstance(ch_type, Float32):  # Nullable and LowCardinality ones too
        return shortest_float32
    if isinstance(ch_type, Array):
        item = _float32_converter(ch_type.element_type)
        return None if item is None else lambda v: None if v is None else [item(x) for x in v]
    if isinstance(ch_type, Tuple):
        parts = [_float32_converter(t) for t in ch_type.element_types]
        if not any(parts):
            return None
        return lambda v: _convert_tuple(v, parts)
    if isinstance(ch_type, Map):
        key, val = _float32_converter(ch_type.key_type), _float32_converter(ch_type.value_type)
        if key is None and val is None:
            return None
        return lambda v: None if v is None else {
            (k if key is None else key(k)): (x if val is None else val(x)) for k, x in v.items()}
    return None


def _convert_tuple(value: Any, parts: list[Callable[[Any], Any] | None]) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):  # a named tuple read as a dict
        return {k: (x if c is None else c(x)) for (k, x), c in zip(value.items(), parts, strict=True)}
    return tuple(x if c is None else c(x) for x, c in zip(value, parts, strict=True))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    """One value as plain text; arrays, maps and tuples as JSON so they stay one cell."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=_json_default)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)

"""Read the generated dashboards the way Grafana does: panels, targets, variables, and the SQL they run.

``expand`` substitutes the ClickHouse plugin's macros and Grafana's template
variables, as the plugin and Grafana do before a query reaches ClickHouse.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobs.grafana.datasources import CLICKHOUSE_PLUGIN, PROMETHEUS_PLUGIN

# Names Grafana itself provides; every other $name must be a dashboard variable.
BUILTIN_PREFIX = "__"
# $var, ${var}, ${var:format}, [[var]]
VARIABLE_REF = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


@dataclass(frozen=True)
class Query:
    dashboard: str  # uid
    where: str  # "panel 3 'Title' target A" or "variable account"
    plugin: str
    text: str  # rawSql or expr


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # rows hold their own


def queries(dashboard: Mapping[str, Any]) -> Iterator[Query]:
    uid = dashboard["uid"]
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            plugin = (target.get("datasource") or panel.get("datasource") or {}).get("type", "")
            text = target.get("rawSql") if plugin == CLICKHOUSE_PLUGIN else target.get("expr")
            where = f"panel {panel.get('id')} {panel.get('title')!r} target {target.get('refId')}"
            yield Query(uid, where, plugin, text or "")
    for var in dashboard.get("templating", {}).get("list", []):
        plugin = (var.get("datasource") or {}).get("type", "")
        query = var.get("query")
        text = query.get("rawSql", "") if isinstance(query, dict) else str(query or "")
        yield Query(uid, f"variable {var['name']}", plugin, text)


def variable_names(dashboard: Mapping[str, Any]) -> set[str]:
    return {var["name"] for var in dashboard.get("templating", {}).get("list", [])}


def referenced_variables(text: str) -> set[str]:
    names = {next(g for g in m.groups() if g) for m in VARIABLE_REF.finditer(text)}
    return {n for n in names if not n.startswith(BUILTIN_PREFIX)}


def sql_string(value: str) -> str:
    """Grafana's ``sqlstring`` format: quoted, quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def expand(sql: str, start: datetime, end: datetime, interval_s: int, variables: Mapping[str, str]) -> str:
    """``sql`` as ClickHouse receives it from the plugin for this time range, interval and variable values.

    Raises ValueError naming any macro or variable left unexpanded.
    """
    frm, to = int(start.timestamp()), int(end.timestamp())
    out = re.sub(r"\$__timeFilter\(([^()]+)\)",
                 lambda m: f"{m[1].strip()} >= toDateTime({frm}) AND {m[1].strip()} <= toDateTime({to})", sql)
    out = re.sub(r"\$__timeInterval\(([^()]+)\)",
                 lambda m: f"toStartOfInterval(toDateTime({m[1].strip()}), INTERVAL {interval_s} second)", out)
    out = out.replace("$__fromTime", f"toDateTime({frm})").replace("$__toTime", f"toDateTime({to})")
    out = out.replace("$__interval_s", str(interval_s))

    def value(name: str, fmt: str | None) -> str:
        if name not in variables:
            raise ValueError(f"no value for variable {name!r}")
        return sql_string(variables[name]) if fmt == "sqlstring" else variables[name]

    out = re.sub(r"\$\{(\w+)(?::(\w+))?\}", lambda m: value(m[1], m[2]), out)
    out = re.sub(r"\$(\w+)", lambda m: value(m[1], None), out)
    if "$" in out:
        raise ValueError(f"unexpanded macro or variable left in: {out}")
    return out


__all__ = ["CLICKHOUSE_PLUGIN", "PROMETHEUS_PLUGIN", "Query", "expand", "panels", "queries",
           "referenced_variables", "variable_names"]

"""Retention: the ClickHouse TTLs of the raw and rollup tables, set from the settings by the worker.

``connect(settings, apply_retention=True)`` (the worker, ``distillwatch migrate``) calls ``apply_ttls``
after migrating. Raw tables (``TableSpec.ttl_column``: their write time) keep ``DW_RAW_TTL_DAYS``,
rollups (``RollupSpec.ttl_column``: event time) ``DW_ROLLUP_TTL_DAYS``; a table is altered only when
its TTL read back from ``system.tables`` differs. docs/operations.md, "Retention".
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from schemas.tables import ROLLUPS, TABLES

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

# engine_full holds "... ORDER BY (...) TTL <expr> SETTINGS ..." when a table has a TTL.
_TTL_CLAUSE = re.compile(r"\sTTL\s(.+?)(?:\sSETTINGS\s|$)", re.DOTALL)


def ttl_expression(column: str, days: int) -> str | None:
    """The TTL wanted for ``column`` kept ``days`` days, spelled as system.tables shows it; None when 0."""
    if days < 0:
        raise ValueError(f"retention days must be >= 0 (0 keeps rows for ever), got {days}")
    return f"{column} + toIntervalDay({days})" if days else None


def wanted_ttls(raw_days: int, rollup_days: int) -> dict[str, str | None]:
    """Table name -> wanted TTL expression (None: no TTL) for every table that has a retention."""
    wanted = {t.name: ttl_expression(t.ttl_column, raw_days) for t in TABLES.values() if t.ttl_column}
    wanted.update({r.name: ttl_expression(r.ttl_column, rollup_days) for r in ROLLUPS.values()})
    return wanted


def current_ttls(client: Client, database: str, tables: list[str]) -> dict[str, str | None]:
    """Table name -> its TTL expression now (None: none), for those of ``tables`` that exist."""
    rows = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String} AND name IN {names:Array(String)}",
        parameters={"db": database, "names": tables},
    ).result_rows
    found = {}
    for name, engine_full in rows:
        match = _TTL_CLAUSE.search(str(engine_full))
        found[str(name)] = match.group(1).strip() if match else None
    return found


def apply_ttls(client: Client, database: str, *, raw_days: int, rollup_days: int) -> list[str]:
    """Bring every retained table's TTL to the settings; returns the ALTER statements it ran.

    Tables missing from ``database`` (not migrated that far) are skipped. Raises ValueError
    for negative days; ClickHouse errors propagate (``connect`` classifies them).
    """
    wanted = wanted_ttls(raw_days, rollup_days)
    current = current_ttls(client, database, list(wanted))
    statements = []
    for table, expression in wanted.items():
        if table not in current or current[table] == expression:
            continue
        action = f"MODIFY TTL {expression}" if expression else "REMOVE TTL"
        statements.append(f"ALTER TABLE `{database}`.`{table}` {action}")
    for statement in statements:
        client.command(statement)
    return statements

"""A Dataquery for the ``grafana-clickhouse-datasource`` plugin (the foundation SDK has none).

The plugin's SQL-editor query model: ``editorType: "sql"``, ``rawSql``, ``queryType``
(the editor's result type) and ``format``, which tells the plugin's backend how
to shape the frame (sqlds: 0 = time series, long rows pivoted to one series per
label, 1 = table).
"""

from __future__ import annotations

import typing
from enum import IntEnum, StrEnum

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from jobs.grafana.datasources import CLICKHOUSE


class Format(IntEnum):
    TIME_SERIES = 0
    TABLE = 1


class QueryType(StrEnum):
    TABLE = "table"
    TIME_SERIES = "timeseries"


class ClickHouseQuery(cogvariants.Dataquery):
    """One target of a panel or a query variable: raw SQL with the plugin's macros."""

    def __init__(self, raw_sql: str, ref_id: str = "A", fmt: Format = Format.TABLE,
                 datasource: DataSourceRef | None = None) -> None:
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.format = fmt
        self.datasource = datasource or CLICKHOUSE.ref

    @property
    def query_type(self) -> QueryType:
        return QueryType.TIME_SERIES if self.format is Format.TIME_SERIES else QueryType.TABLE

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": self.datasource,
            "editorType": "sql",
            "format": int(self.format),
            "queryType": str(self.query_type),
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class ClickHouseQueryBuilder(cogbuilder.Builder[ClickHouseQuery]):
    """Builder in the SDK's style: ``ClickHouseQueryBuilder(sql).ref_id("B").time_series()``."""

    def __init__(self, raw_sql: str) -> None:
        self._internal = ClickHouseQuery(_tidy(raw_sql))

    def build(self) -> ClickHouseQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def time_series(self) -> typing.Self:
        """Long rows (time, label…, value) become one series per label value."""
        self._internal.format = Format.TIME_SERIES
        return self

    def table(self) -> typing.Self:
        self._internal.format = Format.TABLE
        return self


def _tidy(sql: str) -> str:
    # Queries are written as indented triple-quoted strings; store them flush-left so
    # the JSON and Grafana's editor show them as written.
    lines = [line.rstrip() for line in sql.strip("\n").splitlines()]
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[indent:] for line in lines).strip()

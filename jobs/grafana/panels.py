"""Panel and dashboard builders shared by the four dashboards: datasource, sizes, units, links.

Sizes follow Grafana's 24-column grid; ``with_panel`` flows panels left to right
and wraps at 24, so a row is a run of widths summing to 24.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from grafana_foundation_sdk.builders import barchart, dashboard, heatmap, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    DashboardCursorSync,
    DashboardLinkType,
    DynamicConfigValue,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode

from jobs.grafana.clickhouse_query import ClickHouseQueryBuilder
from jobs.grafana.datasources import CLICKHOUSE
from jobs.grafana.links import TAG, DashboardId, account_link, cluster_link

# Rollups hold whole minutes: a smaller $__interval would divide one minute's sum by a fraction of it.
MIN_INTERVAL = "1m"

# Grafana unit ids.
RATE = "reqps"  # calls per second
PER_SECOND = "short"  # tokens/s: a plain number, the title says per second
COUNT = "short"
SECONDS = "s"
SHARE = "percentunit"  # 0..1 shown as a percentage
SCORE = "none"  # 0..100 score points

Sized = TypeVar("Sized", timeseries.Panel, stat.Panel, table.Panel, heatmap.Panel, barchart.Panel)


def _sized(panel: Sized, title: str, description: str, w: int, h: int) -> Sized:
    if not description:
        raise ValueError(f"panel {title!r}: every panel needs a description")
    return panel.title(title).description(description).span(w).height(h)


def ch_timeseries(title: str, description: str, sqls: str | Iterable[str], unit: str, *, w: int = 12, h: int = 8,
                  stacked: bool = False, bars: bool = False, units: dict[str, str] | None = None,
                  series_by: str | None = None) -> timeseries.Panel:
    """Time series from ClickHouse; each SQL is a target returning (time, [series label,] value…) rows.

    ``series_by`` names the label column of the first target's long rows: the plugin
    pivots them to one series per value, which the legend then shows by that value alone.
    """
    panel = _sized(timeseries.Panel(), title, description, w, h)
    if series_by:
        panel.override_by_query("A", [DynamicConfigValue(id_val="displayName",
                                                         value=f"${{__field.labels.{series_by}}}")])
    panel.datasource(CLICKHOUSE.ref).unit(unit).interval(MIN_INTERVAL).fill_opacity(30 if stacked else 10)
    for i, sql in enumerate([sqls] if isinstance(sqls, str) else sqls):
        panel.with_target(ClickHouseQueryBuilder(sql).ref_id(chr(ord("A") + i)).time_series())
    return _series_style(panel, stacked=stacked, bars=bars, units=units)


def _series_style(panel: timeseries.Panel, *, stacked: bool, bars: bool,
                  units: dict[str, str] | None) -> timeseries.Panel:
    if stacked:
        panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if bars:
        panel.draw_style(common.GraphDrawStyle.BARS)
    for column, unit in (units or {}).items():
        panel.override_by_name(column, [DynamicConfigValue(id_val="unit", value=unit)])
    return (panel.legend(common_builders.VizLegendOptions().show_legend(True)
                         .display_mode(common.LegendDisplayMode.LIST).placement(common.LegendPlacement.BOTTOM))
            .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                     .sort(common.SortOrder.DESCENDING)))


def ch_stat(title: str, description: str, sql: str, unit: str, *, w: int = 4, h: int = 4) -> stat.Panel:
    """One number from ClickHouse (a single-row query)."""
    panel = _sized(stat.Panel(), title, description, w, h)
    return (panel.datasource(CLICKHOUSE.ref).unit(unit).interval(MIN_INTERVAL)
            .with_target(ClickHouseQueryBuilder(sql).table())
            .graph_mode(common.BigValueGraphMode.NONE)
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))


def ch_table(title: str, description: str, sql: str, *, w: int = 12, h: int = 8, accounts: Iterable[str] = (),
             clusters: Iterable[str] = (), units: dict[str, str] | None = None) -> table.Panel:
    """Table from ClickHouse; columns named in ``accounts``/``clusters`` link to the drill-downs."""
    panel = _sized(table.Panel(), title, description, w, h)
    panel.datasource(CLICKHOUSE.ref).with_target(ClickHouseQueryBuilder(sql).table()).filterable(True)
    for column in accounts:
        panel.override_by_name(column, account_link())
    for column in clusters:
        panel.override_by_name(column, cluster_link())
    for column, unit in (units or {}).items():
        panel.override_by_name(column, [DynamicConfigValue(id_val="unit", value=unit)])
    return panel


def ch_heatmap(title: str, description: str, sql: str, *, w: int = 12, h: int = 8) -> heatmap.Panel:
    """Heatmap of pre-bucketed rows: time, then one column per bucket named by its lower bound."""
    panel = _sized(heatmap.Panel(), title, description, w, h)
    return (panel.datasource(CLICKHOUSE.ref).interval(MIN_INTERVAL)
            .with_target(ClickHouseQueryBuilder(sql).table())
            .calculate(False)
            .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.GE))
            .y_axis(heatmap.YAxisConfig().unit(SCORE).decimals(0))
            .cell_values(heatmap.CellValues().unit(COUNT))
            .color(heatmap.HeatmapColorOptions().mode(HeatmapColorMode.SCHEME).scheme("Oranges").steps(64)
                   .exponent(0.5).fill("dark-orange").reverse(False)))


def ch_barchart(title: str, description: str, sql: str, unit: str, *, x_field: str, w: int = 12,
                h: int = 8, stacked: bool = False) -> barchart.Panel:
    """Bar chart of a table query: one bar group per ``x_field`` value (one stacked bar when ``stacked``)."""
    panel = _sized(barchart.Panel(), title, description, w, h)
    return (panel.datasource(CLICKHOUSE.ref).unit(unit).with_target(ClickHouseQueryBuilder(sql).table())
            .x_field(x_field).orientation(common.VizOrientation.HORIZONTAL)
            .show_value(common.VisibilityMode.AUTO)
            .stacking(common.StackingMode.NORMAL if stacked else common.StackingMode.NONE))


def ch_variable(name: str, label: str, description: str, sql: str) -> dashboard.QueryVariable:
    """A single-value variable whose choices ``sql`` lists (in its order, re-read with the time range);
    any other value may be typed in."""
    query = ClickHouseQueryBuilder(sql).build()
    return (dashboard.QueryVariable(name).label(label).description(description)
            .datasource(query.datasource).query(query.to_json())
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.DISABLED)
            .allow_custom_value(True).multi(False).include_all(False))


def base_dashboard(ident: DashboardId, description: str, *, refresh: str = "1m",
                   time_from: str = "now-6h") -> dashboard.Dashboard:
    """A dashboard with the shared settings: uid, tag, UTC, refresh, links to its siblings."""
    siblings = (dashboard.DashboardLink("distillwatch").type(DashboardLinkType.DASHBOARDS).tags([TAG])
                .as_dropdown(False).include_vars(False).keep_time(True).icon("external link")
                .tooltip("the other distillwatch dashboards").target_blank(False))
    return (dashboard.Dashboard(ident.title).uid(ident.uid).description(description).tags([TAG])
            .timezone("utc").refresh(refresh).time(time_from, "now").editable()
            .tooltip(DashboardCursorSync.CROSSHAIR).link(siblings).annotations([]).variables([]))


def finish(builder: dashboard.Dashboard) -> Dashboard:
    """Build and number the panels 1..n in layout order (Grafana needs ids unique within a dashboard)."""
    model = builder.build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return model

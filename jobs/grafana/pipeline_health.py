"""Dashboard 4, "Pipeline health": the worker's own Prometheus metrics (pipeline/metrics.py).

Every expression names metrics as ``metric("…")`` so the prefix comes from
pipeline.metrics; tests/jobs/grafana checks each name against the worker's registry
and the expressions with ``promtool``.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    DynamicConfigValue,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.dashboard import Threshold as ThresholdStep

from jobs.grafana.datasources import PROMETHEUS
from jobs.grafana.links import PIPELINE
from jobs.grafana.panels import COUNT, SECONDS, SHARE, base_dashboard, finish
from pipeline.metrics import PREFIX

INSTANCE_VAR = "instance"
# Every selector carries the instance filter, so the dashboard shows one worker or all.
SEL = f'{{instance=~"${INSTANCE_VAR}"}}'
RATE = "$__rate_interval"
EVENTS_PER_S = "short"  # per second; the titles say so


def metric(name: str) -> str:
    """A distillwatch metric name with its prefix and the instance selector."""
    return f"{PREFIX}{name}{SEL}"


def _targets(panel: timeseries.Panel | stat.Panel, exprs: Sequence[tuple[str, str]]) -> None:
    for i, (expr, legend) in enumerate(exprs):
        panel.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).range()
                          .ref_id(chr(ord("A") + i)))


def prom_timeseries(title: str, description: str, exprs: Sequence[tuple[str, str]], unit: str, *,
                    w: int = 12, h: int = 8, stacked: bool = False,
                    units: dict[str, str] | None = None) -> timeseries.Panel:
    """Time series of PromQL ``(expression, legend)`` pairs; ``units`` overrides the unit per legend."""
    panel = (timeseries.Panel().title(title).description(description).span(w).height(h)
             .datasource(PROMETHEUS.ref).unit(unit).fill_opacity(30 if stacked else 10)
             .legend(common_builders.VizLegendOptions().show_legend(True)
                     .display_mode(common.LegendDisplayMode.LIST).placement(common.LegendPlacement.BOTTOM))
             .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                      .sort(common.SortOrder.DESCENDING)))
    if stacked:
        panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    for legend, unit_id in (units or {}).items():
        panel.override_by_name(legend, [DynamicConfigValue(id_val="unit", value=unit_id)])
    _targets(panel, exprs)
    return panel


def prom_stat(title: str, description: str, expr: str, unit: str, *,
              thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),)) -> stat.Panel:
    """One current value; ``thresholds`` are (from, colour) steps, the first from None."""
    panel = (stat.Panel().title(title).description(description).span(4).height(4).datasource(PROMETHEUS.ref)
             .unit(unit).graph_mode(common.BigValueGraphMode.AREA).color_mode(common.BigValueColorMode.BACKGROUND)
             .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .thresholds(dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE)
                         .steps([ThresholdStep(value=v, color=c) for v, c in thresholds])))
    _targets(panel, [(expr, title)])
    return panel


def _quantiles(histogram: str) -> list[tuple[str, str]]:
    return [(f"histogram_quantile({q}, sum by (le) (rate({metric(histogram + '_bucket')}[{RATE}])))", f"p{p}")
            for q, p in ((0.5, "50"), (0.9, "90"), (0.99, "99"))]


def _instance_variable() -> dashboard.QueryVariable:
    return (dashboard.QueryVariable(INSTANCE_VAR).label("Worker")
            .description("Worker instances scraped by Prometheus (all by default).")
            .datasource(PROMETHEUS.ref).query(f"label_values({PREFIX}build_info, instance)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*"))


def build() -> Dashboard:
    d = base_dashboard(PIPELINE, "The detect worker's own health from its Prometheus metrics: input, lag, "
                                 "batches, ClickHouse, checkpoints, watermarks, dead letters and linking. "
                                 "Alerting rules: infra/prometheus/rules.yml.", refresh="30s", time_from="now-3h")
    d.with_variable(_instance_variable())

    d.with_panel(prom_stat("Events/s", "Decoded events per second, every result.",
                           f"sum(rate({metric('events_total')}[{RATE}]))", EVENTS_PER_S))
    d.with_panel(prom_stat("Consumer lag", "Messages waiting in all assigned partitions.",
                           f"sum({metric('consumer_lag_messages')})", COUNT,
                           thresholds=((None, "green"), (10_000, "orange"), (100_000, "red"))))
    d.with_panel(prom_stat("ClickHouse available", "1 while every worker's inserts succeed, 0 while one holds "
                           "its batch because ClickHouse fails.", f"min({metric('clickhouse_available')})", "bool",
                           thresholds=((None, "red"), (1, "green"))))
    d.with_panel(prom_stat("Checkpoint age", "Seconds since the oldest worker's last successful checkpoint.",
                           f"max({metric('checkpoint_age_seconds')})", SECONDS,
                           thresholds=((None, "green"), (300, "orange"), (900, "red"))))
    d.with_panel(prom_stat("Partitions stalled", "Partitions with messages waiting and no progress.",
                           f"sum({metric('partition_stalled')})", COUNT,
                           thresholds=((None, "green"), (1, "red"))))
    d.with_panel(prom_stat("Linking up", "1 while every worker's linking process runs and its results are applied.",
                           f"min({metric('linking_up')})", "bool", thresholds=((None, "red"), (1, "green"))))

    d.with_panel(prom_timeseries("Events in, valid and rejected (per second)", "Kafka messages read and decoded "
                                 "events by result (valid, late, rejected, duplicate).", [
        (f"sum(rate({metric('messages_total')}[{RATE}]))", "messages in"),
        (f"sum by (result) (rate({metric('events_total')}[{RATE}]))", "{{result}}"),
    ], EVENTS_PER_S))
    d.with_panel(prom_timeseries("Rejected events by reason (per second)", "Events dead-lettered, by the "
                                 "reason decoding refused them (docs/operations.md).", [
        (f"sum by (reason) (rate({metric('rejected_events_total')}[{RATE}]))", "{{reason}}"),
    ], EVENTS_PER_S, stacked=True))

    d.with_panel(prom_timeseries("Consumer lag per partition", "Messages waiting in each partition of the events "
                                 "topic (high watermark minus position).", [
        (f"max by (partition) ({metric('consumer_lag_messages')})", "partition {{partition}}"),
    ], COUNT))
    d.with_panel(prom_timeseries("Batch duration percentiles", "Time to handle one batch (decode, detect, "
                                 "ClickHouse with retries, linking publish, checkpoint when due).",
                                 _quantiles("batch_duration_seconds"), SECONDS))

    d.with_panel(prom_timeseries("ClickHouse insert latency", "Duration of one batch's successful inserts, "
                                 "every table.", _quantiles("clickhouse_insert_duration_seconds"), SECONDS))
    d.with_panel(prom_timeseries("ClickHouse retries and failed inserts (per second)", "Batch writes retried "
                                 "while ClickHouse was unavailable, and failed INSERT statements by table.", [
        (f"sum(rate({metric('clickhouse_retries_total')}[{RATE}]))", "retries"),
        (f"sum by (table) (rate({metric('clickhouse_insert_failures_total')}[{RATE}]))", "failed: {{table}}"),
    ], EVENTS_PER_S))

    d.with_panel(prom_timeseries("Checkpoint age and failures", "Seconds since each worker's last successful "
                                 "checkpoint, beside the configured interval; failed checkpoint writes per second.", [
        (f"max by (instance) ({metric('checkpoint_age_seconds')})", "age {{instance}}"),
        (f"max({metric('checkpoint_interval_seconds')})", "interval"),
        (f"sum(rate({metric('checkpoint_failures_total')}[{RATE}]))", "failures/s"),
    ], SECONDS, units={"failures/s": EVENTS_PER_S}))
    d.with_panel(prom_timeseries("Watermark delay per partition", "Wall clock minus each partition's event-time "
                                 "watermark: how far behind real time frames close.", [
        (f"max by (partition) ({metric('watermark_lag_seconds')})", "partition {{partition}}"),
    ], SECONDS))

    d.with_panel(prom_timeseries("Dead letters (per second)", "Messages produced to the dead-letter topic.", [
        (f"sum(rate({metric('dead_letters_total')}[{RATE}]))", "dead letters"),
    ], EVENTS_PER_S))
    d.with_panel(prom_timeseries("Linking stage backlog", "Messages waiting for each linking stage (features: "
                                 "observations topic, clusters: edges topic).", [
        (f"sum by (stage) ({metric('linking_backlog_messages')})", "{{stage}}"),
    ], COUNT))

    d.with_panel(prom_timeseries("Linking stage utilisation", "Share of wall time each linking stage spends "
                                 "working; near 100% it cannot keep up.", [
        (f"sum by (stage) (rate({metric('linking_busy_seconds_total')}[{RATE}]))", "{{stage}}"),
    ], SHARE))
    d.with_panel(prom_timeseries("Alerts raised (per second)", "Alerts by rule and severity (account rules and "
                                 "cluster alerts).", [
        (f"sum by (rule, severity) (rate({metric('alerts_total')}[{RATE}]))", "{{rule}} / {{severity}}"),
    ], EVENTS_PER_S, stacked=True))
    return finish(d)

"""Dashboard 3, "Campaigns" (variable ``cluster``): clusters of linked accounts and what they harvested.

Reads the current clusters (``clusters FINAL … WHERE active = 1``), their version
history (the clusters table without FINAL), account_scores_1h and signatures_1m.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models.dashboard import Dashboard, VariableRefresh, VariableSort

from jobs.grafana.clickhouse_query import ClickHouseQueryBuilder
from jobs.grafana.links import CAMPAIGNS, CLUSTER_VAR
from jobs.grafana.panels import (
    COUNT,
    PER_SECOND,
    SCORE,
    base_dashboard,
    ch_barchart,
    ch_table,
    ch_timeseries,
    finish,
)
from jobs.grafana.sql_parts import HOURS_IN_RANGE, cluster_members_sql, sql_string_var

CLUSTER_SQL = sql_string_var(CLUSTER_VAR)
THIS_CLUSTER = f"cluster_id = {CLUSTER_SQL}"
MEMBERS = f"(SELECT arrayJoin(account_ids) FROM clusters FINAL WHERE {THIS_CLUSTER})"

CLUSTER_CHOICES_SQL = """
    SELECT cluster_id FROM clusters FINAL WHERE active = 1 ORDER BY score DESC, cluster_id
"""

ACTIVE_CLUSTERS_SQL = """
    SELECT cluster_id, size, round(score, 1) AS cluster_score,
           arrayStringConcat(arrayMap((name, points) -> concat(name, ' ', toString(round(points, 1))),
                                      factor_names, factor_points), ', ') AS factors,
           arrayStringConcat(arraySlice(shared_features, 1, 6), ', ') AS shared_features,
           arrayStringConcat(arraySlice(account_ids, 1, 5), ', ') AS first_members,
           first_seen_ts AS first_seen, updated_ts AS updated
    FROM clusters FINAL
    WHERE active = 1
    ORDER BY cluster_score DESC, cluster_id
    LIMIT 100
"""

HARVEST_PER_CAMPAIGN_SQL = f"""
    SELECT c.cluster_id AS cluster_id, sum(a.output_tokens) AS output_tokens,
           sum(a.reasoning_tokens) AS reasoning_tokens
    FROM (
        SELECT cluster_id, member FROM clusters FINAL ARRAY JOIN account_ids AS member WHERE active = 1
    ) AS c
    INNER JOIN (
        SELECT account_id, sum(completion_tokens) AS output_tokens, sum(reasoning_tokens) AS reasoning_tokens
        FROM account_scores_1h
        WHERE {HOURS_IN_RANGE}
        GROUP BY account_id
    ) AS a ON a.account_id = c.member
    GROUP BY cluster_id
    ORDER BY output_tokens DESC, cluster_id
    LIMIT 20
"""


def _cluster_variable() -> dashboard.QueryVariable:
    query = ClickHouseQueryBuilder(CLUSTER_CHOICES_SQL).build()
    return (dashboard.QueryVariable(CLUSTER_VAR).label("Campaign")
            .description("Current clusters, highest score first.")
            .datasource(query.datasource).query(query.to_json())
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.DISABLED)
            .allow_custom_value(True).multi(False).include_all(False))


def build() -> Dashboard:
    d = base_dashboard(CAMPAIGNS, "Campaigns: clusters of accounts linked by shared payment, networks, keys or "
                                  "templates (docs/linking.md). Pick one with the Campaign variable or a click.")
    d.with_variable(_cluster_variable())

    d.with_panel(ch_table("Active clusters", "Every current cluster (clusters FINAL, active = 1): size, score and "
                          "its factors, shared features, the first members. Click a cluster to select it.",
                          ACTIVE_CLUSTERS_SQL, w=24, h=8, clusters=["cluster_id"], units={"cluster_score": SCORE}))

    d.with_panel(ch_table("Members and their scores", "Members of the selected campaign with their highest score, "
                          "calls and output tokens in the range (clusters FINAL, account_scores_1h). Click an "
                          "account to drill down.", cluster_members_sql(THIS_CLUSTER), w=12, h=9,
                          accounts=["account_id"], clusters=["cluster_id"],
                          units={"max_score": SCORE, "output_tokens": COUNT}))
    d.with_panel(ch_timeseries("Cluster score history", "The selected campaign's score and size at each update "
                               "(points; the clusters table's versions, which merges may thin out) beside its "
                               "members' highest and mean score per interval (signatures_1m).", [f"""
        SELECT updated_ts AS time, score AS `cluster score`, size AS `members`
        FROM clusters
        WHERE {THIS_CLUSTER} AND $__timeFilter(updated_ts)
        ORDER BY time
    """, f"""
        SELECT $__timeInterval(window_start) AS time, max(score) AS `highest member score`,
               avg(score) AS `mean member score`
        FROM signatures_1m
        WHERE account_id IN {MEMBERS} AND $__timeFilter(window_start)
        GROUP BY time
        ORDER BY time
    """], SCORE, w=12, h=9, units={"members": COUNT}))

    d.with_panel(ch_barchart("Output tokens harvested per campaign", "Completion and reasoning tokens received by "
                             "the members of each current cluster in the range, largest first (account_scores_1h).",
                             HARVEST_PER_CAMPAIGN_SQL, COUNT, x_field="cluster_id", w=12, h=9))
    d.with_panel(ch_timeseries("Harvest rate of the selected campaign", "Output and reasoning tokens per second "
                               "received by the selected campaign's members (signatures_1m).", f"""
        SELECT $__timeInterval(window_start) AS time,
               sum(completion_tokens) / $__interval_s AS `output tokens/s`,
               sum(reasoning_tokens) / $__interval_s AS `reasoning tokens/s`
        FROM signatures_1m
        WHERE account_id IN {MEMBERS} AND $__timeFilter(window_start)
        GROUP BY time
        ORDER BY time
    """, PER_SECOND, w=12, h=9))
    return finish(d)

"""Dashboard 3, "Campaigns" (variable ``cluster``): clusters of linked accounts and what they harvested.

Reads the current clusters (``clusters FINAL … WHERE active = 1``), their version
history (the clusters table without FINAL, and ``merged_into`` for the clusters merged
into one), account_scores_1h and signatures_1m.
"""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from jobs.grafana.links import CAMPAIGNS, CLUSTER_VAR
from jobs.grafana.panels import (
    COUNT,
    PER_SECOND,
    SCORE,
    base_dashboard,
    ch_barchart,
    ch_table,
    ch_timeseries,
    ch_variable,
    finish,
)
from jobs.grafana.sql_parts import (
    BELOW_CAMPAIGN,
    HOURS_IN_RANGE,
    campaign_min_score,
    cluster_members_sql,
    cluster_status,
    is_campaign,
    sql_string_var,
)
from jobs.ranking import OUTPUT_TOKENS, OUTPUT_TOKENS_SUM

CLUSTER_SQL = sql_string_var(CLUSTER_VAR)
THIS_CLUSTER = f"cluster_id = {CLUSTER_SQL}"
MEMBERS = f"(SELECT arrayJoin(account_ids) FROM clusters FINAL WHERE {THIS_CLUSTER})"
# Clusters retired by merging into the selected one (migration m0007 added merged_into).
MERGED_INTO_THIS = f"(SELECT cluster_id FROM clusters WHERE merged_into = {CLUSTER_SQL})"

CLUSTER_CHOICES_SQL = """
    SELECT cluster_id FROM clusters FINAL WHERE active = 1 ORDER BY score DESC, cluster_id
"""

ACTIVE_CLUSTERS_SQL = f"""
    SELECT cluster_id, {cluster_status()} AS cluster_status, size, round(score, 1) AS cluster_score,
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

# Completion and reasoning stacked: each bar's length is the campaign's output tokens.
HARVEST_PER_CAMPAIGN_SQL = f"""
    SELECT c.cluster_id AS cluster_id, sum(a.completion) AS completion_tokens, sum(a.reasoning) AS reasoning_tokens
    FROM (
        SELECT cluster_id, member FROM clusters FINAL ARRAY JOIN account_ids AS member
        WHERE active = 1 AND {is_campaign()}
    ) AS c
    INNER JOIN (
        -- aliases differ from the columns: ClickHouse would resolve reasoning_tokens to an alias of that name
        SELECT account_id, sum(completion_tokens) AS completion, sum(reasoning_tokens) AS reasoning
        FROM account_scores_1h
        WHERE {HOURS_IN_RANGE}
        GROUP BY account_id
    ) AS a ON a.account_id = c.member
    GROUP BY cluster_id
    ORDER BY {OUTPUT_TOKENS} DESC, cluster_id
    LIMIT 20
"""


def build() -> Dashboard:
    d = base_dashboard(CAMPAIGNS, "Campaigns: clusters of accounts linked by shared payment, networks, keys or "
                                  "templates (docs/linking.md). Pick one with the Campaign variable or a click.")
    d.with_variable(ch_variable(CLUSTER_VAR, "Campaign", "Current clusters, highest score first: campaigns and "
                                "linked accounts below the campaign threshold.", CLUSTER_CHOICES_SQL))

    d.with_panel(ch_table("Active clusters", "Every current cluster (clusters FINAL, active = 1): cluster_status "
                          f"('campaign' at or above the cluster_extraction rule's score threshold, "
                          f"{campaign_min_score():g}, else '{BELOW_CAMPAIGN}'), size, score and its factors, shared "
                          "features, the first members. Click a cluster to select it.",
                          ACTIVE_CLUSTERS_SQL, w=24, h=8, clusters=["cluster_id"], units={"cluster_score": SCORE}))

    d.with_panel(ch_table("Members and their scores", "Members of the selected cluster with their highest score, "
                          "calls and output tokens (completion + reasoning) in the range, and the cluster's status "
                          "(clusters FINAL, account_scores_1h). Click an account to drill down.",
                          cluster_members_sql(THIS_CLUSTER), w=12, h=9,
                          accounts=["account_id"], clusters=["cluster_id"],
                          units={"max_score": SCORE, "output_tokens": COUNT}))
    d.with_panel(ch_timeseries("Cluster score history", "The selected cluster's score and size at each stored "
                               "version (points; the clusters table read without FINAL, so every version still "
                               "on disk shows), beside its members' highest and mean score per interval "
                               "(signatures_1m). clusters is a ReplacingMergeTree: when ClickHouse merges its "
                               "parts it keeps only the newest version of a cluster, so merged-away versions are "
                               "gone and an older cluster may show a single point. Clusters that merged into "
                               "it (their retirement rows name it in merged_into) show as their own points, at "
                               "their last score.", [f"""
        SELECT updated_ts AS time,
               if({THIS_CLUSTER}, score, NULL) AS `cluster score`,
               if({THIS_CLUSTER}, size, NULL) AS `members`,
               if({THIS_CLUSTER}, NULL, score) AS `score of a cluster merged into it`
        FROM clusters
        WHERE ({THIS_CLUSTER} OR cluster_id IN {MERGED_INTO_THIS}) AND $__timeFilter(updated_ts)
        ORDER BY time
    """, f"""
        SELECT $__timeInterval(window_start) AS time, max(score) AS `highest member score`,
               avg(score) AS `mean member score`
        FROM signatures_1m
        WHERE account_id IN {MEMBERS} AND $__timeFilter(window_start)
        GROUP BY time
        ORDER BY time
    """], SCORE, w=12, h=9, units={"members": COUNT}))

    d.with_panel(ch_barchart("Output tokens harvested per campaign", "Output tokens received by the members of "
                             "each current campaign in the range, completion and reasoning stacked (the bar is "
                             "their sum), largest first (clusters FINAL, account_scores_1h). Linked accounts below "
                             "the campaign threshold are left out.",
                             HARVEST_PER_CAMPAIGN_SQL, COUNT, x_field="cluster_id", w=12, h=9, stacked=True))
    d.with_panel(ch_timeseries("Harvest rate of the selected campaign", "Output tokens per second (completion + "
                               "reasoning) received by the selected cluster's members, and the completion and "
                               "reasoning tokens apart (signatures_1m).", f"""
        SELECT $__timeInterval(window_start) AS time,
               {OUTPUT_TOKENS_SUM} / $__interval_s AS `output tokens/s`,
               sum(completion_tokens) / $__interval_s AS `completion tokens/s`,
               sum(reasoning_tokens) / $__interval_s AS `reasoning tokens/s`
        FROM signatures_1m
        WHERE account_id IN {MEMBERS} AND $__timeFilter(window_start)
        GROUP BY time
        ORDER BY time
    """, PER_SECOND, w=12, h=9))
    return finish(d)

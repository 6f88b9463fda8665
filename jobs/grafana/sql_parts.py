"""SQL fragments shared by several dashboards (the plugin's macros left for Grafana to expand)."""

from __future__ import annotations

from functools import cache

from jobs.ranking import OUTPUT_TOKENS_SUM
from pipeline.alerting.rules import load_rules, lower_bound
from pipeline.linking.cluster_outputs import RULE_CLUSTER

# Hourly rollups (account_scores_1h, account_entities_1h) hold whole hours: take every hour the range touches.
HOURS_IN_RANGE = "hour >= toStartOfHour($__fromTime) AND hour <= $__toTime"

# Seconds in the dashboard's range, for "per second over the range" figures.
RANGE_SECONDS = "greatest(1, toUInt32($__toTime) - toUInt32($__fromTime))"


# How the dashboards call current clusters whose score is below the campaign threshold.
BELOW_CAMPAIGN = "linked accounts below the campaign threshold"
CAMPAIGN = "campaign"


@cache
def campaign_min_score() -> float:
    """The cluster score at which a cluster is a campaign: the ``score >= N`` of the packaged cluster rule.

    Read from pipeline/alerting/rules.v1.yaml (``cluster_extraction``), so a dashboard calls a
    campaign what pages as one; rebuild the dashboards after changing the rule.
    """
    return lower_bound(load_rules()[RULE_CLUSTER].rule, "score")


def is_campaign(score: str = "score") -> str:
    """SQL: the cluster with this score column is a campaign (at or above the cluster rule's threshold)."""
    return f"{score} >= {campaign_min_score():g}"


def cluster_status(score: str = "score") -> str:
    """SQL: 'campaign' or 'linked accounts below the campaign threshold', for a status column."""
    return f"if({is_campaign(score)}, '{CAMPAIGN}', '{BELOW_CAMPAIGN}')"


def sql_string_var(name: str) -> str:
    """A single-value variable as a quoted, escaped SQL string literal (Grafana's ``sqlstring`` format)."""
    return f"${{{name}:sqlstring}}"


def cluster_members_sql(cluster_filter: str, *, exclude_account: str | None = None) -> str:
    """Members of the current clusters matching ``cluster_filter``, with their score and volume in the range.

    One row per (cluster, member), with ``cluster_status`` (campaign or below the campaign
    threshold); ``exclude_account`` (an SQL expression) drops that account from the rows,
    for "the other members" of an account's clusters.
    """
    exclude = f" AND member != {exclude_account}" if exclude_account else ""
    return f"""
        SELECT m.member AS account_id, m.cluster_id AS cluster_id, m.status AS cluster_status,
               s.max_score AS max_score, s.calls AS calls, s.output_tokens AS output_tokens,
               s.last_minute AS last_active
        FROM (
            SELECT cluster_id, member, {cluster_status()} AS status
            FROM clusters FINAL
            ARRAY JOIN account_ids AS member
            WHERE active = 1 AND {cluster_filter}{exclude}
        ) AS m
        LEFT JOIN (
            SELECT account_id, max(max_score) AS max_score, sum(calls) AS calls,
                   {OUTPUT_TOKENS_SUM} AS output_tokens, max(last_minute) AS last_minute
            FROM account_scores_1h
            WHERE {HOURS_IN_RANGE}
              AND account_id IN (SELECT arrayJoin(account_ids) FROM clusters FINAL
                                 WHERE active = 1 AND {cluster_filter})
            GROUP BY account_id
        ) AS s ON s.account_id = m.member
        ORDER BY max_score DESC, account_id
    """

"""SQL fragments shared by several dashboards (the plugin's macros left for Grafana to expand)."""

from __future__ import annotations

# Hourly rollups (account_scores_1h, account_entities_1h) hold whole hours: take every hour the range touches.
HOURS_IN_RANGE = "hour >= toStartOfHour($__fromTime) AND hour <= $__toTime"

# Seconds in the dashboard's range, for "per second over the range" figures.
RANGE_SECONDS = "greatest(1, toUInt32($__toTime) - toUInt32($__fromTime))"


def sql_string_var(name: str) -> str:
    """A single-value variable as a quoted, escaped SQL string literal (Grafana's ``sqlstring`` format)."""
    return f"${{{name}:sqlstring}}"


def cluster_members_sql(cluster_filter: str, *, exclude_account: str | None = None) -> str:
    """Members of the current clusters matching ``cluster_filter``, with their score and volume in the range.

    One row per (cluster, member); ``exclude_account`` (an SQL expression) drops that
    account from the rows, for "the other members" of an account's clusters.
    """
    exclude = f" AND member != {exclude_account}" if exclude_account else ""
    return f"""
        SELECT m.member AS account_id, m.cluster_id AS cluster_id, s.max_score AS max_score, s.calls AS calls,
               s.output_tokens AS output_tokens, s.last_minute AS last_active
        FROM (
            SELECT cluster_id, member
            FROM clusters FINAL
            ARRAY JOIN account_ids AS member
            WHERE active = 1 AND {cluster_filter}{exclude}
        ) AS m
        LEFT JOIN (
            SELECT account_id, max(max_score) AS max_score, sum(calls) AS calls,
                   sum(completion_tokens) AS output_tokens, max(last_minute) AS last_minute
            FROM account_scores_1h
            WHERE {HOURS_IN_RANGE}
              AND account_id IN (SELECT arrayJoin(account_ids) FROM clusters FINAL
                                 WHERE active = 1 AND {cluster_filter})
            GROUP BY account_id
        ) AS s ON s.account_id = m.member
        ORDER BY max_score DESC, account_id
    """

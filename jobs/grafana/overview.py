"""Dashboard 1, "Extraction overview": the on-call's first screen.

Every panel reads a rollup (traffic_1m, alerts_1m, scores_1m, account_scores_1h),
signatures_1m (one row per account-minute) or the current clusters, never api_calls.
"""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from jobs.grafana.links import OVERVIEW
from jobs.grafana.panels import (
    COUNT,
    PER_SECOND,
    RATE,
    SCORE,
    SHARE,
    base_dashboard,
    ch_heatmap,
    ch_stat,
    ch_table,
    ch_timeseries,
    finish,
)
from jobs.grafana.sql_parts import (
    HOURS_IN_RANGE,
    RANGE_SECONDS,
    campaign_min_score,
    is_campaign,
)
from jobs.ranking import OUTPUT_TOKENS_SUM, TOP_ACCOUNTS, TOP_ACCOUNTS_ORDER, top_accounts_cte

# scores_1m.score_band: the lower bound of each 10-point band (90 holds 90-100).
SCORE_BANDS = tuple(range(0, 100, 10))

TOP_ACCOUNTS_SQL = f"""
    WITH {top_accounts_cte("account_scores_1h", HOURS_IN_RANGE,
                           "sum(reasoning_calls) / greatest(sum(calls), 1) AS reasoning_share, "
                           "max(last_minute) AS last_seen")}
    SELECT s.account_id AS account_id, s.peak_score AS max_score, t.top_signals AS top_signals,
           s.call_count AS calls, s.output_tokens AS output_tokens, s.reasoning_share AS reasoning_share,
           s.last_seen AS last_active
    FROM top AS s
    LEFT JOIN (
        -- the three signals that contributed the most points over the range
        SELECT account_id,
               arrayStringConcat(arraySlice(arrayMap(x -> x.2, arrayReverseSort(groupArray((points, signal)))), 1, 3),
                                 ', ') AS top_signals
        FROM (
            SELECT account_id, signal, sum(point) AS points
            FROM signatures_1m
            ARRAY JOIN signal_names AS signal, signal_points AS point
            -- only the top accounts: signatures_1m is ordered by account, so this reads their key ranges
            WHERE account_id IN (SELECT account_id FROM top) AND $__timeFilter(window_start) AND point > 0
            GROUP BY account_id, signal
        )
        GROUP BY account_id
    ) AS t ON t.account_id = s.account_id
    ORDER BY {TOP_ACCOUNTS_ORDER}
"""

ACTIVE_CAMPAIGNS_SQL = f"""
    SELECT cluster_id, size, round(score, 1) AS cluster_score,
           arrayStringConcat(arraySlice(shared_features, 1, 4), ', ') AS shared,
           first_seen_ts AS first_seen, updated_ts AS updated
    FROM clusters FINAL
    WHERE active = 1 AND updated_ts >= $__fromTime AND {is_campaign()}
    ORDER BY cluster_score DESC, cluster_id
    LIMIT 20
"""


def _band_columns() -> str:
    return ",\n               ".join(f"sumIf(frames, score_band = {band}) AS `{band}`" for band in SCORE_BANDS)


def build() -> Dashboard:
    d = base_dashboard(OVERVIEW, "Live extraction picture: traffic, alerts, the riskiest accounts and campaigns. "
                                 "Click an account or a cluster to drill down.")
    d.with_panel(ch_stat("Calls/s", "Mean API calls per second over the range (traffic_1m).", f"""
        SELECT sum(calls) / {RANGE_SECONDS} AS calls_per_s FROM traffic_1m WHERE $__timeFilter(minute)
    """, RATE))
    d.with_panel(ch_stat("Output tokens/s", "Mean output tokens (completion + reasoning) per second over the "
                         "range (traffic_1m).", f"""
        SELECT {OUTPUT_TOKENS_SUM} / {RANGE_SECONDS} AS output_tokens_per_s
        FROM traffic_1m WHERE $__timeFilter(minute)
    """, PER_SECOND))
    d.with_panel(ch_stat("Active accounts", "Distinct accounts that called the API in the range (traffic_1m).", """
        SELECT uniqMerge(accounts) AS active_accounts FROM traffic_1m WHERE $__timeFilter(minute)
    """, COUNT))
    d.with_panel(ch_stat("Alerts fired", "Alerts fired in the range, every rule and severity (alerts_1m).", """
        SELECT sum(alerts) AS alerts FROM alerts_1m WHERE $__timeFilter(minute)
    """, COUNT))
    d.with_panel(ch_stat("Accounts alerted", "Distinct accounts with an alert in the range (alerts_1m).", """
        SELECT uniqMerge(accounts) AS accounts_alerted FROM alerts_1m WHERE $__timeFilter(minute)
    """, COUNT))
    d.with_panel(ch_stat("Active campaigns", "Current clusters of linked accounts updated in the range whose "
                         f"score reaches the cluster_extraction rule's threshold ({campaign_min_score():g}); "
                         "linked accounts below the campaign threshold are not counted (clusters FINAL, "
                         "active = 1).", f"""
        SELECT count() AS campaigns FROM clusters FINAL
        WHERE active = 1 AND updated_ts >= $__fromTime AND {is_campaign()}
    """, COUNT))

    d.with_panel(ch_timeseries("Calls/s and output tokens/s", "All traffic per second (traffic_1m): calls, "
                               "output tokens (completion + reasoning), and the completion and reasoning "
                               "tokens apart.", f"""
        SELECT $__timeInterval(minute) AS time,
               sum(calls) / $__interval_s AS `calls/s`,
               {OUTPUT_TOKENS_SUM} / $__interval_s AS `output tokens/s`,
               sum(completion_tokens) / $__interval_s AS `completion tokens/s`,
               sum(reasoning_tokens) / $__interval_s AS `reasoning tokens/s`
        FROM traffic_1m
        WHERE $__timeFilter(minute)
        GROUP BY time
        ORDER BY time
    """, PER_SECOND, units={"calls/s": RATE}))
    d.with_panel(ch_timeseries("Alerts by rule and severity", "Alerts fired per interval, stacked by "
                               "rule / severity (alerts_1m).", """
        SELECT $__timeInterval(minute) AS time, concat(rule, ' / ', severity) AS rule_severity,
               sum(alerts) AS alerts
        FROM alerts_1m
        WHERE $__timeFilter(minute)
        GROUP BY time, rule_severity
        ORDER BY time
    """, COUNT, stacked=True, bars=True, series_by="rule_severity"))

    d.with_panel(ch_table("Top accounts by score", f"The {TOP_ACCOUNTS} accounts with the highest score in the range "
                          "(account_scores_1h; equal scores: most output taken first), their strongest signals by "
                          "points (signatures_1m), calls, output tokens (completion + reasoning) and reasoning share. "
                          "Click an account to drill down.",
                          TOP_ACCOUNTS_SQL, w=14, h=10, accounts=["account_id"],
                          units={"max_score": SCORE, "reasoning_share": SHARE, "output_tokens": COUNT}))
    d.with_panel(ch_table("Active campaigns", "Current clusters updated in the range whose score reaches the "
                          f"cluster_extraction rule's threshold ({campaign_min_score():g}) (clusters FINAL, "
                          "active = 1): size, cluster score and the features they share. Linked accounts below "
                          "the campaign threshold are listed on the Campaigns dashboard. Click a cluster to "
                          "open it.",
                          ACTIVE_CAMPAIGNS_SQL, w=10, h=10, clusters=["cluster_id"]))

    d.with_panel(ch_heatmap("Score distribution", "Account-minutes per 10-point score band over time "
                            "(scores_1m): attackers show up as a warm band at the top.", f"""
        SELECT $__timeInterval(minute) AS time,
               {_band_columns()}
        FROM scores_1m
        WHERE $__timeFilter(minute)
        GROUP BY time
        ORDER BY time
    """))
    d.with_panel(ch_timeseries("Traffic by model and endpoint", "Calls per second for each model and endpoint, "
                               "stacked (traffic_1m).", """
        SELECT $__timeInterval(minute) AS time, concat(model, ' ', endpoint) AS model_endpoint,
               sum(calls) / $__interval_s AS calls
        FROM traffic_1m
        WHERE $__timeFilter(minute)
        GROUP BY time, model_endpoint
        ORDER BY time
    """, RATE, stacked=True, series_by="model_endpoint"))
    return finish(d)

"""What the report shows, read from ClickHouse: rollups for series and totals, key ranges for details.

Series and totals come from the rollups (``traffic_1m``, ``scores_1m``, ``alerts_1m``,
``account_scores_1h``); the signals of the top accounts and the campaigns' harvest read
``signatures_1m`` for those accounts' key ranges only, alerts and campaigns their own tables with
``FINAL``. The window is event time, except for rejected input, which has none (an
undecodable message) and is selected by the time it was received.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from jobs.investigate.queries import PAGED
from jobs.ranking import TOP_ACCOUNTS_ORDER, top_accounts_cte
from pipeline.sinks.clickhouse import query_rows

MAX_ALERTS = 200
MAX_CAMPAIGNS = 50
# Bucket widths (minutes) for the time series: the smallest that keeps a range under MAX_BUCKETS.
BUCKET_MINUTES = (1, 5, 10, 15, 30, 60, 180, 360, 720, 1440)
MAX_BUCKETS = 150


@dataclass(frozen=True)
class Window:
    """Event-time window [since, until); None = unbounded on that side."""

    since: datetime | None = None
    until: datetime | None = None

    def params(self) -> dict[str, Any]:
        # Unbounded sides become the widest DateTime values, so every query has the same shape.
        return {"since": self.since or datetime(1970, 1, 1), "until": self.until or datetime(2105, 12, 31)}


@dataclass(frozen=True)
class ReportData:
    database: str
    window: Window
    first_minute: datetime | None  # of the traffic in the window; None: no traffic
    last_minute: datetime | None
    bucket_minutes: int
    totals: dict[str, Any]
    rejects: list[dict[str, Any]]  # reason, field, events, example
    models: list[dict[str, Any]]
    traffic: list[dict[str, Any]]  # bucket, calls, output_tokens, reasoning_tokens, accounts
    scores: list[dict[str, Any]]  # bucket, score_band, frames
    alerts_series: list[dict[str, Any]]  # bucket, rule, alerts
    top_accounts: list[dict[str, Any]]
    campaigns: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    alerts_total: int
    campaign_threshold: float | None = None  # cluster score at which the cluster rule pages

    @property
    def empty(self) -> bool:
        """No call and no scored minute in the window: nothing to report."""
        return not self.totals["events"] and not self.totals["account_minutes"]

    def is_campaign(self, cluster: dict[str, Any]) -> bool:
        return self.campaign_threshold is not None and float(cluster["score"]) >= self.campaign_threshold


def bucket_minutes(first: datetime | None, last: datetime | None) -> int:
    """Width of a time-series bucket for the range [first, last] (both minutes)."""
    if first is None or last is None:
        return BUCKET_MINUTES[0]
    span = (last - first) / timedelta(minutes=1) + 1
    return next((m for m in BUCKET_MINUTES if span / m <= MAX_BUCKETS), BUCKET_MINUTES[-1])


def load(client: Client, database: str, window: Window, *, campaign_threshold: float | None = None) -> ReportData:
    """Everything the page shows, for ``window``; raises ClickHouseError from the queries.

    ``campaign_threshold``: the cluster rule's score threshold (jobs.investigate.campaign_rule); clusters
    below it are listed as linked accounts, not campaigns.
    """
    db = f"`{database}`"
    p = window.params()
    span = query_rows(client, f"""
        SELECT min(minute) AS first, max(minute) AS last, sum(calls) AS events, uniqMerge(accounts) AS accounts,
               sum(prompt_tokens) AS input_tokens, sum(completion_tokens) AS output_tokens,
               sum(reasoning_tokens) AS reasoning_tokens, sum(error_calls) AS error_calls
        FROM {db}.traffic_1m WHERE minute >= {{since:DateTime}} AND minute < {{until:DateTime}}""", p)[0]
    has_traffic = int(span["events"]) > 0
    first, last = (span["first"], span["last"]) if has_traffic else (None, None)
    step = bucket_minutes(first, last)
    ps = {**p, "step": step}
    bucket = "toStartOfInterval(minute, toIntervalMinute({step:UInt32}))"
    where = "minute >= {since:DateTime} AND minute < {until:DateTime}"
    alert_totals = query_rows(client, f"""
        SELECT sum(alerts) AS alerts, uniqMerge(accounts) AS alerted_accounts
        FROM {db}.alerts_1m WHERE {where}""", p)[0]
    frames = query_rows(client, f"SELECT sum(frames) AS frames FROM {db}.scores_1m WHERE {where}", p)[0]
    received = ({} if window.since is None and window.until is None
                else {"where": "WHERE received_at >= {since:DateTime} AND received_at < {until:DateTime}"})
    rejects = query_rows(client, f"""
        SELECT reason, field, count() AS events, any(detail) AS example
        FROM {db}.rejected_events {received.get('where', '')}
        GROUP BY reason, field ORDER BY events DESC, reason, field""", p)
    campaigns = _campaigns(client, db, p)
    totals = {
        "events": int(span["events"]),
        "rejected": sum(int(r["events"]) for r in rejects),
        "accounts": int(span["accounts"]),
        "account_minutes": int(frames["frames"]),
        "input_tokens": int(span["input_tokens"]),
        "output_tokens": int(span["output_tokens"]),
        "reasoning_tokens": int(span["reasoning_tokens"]),
        "error_calls": int(span["error_calls"]),
        "alerts": int(alert_totals["alerts"]),
        "alerted_accounts": int(alert_totals["alerted_accounts"]),
        "campaigns": sum(1 for c in campaigns if campaign_threshold is not None
                         and float(c["score"]) >= campaign_threshold),
        "linked_groups": sum(1 for c in campaigns if campaign_threshold is None
                             or float(c["score"]) < campaign_threshold),
    }
    return ReportData(
        database=database, window=window, first_minute=first, last_minute=last, bucket_minutes=step,
        totals=totals, rejects=rejects, campaigns=campaigns,
        models=query_rows(client, f"""
            SELECT model, sum(calls) AS calls, sum(completion_tokens) AS output_tokens,
                   sum(reasoning_tokens) AS reasoning_tokens, uniqMerge(accounts) AS accounts
            FROM {db}.traffic_1m WHERE {where} GROUP BY model ORDER BY calls DESC""", p),
        traffic=query_rows(client, f"""
            SELECT {bucket} AS bucket, sum(calls) AS calls, sum(completion_tokens) AS output_tokens,
                   sum(reasoning_tokens) AS reasoning_tokens, uniqMerge(accounts) AS accounts
            FROM {db}.traffic_1m WHERE {where} GROUP BY bucket ORDER BY bucket""", ps),
        scores=query_rows(client, f"""
            SELECT {bucket} AS bucket, score_band, sum(frames) AS frames
            FROM {db}.scores_1m WHERE {where} GROUP BY bucket, score_band ORDER BY bucket, score_band""", ps),
        alerts_series=query_rows(client, f"""
            SELECT {bucket} AS bucket, rule, sum(alerts) AS alerts
            FROM {db}.alerts_1m WHERE {where} GROUP BY bucket, rule ORDER BY bucket, rule""", ps),
        top_accounts=_top_accounts(client, db, p),
        alerts=query_rows(client, f"""
            SELECT fired_ts, window_start, account_id, rule, severity, score, mode, suppressed_by, signals
            FROM {db}.alerts FINAL
            WHERE fired_ts >= {{since:DateTime}} AND fired_ts < {{until:DateTime}}
            ORDER BY fired_ts, account_id, rule LIMIT {MAX_ALERTS}""", p),
        alerts_total=int(alert_totals["alerts"]),
        campaign_threshold=campaign_threshold,
    )


def _top_accounts(client: Client, db: str, p: dict[str, Any]) -> list[dict[str, Any]]:
    # Ranked on the hourly rollup; signals, alerts and campaign read for those accounts only.
    return query_rows(client, f"""
        WITH {top_accounts_cte(f"{db}.account_scores_1h",
                               "hour >= toStartOfHour({since:DateTime}) AND hour < {until:DateTime}",
                               "sum(active_minutes) AS active_minutes, min(first_minute) AS first_minute")}
        SELECT t.account_id AS account_id, t.peak_score AS peak_score, t.call_count AS calls,
               t.output_tokens AS output_tokens, t.active_minutes AS active_minutes, t.first_minute AS first_minute,
               s.signals AS signals, a.alerts AS alerts, a.first_alert AS first_alert, c.cluster_id AS cluster_id
        FROM top AS t
        LEFT JOIN (
            SELECT account_id, argMax(top_signals, score) AS signals
            FROM {db}.signatures_1m FINAL
            WHERE account_id IN (SELECT account_id FROM top)
              AND window_start >= {{since:DateTime}} AND window_start < {{until:DateTime}}
            GROUP BY account_id
        ) AS s ON s.account_id = t.account_id
        LEFT JOIN (
            SELECT account_id, count() AS alerts, minIf(fired_ts, {PAGED}) AS first_alert,
                   countIf({PAGED}) AS pages
            FROM {db}.alerts FINAL
            WHERE account_id IN (SELECT account_id FROM top)
              AND fired_ts >= {{since:DateTime}} AND fired_ts < {{until:DateTime}}
            GROUP BY account_id
        ) AS a ON a.account_id = t.account_id
        LEFT JOIN (
            SELECT arrayJoin(account_ids) AS account_id, any(cluster_id) AS cluster_id
            FROM {db}.clusters FINAL WHERE active = 1 GROUP BY account_id
        ) AS c ON c.account_id = t.account_id
        ORDER BY {TOP_ACCOUNTS_ORDER}""", p)


def _campaigns(client: Client, db: str, p: dict[str, Any]) -> list[dict[str, Any]]:
    # Output the members received in the window (signatures_1m, the members' key ranges), and before the
    # campaign's first page: calls with ts < that page's fired_ts, as investigate counts them (whole hours
    # from account_entities_1h, the page's own hour from api_calls key ranges). Monitor-mode and
    # suppressed alerts paged nobody and do not count.
    return query_rows(client, f"""
        WITH current AS (
            SELECT cluster_id, size, score, shared_features, account_ids, first_seen_ts, updated_ts
            FROM {db}.clusters FINAL
            WHERE active = 1 AND updated_ts >= {{since:DateTime}} AND first_seen_ts < {{until:DateTime}}
        ),
        members AS (SELECT cluster_id, arrayJoin(account_ids) AS account_id FROM current),
        first_alerts AS (
            SELECT m.cluster_id AS cluster_id, min(a.fired_ts) AS first_alert
            FROM {db}.alerts AS a FINAL
            INNER JOIN members AS m ON m.account_id = a.account_id
            WHERE a.account_id IN (SELECT account_id FROM members) AND a.mode = 'page' AND a.suppressed_by = ''
            GROUP BY cluster_id
        ),
        whole_hours AS (
            SELECT m.cluster_id AS cluster_id, sum(e.completion_tokens + e.reasoning_tokens) AS tokens
            FROM {db}.account_entities_1h AS e
            INNER JOIN members AS m ON m.account_id = e.account_id
            INNER JOIN first_alerts AS f ON f.cluster_id = m.cluster_id
            WHERE e.account_id IN (SELECT account_id FROM members) AND e.kind = 'endpoint'
              AND e.hour >= toStartOfHour({{since:DateTime}}) AND e.hour < toStartOfHour(f.first_alert)
            GROUP BY cluster_id
        ),
        alert_hour AS (
            SELECT m.cluster_id AS cluster_id, sum(c.completion_tokens + c.reasoning_tokens) AS tokens
            FROM {db}.api_calls AS c
            INNER JOIN members AS m ON m.account_id = c.account_id
            INNER JOIN first_alerts AS f ON f.cluster_id = m.cluster_id
            WHERE c.account_id IN (SELECT account_id FROM members)
              AND c.ts >= greatest(toStartOfHour(f.first_alert), {{since:DateTime}}) AND c.ts < f.first_alert
            GROUP BY cluster_id
        )
        SELECT c.cluster_id AS cluster_id, c.size AS size, c.score AS score, c.shared_features AS shared_features,
               c.account_ids AS account_ids, c.first_seen_ts AS first_seen, c.updated_ts AS updated,
               h.calls AS calls, h.output_tokens AS output_tokens,
               if(f.cluster_id = '', h.output_tokens, wh.tokens + ah.tokens) AS output_before_alert,
               if(f.cluster_id = '', NULL, f.first_alert) AS first_alert
        FROM current AS c
        LEFT JOIN (
            SELECT m.cluster_id AS cluster_id, sum(s.calls) AS calls,
                   sum(s.completion_tokens + s.reasoning_tokens) AS output_tokens
            FROM {db}.signatures_1m AS s FINAL
            INNER JOIN members AS m ON m.account_id = s.account_id
            WHERE s.account_id IN (SELECT account_id FROM members)
              AND s.window_start >= {{since:DateTime}} AND s.window_start < {{until:DateTime}}
            GROUP BY cluster_id
        ) AS h ON h.cluster_id = c.cluster_id
        LEFT JOIN first_alerts AS f ON f.cluster_id = c.cluster_id
        LEFT JOIN whole_hours AS wh ON wh.cluster_id = c.cluster_id
        LEFT JOIN alert_hour AS ah ON ah.cluster_id = c.cluster_id
        ORDER BY score DESC, cluster_id LIMIT {MAX_CAMPAIGNS}""", p)

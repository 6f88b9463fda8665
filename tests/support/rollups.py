"""Reading the rollups back: each one's merged figures next to the same figures from its base table."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client


def rows(client: Client, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query(sql).result_rows]


def insert_as_before(client: Client, db: str, table: str, columns: dict[str, Any], newer: tuple[str, ...]) -> None:
    """Insert ``columns`` as code from before the ``newer`` columns did (a rolled-back schema)."""
    old = {k: v for k, v in columns.items() if k not in newer}
    client.insert(table, [list(c) for c in old.values()], column_names=list(old), database=db,
                  column_oriented=True)


# Each rollup read with its merge functions, next to the same figures computed from its base
# table (written independently of the views' expressions).
ROLLUP_VS_BASE = {
    "traffic_1m": (
        "SELECT minute, model, endpoint, network_type, country, sum(calls), sum(prompt_tokens), "
        "sum(completion_tokens), sum(reasoning_tokens), sum(error_calls), uniqMerge(accounts) "
        "FROM {db}.traffic_1m GROUP BY ALL ORDER BY ALL",
        "SELECT toStartOfMinute(toDateTime(ts, 'UTC')) AS m, model, endpoint, network_type, country, count(), "
        "sum(prompt_tokens), sum(completion_tokens), sum(reasoning_tokens), countIf(status >= 400), "
        "uniqExact(account_id) FROM {db}.api_calls GROUP BY ALL ORDER BY ALL",
    ),
    "scores_1m": (
        "SELECT minute, score_band, sum(frames), sum(calls), sum(completion_tokens), sum(reasoning_tokens), "
        "uniqMerge(accounts), max(max_score) FROM {db}.scores_1m GROUP BY ALL ORDER BY ALL",
        "SELECT window_start, multiIf(score >= 90, 90, floor(score / 10) * 10) AS band, count(), sum(calls), "
        "sum(completion_tokens), sum(reasoning_tokens), uniqExact(account_id), max(score) "
        "FROM {db}.signatures_1m GROUP BY ALL ORDER BY ALL",
    ),
    "alerts_1m": (
        "SELECT minute, rule, severity, sum(alerts), uniqMerge(accounts), max(max_score) "
        "FROM {db}.alerts_1m GROUP BY ALL ORDER BY ALL",
        "SELECT toStartOfMinute(toDateTime(fired_ts, 'UTC')) AS m, rule, severity, count(), uniqExact(account_id), "
        "max(score) FROM {db}.alerts GROUP BY ALL ORDER BY ALL",
    ),
    "account_scores_1h": (
        "SELECT hour, account_id, max(max_score), sum(calls), sum(prompt_tokens), sum(completion_tokens), "
        "sum(reasoning_tokens), sum(reasoning_calls), sum(active_minutes), min(first_minute), max(last_minute) "
        "FROM {db}.account_scores_1h GROUP BY ALL ORDER BY ALL",
        "SELECT toStartOfHour(window_start) AS h, account_id, max(score), sum(calls), sum(prompt_tokens), "
        "sum(completion_tokens), sum(reasoning_tokens), sum(reasoning_calls), count(), min(window_start), "
        "max(window_start) FROM {db}.signatures_1m GROUP BY ALL ORDER BY ALL",
    ),
}

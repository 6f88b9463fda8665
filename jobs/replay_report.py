"""Build REPORT.json (../shared/REPLAY_REPORT.md) from the ClickHouse tables of a replay.

All times are event times from the data; the same input gives the same report.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.sinks.clickhouse import query_rows


def iso_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return text.replace(".000Z", "Z")


ACCOUNTS_SQL = """
SELECT account_id,
       max(score) AS max_score,
       argMax(top_signals, (score, window_start)) AS top_signals
FROM signatures_1m FINAL
GROUP BY account_id
ORDER BY max_score DESC, account_id
"""

ALERTS_SQL = """
SELECT account_id, rule, severity, fired_ts, score
FROM alerts FINAL
WHERE mode = 'page' AND suppressed_by = ''  -- what paged someone; monitor rules and suppressions only count
ORDER BY fired_ts, account_id, rule
"""

# Dead-lettered input; resent copies of valid events (reason 'duplicate') are not bad input.
REJECTED_SQL = ("SELECT count() AS n FROM (SELECT DISTINCT kafka_partition, kafka_offset FROM rejected_events "
                "WHERE reason != 'duplicate')")


# The current clusters: the newest version of each id, still naming a cluster.
CLUSTERS_SQL = """
SELECT cluster_id, account_ids, score
FROM clusters FINAL
WHERE active = 1
ORDER BY score DESC, cluster_id
"""


def build_report(client: Any, database: str, events_in: int) -> dict[str, Any]:
    alerts = query_rows(client, ALERTS_SQL)
    first_alert: dict[str, datetime] = {}
    for a in alerts:
        first_alert.setdefault(a["account_id"], a["fired_ts"])
    accounts = []
    for row in query_rows(client, ACCOUNTS_SQL):
        fired = first_alert.get(row["account_id"])
        accounts.append({
            "account_id": row["account_id"],
            "max_score": round(float(row["max_score"]), 2),
            "flagged": fired is not None,
            "first_flagged_ts": iso_utc(fired),
            "top_signals": list(row["top_signals"]),
        })
    rejected = int(query_rows(client, REJECTED_SQL)[0]["n"])
    return {
        "events_in": events_in,
        "events_rejected": rejected,
        "accounts": accounts,
        "alerts": [
            {"account_id": a["account_id"], "rule": a["rule"], "severity": a["severity"],
             "fired_ts": iso_utc(a["fired_ts"]), "score": round(float(a["score"]), 2)}
            for a in alerts
        ],
        "clusters": [
            {"cluster_id": c["cluster_id"], "account_ids": list(c["account_ids"]),
             "score": round(float(c["score"]), 2)}
            for c in query_rows(client, CLUSTERS_SQL)
        ],
    }

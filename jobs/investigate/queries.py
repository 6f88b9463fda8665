"""The SQL behind ``distillwatch investigate``: rollups and primary-key ranges only.

Every value is a ClickHouse query parameter (``{accounts:Array(String)}``); only the database name (a
checked identifier) is put into the text, by ``sql()``. What each read touches: docs/forensics.md, "Speed".
"""

from __future__ import annotations

import re
from string import Template
from typing import Final

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# Entity kinds of account_entities_1h (docs/cookbook.md), by section of the page.
NETWORK_KINDS: Final = ("api_key", "ip_net", "asn", "network_type", "country", "user_agent", "tls_fingerprint",
                        "http2_fingerprint", "payment")
TEMPLATE: Final = "template"


def sql(template: str, database: str) -> str:
    """``template`` with ``$db`` replaced by the quoted database; raises ValueError for a bad name."""
    if not _IDENTIFIER.match(database):
        raise ValueError(f"bad database name {database!r}: expected a plain identifier")
    return Template(template).substitute(db=f"`{database}`")


TABLE_EXISTS = """
SELECT name FROM system.tables WHERE database = {database:String} AND name IN {names:Array(String)}
"""

CLUSTER_EXISTS = "SELECT count() FROM $db.clusters WHERE cluster_id = {cluster:String}"

ACCOUNT_EXISTS = """
SELECT count() FROM $db.account_entities_1h WHERE account_id = {account:String} AND kind = 'endpoint'
"""

CLUSTER_BY_ID = """
SELECT cluster_id, account_ids, size, score, shared_features, factor_names, factor_points,
       first_seen_ts, updated_ts, active
FROM $db.clusters FINAL WHERE cluster_id = {cluster:String}
"""

CLUSTER_OF_ACCOUNT = """
SELECT cluster_id FROM $db.clusters FINAL
WHERE active = 1 AND has(account_ids, {account:String})
ORDER BY score DESC LIMIT 1
"""

# Every stored version (ReplacingMergeTree keeps them until a merge folds them into the newest).
CLUSTER_HISTORY = """
SELECT version, updated_ts, size, score, active
FROM $db.clusters WHERE cluster_id = {cluster:String}
ORDER BY version
"""

# Calls and tokens per account and hour: from the endpoint rows (every call has one).
TRAFFIC_HOURLY = """
SELECT account_id, hour, sum(calls) AS calls, sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens, sum(reasoning_tokens) AS reasoning_tokens,
       min(first_seen) AS first_seen, max(last_seen) AS last_seen
FROM $db.account_entities_1h
WHERE account_id IN {accounts:Array(String)} AND kind = 'endpoint'
  AND hour >= toStartOfHour({since:DateTime64(3, 'UTC')})
GROUP BY account_id, hour
ORDER BY account_id, hour
"""

# Per (kind, value): calls and the first and last time seen; the busiest values of each kind.
ENTITIES = """
SELECT account_id, kind, value, sum(calls) AS calls, min(first_seen) AS first_seen, max(last_seen) AS last_seen
FROM $db.account_entities_1h
WHERE account_id IN {accounts:Array(String)} AND kind IN {kinds:Array(String)}
  AND hour >= toStartOfHour({since:DateTime64(3, 'UTC')})
GROUP BY account_id, kind, value
ORDER BY account_id, kind, calls DESC, value
LIMIT {per_kind:UInt32} BY account_id, kind
"""

# Chosen values over every member of a campaign (the per-account lists above keep only each
# account's busiest, so a value can be missing from some members' lists).
CAMPAIGN_VALUES = """
SELECT kind, value, sum(calls) AS calls, min(first_seen) AS first_seen, max(last_seen) AS last_seen
FROM $db.account_entities_1h
WHERE account_id IN {accounts:Array(String)} AND kind IN {kinds:Array(String)}
  AND value IN {values:Array(String)} AND hour >= toStartOfHour({since:DateTime64(3, 'UTC')})
GROUP BY kind, value
"""

# Calls per model and hour, for the share moved to a newly released model.
MODEL_HOURLY = """
SELECT account_id, value AS model, hour, sum(calls) AS calls
FROM $db.account_entities_1h
WHERE account_id IN {accounts:Array(String)} AND kind = 'model'
  AND hour >= toStartOfHour({since:DateTime64(3, 'UTC')})
GROUP BY account_id, model, hour
ORDER BY account_id, model, hour
"""

# The first minute each model was called by anyone, in the whole dataset.
MODEL_RELEASES = "SELECT model, min(minute) AS first_minute FROM $db.traffic_1m GROUP BY model ORDER BY first_minute"

# Score per time bucket with the signals of the bucket's highest-scoring minute.
SCORES = """
SELECT account_id, toStartOfInterval(window_start, toIntervalSecond({bucket_s:UInt32})) AS bucket,
       max(score) AS max_score, argMax(top_signals, score) AS top_signals
FROM $db.signatures_1m
WHERE account_id IN {accounts:Array(String)} AND window_start >= toStartOfMinute({since:DateTime64(3, 'UTC')})
GROUP BY account_id, bucket
ORDER BY account_id, bucket
"""

ALERTS = """
SELECT account_id, alert_id, fired_ts, window_start AS minute, rule, severity, score,
       signals, signal_points, mode, suppressed_by
FROM $db.alerts FINAL
WHERE account_id IN {accounts:Array(String)} AND fired_ts >= {since:DateTime64(3, 'UTC')}
ORDER BY account_id, fired_ts, rule
"""

# An alert that paged someone: a monitor-mode or suppressed (allow-list, false positive) alert paged nobody.
PAGED: Final = "mode = 'page' AND suppressed_by = ''"

# The first page ever (not only in the period): "before its first alert" means before anyone was paged.
FIRST_ALERTS = """
SELECT account_id, min(fired_ts) AS first_alert
FROM $db.alerts FINAL WHERE account_id IN {accounts:Array(String)} AND """ + PAGED + """
GROUP BY account_id
"""

# Output received in whole hours before an alert's hour (rollup) ...
HARVEST_HOURS_BEFORE = """
SELECT sum(completion_tokens) AS completion_tokens, sum(reasoning_tokens) AS reasoning_tokens
FROM $db.account_entities_1h
WHERE account_id = {account:String} AND kind = 'endpoint'
  AND hour >= toStartOfHour({since:DateTime64(3, 'UTC')}) AND hour < toStartOfHour({until:DateTime64(3, 'UTC')})
"""

# ... plus the alert's own hour up to the alert: a primary-key range of api_calls, at most one hour.
HARVEST_PARTIAL_HOUR = """
SELECT sum(completion_tokens) AS completion_tokens, sum(reasoning_tokens) AS reasoning_tokens
FROM $db.api_calls
WHERE account_id = {account:String}
  AND ts >= greatest(toStartOfHour({until:DateTime64(3, 'UTC')}), {since:DateTime64(3, 'UTC')})
  AND ts < {until:DateTime64(3, 'UTC')}
"""

# Templates (prompt SimHashes) whose first 16 bits equal one of ours: every 'template' row, filtered by
# prefix (one IN over a set; neither the key nor the value index can select by prefix, and a thousand
# OR-ed ranges take ClickHouse seconds to analyse); the Hamming distance is checked afterwards.
TEMPLATE_NEIGHBOURS = """
SELECT value, account_id, sum(calls) AS calls
FROM $db.$entity_table
WHERE kind = 'template' AND substring(value, 1, 4) IN {prefixes:Array(String)}
GROUP BY value, account_id
"""

# How many accounts carry each value (a feature carried by more than its kind's cap is
# "popular" and links nobody, as in pipeline/linking).
VALUE_ACCOUNTS = """
SELECT kind, value, uniqExact(account_id) AS accounts
FROM $db.$entity_table
WHERE kind = {kind:String} AND value IN {values:Array(String)}
GROUP BY kind, value
"""

FEEDBACK = """
SELECT account_id, recorded_at, rule, verdict, reason, analyst, suppress_until
FROM $db.alert_feedback
WHERE account_id IN {accounts:Array(String)}
ORDER BY account_id, recorded_at
"""


def with_entity_table(template: str, entity_table: str) -> str:
    """Fill ``$entity_table`` (a table name of ours, never user input), keeping ``$db``."""
    return Template(template).safe_substitute(entity_table=entity_table)

"""The ClickHouse tables distillwatch writes: one definition shared by the DDL and the writer.

``TableSpec.columns`` are the columns the pipeline inserts, as ``(name, ClickHouse type)`` spelled as
``system.columns`` reports them (tests/schemas/test_migrations.py compares a live schema); server-filled
columns are in ``TableSpec.server_defaults`` and never sent. A change here reaches only fresh
databases: every change also needs a new migration module (``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Per-table setting that makes insert_deduplication_token (and identical-block
# dedup) work on non-replicated MergeTree; without it retried inserts duplicate.
DEDUP_WINDOW = 1000

Column = tuple[str, str]


@dataclass(frozen=True)
class TableSpec:
    """One table: inserted columns, server-filled columns and engine clauses."""

    name: str
    columns: tuple[Column, ...]
    order_by: tuple[str, ...]
    engine: str = "ReplacingMergeTree"
    partition_by: str | None = None
    # (name, type, default expression) for columns the server fills on insert.
    server_defaults: tuple[tuple[str, str, str], ...] = ()
    # Raw tables: rows expire DW_RAW_TTL_DAYS after this column (pipeline/sinks/retention.py). It is
    # the server-filled write time, not event time: ClickHouse drops already-expired rows at insert,
    # so an event-time TTL would silently discard a replay of traffic older than the retention.
    ttl_column: str | None = None
    # False: the pipeline's inserts skip ClickHouse's insert-time merge of the block's rows that share
    # the sorting key (optimize_on_insert = 0; pipeline/sinks/clickhouse.py), and so do the inserts of
    # the rollups its views fill. For the tables written with every batch: their blocks hold one row
    # per key (events deduplicated upstream, one frame per account-minute), every rollup view already
    # groups by its table's key, and rows repeated across blocks were only ever merged in the
    # background. The merge found nothing and cost ~40% of the insert time (docs/benchmarks.md).
    merge_on_insert: bool = True

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def qualified(self, database: str) -> str:
        return f"`{database}`.`{self.name}`"

    def create_sql(self, database: str) -> str:
        """``CREATE TABLE IF NOT EXISTS`` for this table in ``database`` (idempotent)."""
        lines = [f"    `{name}` {ch_type}" for name, ch_type in self.columns]
        lines += [f"    `{name}` {ch_type} DEFAULT {expr}" for name, ch_type, expr in self.server_defaults]
        sql = f"CREATE TABLE IF NOT EXISTS {self.qualified(database)}\n(\n" + ",\n".join(lines) + "\n)\n"
        sql += f"ENGINE = {self.engine}\n"
        if self.partition_by:
            sql += f"PARTITION BY {self.partition_by}\n"
        sql += f"ORDER BY ({', '.join(self.order_by)})\n"
        if "MergeTree" in self.engine:
            sql += f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"
        return sql

    def drop_sql(self, database: str) -> str:
        # SYNC frees the name and the data at once, so a rollback can be re-applied immediately.
        return f"DROP TABLE IF EXISTS {self.qualified(database)} SYNC"


_TS = "DateTime64(3, 'UTC')"
_MINUTE = "DateTime('UTC')"
_LC = "LowCardinality(String)"

API_CALLS = TableSpec(
    name="api_calls",
    # Raw evidence, one row per valid event. Prompt text is never stored, only its hashes.
    columns=(
        ("event_id", "String"),
        ("ts", _TS),
        ("account_id", "String"),
        ("api_key_id", "String"),
        ("client_ip", "String"),
        ("asn", "UInt32"),
        ("network_type", _LC),
        ("country", _LC),
        ("user_agent", "String"),
        ("endpoint", _LC),
        ("model", _LC),
        ("status", "UInt16"),
        ("latency_ms", "UInt32"),
        ("prompt_tokens", "UInt32"),
        ("completion_tokens", "UInt32"),
        ("reasoning_tokens", "UInt32"),
        ("prompt_hash", "UInt64"),
        ("prompt_simhash", "UInt64"),
        ("topic", _LC),
        ("elicits_reasoning", "UInt8"),
        ("temperature", "Float32"),  # NaN = absent
        ("top_p", "Float32"),  # NaN = absent
        ("n", "UInt16"),
        ("max_tokens", "UInt32"),  # 0 = absent
        ("logprobs", "UInt8"),
        ("top_logprobs", "Int8"),  # -1 = absent
        ("logit_bias_count", "UInt16"),
        ("stream", "UInt8"),
        ("payment_fingerprint", "String"),
        # The client stack as the gateway saw it (JA3/JA4, HTTP/2 SETTINGS): few distinct values (m0009).
        ("tls_fingerprint", _LC),
        ("http2_fingerprint", _LC),
        ("kafka_partition", "UInt16"),
        ("kafka_offset", "UInt64"),
    ),
    server_defaults=(("ingested_at", _TS, "now64(3)"),),
    partition_by="toYYYYMM(ts)",
    order_by=("account_id", "ts", "event_id"),
    ttl_column="ingested_at",
    merge_on_insert=False,
)

SIGNATURES_1M = TableSpec(
    name="signatures_1m",
    # Per account per event-time minute: the frame's counters and distinct counts,
    # derived per-frame figures, the rolled windows' key figures, and the score with
    # every signal's contribution (points). See docs/signals.md.
    columns=(
        ("account_id", "String"),
        ("window_start", _MINUTE),
        ("calls", "UInt32"),
        ("prompt_tokens", "UInt64"),
        ("completion_tokens", "UInt64"),
        ("reasoning_tokens", "UInt64"),
        ("reasoning_calls", "UInt32"),
        ("logprob_calls", "UInt32"),
        ("deep_logprob_calls", "UInt32"),
        ("logit_bias_calls", "UInt32"),
        ("multi_n_calls", "UInt32"),
        ("error_calls", "UInt32"),
        ("rate_limited_calls", "UInt32"),
        ("anon_calls", "UInt32"),
        ("hosting_calls", "UInt32"),
        ("temp_zero_calls", "UInt32"),
        ("near_dup_calls", "UInt32"),
        ("stream_calls", "UInt32"),
        ("distinct_prompts", "UInt32"),
        ("distinct_ips", "UInt32"),
        ("distinct_uas", "UInt32"),
        ("distinct_asns", "UInt32"),
        ("distinct_topics", "UInt32"),
        ("gap_cv", "Float32"),
        ("temp_std", "Float32"),
        ("calls_5m", "Float32"),
        ("calls_1h", "Float32"),
        ("calls_24h", "Float32"),
        ("active_minutes_1h", "Float32"),
        ("score", "Float32"),
        ("top_signals", f"Array({_LC})"),
        ("signal_names", f"Array({_LC})"),
        ("signal_points", "Array(Float32)"),
    ),
    server_defaults=(("emitted_at", _TS, "now64(3)"),),
    partition_by="toYYYYMM(window_start)",
    order_by=("account_id", "window_start"),
    ttl_column="emitted_at",
    merge_on_insert=False,
)

ALERTS = TableSpec(
    name="alerts",
    columns=(
        ("alert_id", "String"),
        ("fired_ts", _TS),
        ("account_id", "String"),
        ("rule", _LC),
        ("severity", _LC),
        ("score", "Float32"),
        ("signals", f"Array({_LC})"),
        ("signal_points", "Array(Float32)"),
        ("window_start", _MINUTE),
        # Added by m0004_alert_rules (pipeline/alerting): the account's cluster when it fired ('' none),
        # page | monitor, the recommended action, and what silenced it ('' = it paged; allowlist:<id>,
        # false_positive:<feedback id>).
        ("cluster_id", "String"),
        ("mode", _LC),
        ("action", _LC),
        ("suppressed_by", "String"),
    ),
    server_defaults=(("emitted_at", _TS, "now64(3)"),),
    order_by=("account_id", "rule", "fired_ts"),
    merge_on_insert=False,
)

REJECTED_EVENTS = TableSpec(
    name="rejected_events",
    # What went to the dead-letter topic; sample = first 256 bytes, decoded with errors='replace'.
    columns=(
        ("kafka_partition", "UInt16"),
        ("kafka_offset", "UInt64"),
        ("received_at", _TS),
        ("reason", _LC),
        ("field", "String"),
        ("detail", "String"),
        ("size_bytes", "UInt32"),
        ("sample", "String"),
    ),
    order_by=("kafka_partition", "kafka_offset"),
)

KEY_SIGNATURES_1M = TableSpec(
    name="key_signatures_1m",
    # The same frames, windows and score per API key: a compromised or shared key
    # inside a benign account stands out here. See docs/signals.md.
    columns=(
        ("account_id", "String"),
        ("api_key_id", "String"),
        ("window_start", _MINUTE),
        ("calls", "UInt32"),
        ("reasoning_calls", "UInt32"),
        ("deep_logprob_calls", "UInt32"),
        ("distinct_prompts", "UInt32"),
        ("distinct_ips", "UInt32"),
        ("calls_1h", "Float32"),
        ("score", "Float32"),
        ("top_signals", f"Array({_LC})"),
        ("signal_names", f"Array({_LC})"),
        ("signal_points", "Array(Float32)"),
    ),
    server_defaults=(("emitted_at", _TS, "now64(3)"),),
    partition_by="toYYYYMM(window_start)",
    order_by=("account_id", "api_key_id", "window_start"),
    ttl_column="emitted_at",
    merge_on_insert=False,
)

# One row per version of a cross-account cluster (pipeline/linking). ReplacingMergeTree on
# cluster_id by version: `SELECT … FROM clusters FINAL WHERE active = 1` is the current set;
# active = 0 rows retire ids merged into another cluster or whose links were withdrawn.
# Created by migration m0002_clusters.
CLUSTERS = TableSpec(
    name="clusters",
    columns=(
        ("cluster_id", "String"),
        ("account_ids", "Array(String)"),  # sorted
        ("size", "UInt32"),
        ("score", "Float32"),  # 0-100, the sum of factor_points
        ("shared_features", "Array(String)"),  # e.g. pay:<fp>, ip24:203.0.113, tpl:2:9f3a; strongest kind first
        ("factor_names", f"Array({_LC})"),  # size, member_scores, link_strength, volume
        ("factor_points", "Array(Float32)"),
        ("first_seen_ts", _TS),  # event time the first of its pairs became linked
        ("updated_ts", _TS),  # latest event time of its evidence or its members' scores
        ("active", "UInt8"),
        ("version", "UInt64"),  # wall-clock microseconds of the write: the newest row wins
        # Added by m0007_cluster_merges: on a retirement row, the cluster now holding the retired
        # cluster's smallest member (it merged into that one); '' on active rows and withdrawn links.
        ("merged_into", "String"),
    ),
    engine="ReplacingMergeTree(version)",
    server_defaults=(("emitted_at", _TS, "now64(3)"),),
    order_by=("cluster_id",),
)

# Analyst verdicts on alerts (pipeline/alerting/feedback.py), one row per verdict. rule '' covers
# every rule; suppress_until is set for false positives only (epoch 0 otherwise).
# Created by migration m0005_alert_feedback.
ALERT_FEEDBACK = TableSpec(
    name="alert_feedback",
    columns=(
        ("feedback_id", "String"),
        ("recorded_at", _TS),
        ("account_id", "String"),
        ("rule", _LC),
        ("verdict", _LC),  # ack | resolved | false_positive | confirmed
        ("reason", "String"),
        ("analyst", "String"),
        ("suppress_until", _TS),
    ),
    order_by=("account_id", "recorded_at", "feedback_id"),
)

# The alert outbox (pipeline/alerting/outbox.py): one row per (alert transition, notifier) with its
# delivery state. ReplacingMergeTree by version: `FINAL` gives each notification's latest state.
# A row is added pending with version 0, so a re-added transition never overrides a later state.
# Created by migration m0006_alert_notifications.
ALERT_NOTIFICATIONS = TableSpec(
    name="alert_notifications",
    columns=(
        ("notification_id", "String"),  # hash of (alert_key, alert_state, starts_at, notifier)
        ("notifier", _LC),  # alertmanager | pagerduty | webhook
        ("alert_key", "String"),  # AlertTransition.alert_key: the alert's identity (its labels)
        ("rule", _LC),
        ("alert_state", _LC),  # firing | resolved
        ("account_id", "String"),
        ("cluster_id", "String"),
        ("labels", "Map(String, String)"),
        ("annotations", "Map(String, String)"),
        ("starts_at", _TS),
        ("ends_at", _TS),  # epoch 0 while firing
        ("score", "Float32"),
        ("signals", f"Array({_LC})"),
        ("signal_points", "Array(Float32)"),
        ("delivery", _LC),  # pending | delivered | failed (refused for good by the receiver)
        ("attempts", "UInt32"),
        ("last_error", "String"),  # never holds a secret
        ("next_attempt_at", _TS),
        ("created_at", _TS),
        ("updated_at", _TS),
        ("version", "UInt64"),  # 0 when added, then wall-clock microseconds of each update
    ),
    engine="ReplacingMergeTree(version)",
    order_by=("notification_id",),
)

TABLES: dict[str, TableSpec] = {
    t.name: t for t in (API_CALLS, SIGNATURES_1M, KEY_SIGNATURES_1M, ALERTS, REJECTED_EVENTS, CLUSTERS,
                        ALERT_FEEDBACK, ALERT_NOTIFICATIONS)
}


def table_spec(name: str) -> TableSpec:
    """The spec of table ``name``; raises ValueError naming the table if it is not one of ours."""
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}") from None


# --- rollups (README "Output tables", docs/operations.md "Retention"), migration m0003 ---------
# Dashboards over hours and days read these instead of scanning the raw tables. Each is an
# AggregatingMergeTree filled by the materialized view `<name>_mv` from one base table; it is not
# in TABLES because the pipeline never inserts into it. Read sums with sum(col), min/max with
# min/max(col), distinct accounts with uniqMerge(accounts), always with GROUP BY over the key.

_SUM = "SimpleAggregateFunction(sum, UInt64)"
_UNIQ = "AggregateFunction(uniq, String)"
_MAX_SCORE = "SimpleAggregateFunction(max, Float32)"


@dataclass(frozen=True)
class RollupColumn:
    """A rollup column: its ClickHouse type and the view's expression over the source rows."""

    name: str
    type: str
    expr: str  # key columns: a row expression; others: an aggregate (a -State for AggregateFunction)


@dataclass(frozen=True)
class SkipIndex:
    """A data-skipping index of a rollup: granules whose index rules a value out are not read."""

    name: str
    expr: str
    type: str  # e.g. "bloom_filter(0.01)"
    granularity: int = 1  # granules per index block

    @property
    def definition(self) -> str:
        """What follows ``INDEX`` in CREATE TABLE, and ``ADD INDEX [IF NOT EXISTS]`` in ALTER TABLE."""
        return f"{self.name} {self.expr} TYPE {self.type} GRANULARITY {self.granularity}"


def projection_definition(name: str, order: tuple[str, ...]) -> str:
    """What follows ``PROJECTION`` in CREATE TABLE, and ``ADD PROJECTION [IF NOT EXISTS]`` in ALTER TABLE."""
    return f"{name} (SELECT * ORDER BY ({', '.join(order)}))"


@dataclass(frozen=True)
class RollupSpec:
    """An aggregated table and the materialized view ``<name>_mv`` that fills it from ``source``."""

    name: str
    source: str  # a TABLES name
    keys: tuple[RollupColumn, ...]  # ORDER BY, in this order; the view groups by them
    values: tuple[RollupColumn, ...]
    time_column: str  # a key column: PARTITION BY month of it, TTL (DW_ROLLUP_TTL_DAYS) from it
    array_join: str | None = None  # "ARRAY JOIN <expr> AS <alias>" applied to source rows
    # (name, ORDER BY columns): projections that serve lookups by another key prefix.
    projections: tuple[tuple[str, tuple[str, ...]], ...] = ()
    skip_indexes: tuple[SkipIndex, ...] = ()

    @property
    def columns(self) -> tuple[RollupColumn, ...]:
        return self.keys + self.values

    @property
    def view_name(self) -> str:
        return f"{self.name}_mv"

    @property
    def ttl_column(self) -> str:
        return self.time_column

    def qualified(self, database: str) -> str:
        return f"`{database}`.`{self.name}`"

    def create_sql(self, database: str) -> str:
        """``CREATE TABLE IF NOT EXISTS`` for the rollup table (idempotent)."""
        lines = [f"    `{c.name}` {c.type}" for c in self.columns]
        lines += [f"    INDEX {index.definition}" for index in self.skip_indexes]
        lines += [f"    PROJECTION {projection_definition(name, order)}" for name, order in self.projections]
        settings = [f"non_replicated_deduplication_window = {DEDUP_WINDOW}"]
        if self.projections:
            # Merges of an AggregatingMergeTree combine rows, so a projection must be rebuilt
            # for the merged part; the default, 'throw', refuses to create it (SUPPORT_IS_DISABLED).
            settings.append("deduplicate_merge_projection_mode = 'rebuild'")
        return (
            f"CREATE TABLE IF NOT EXISTS {self.qualified(database)}\n(\n" + ",\n".join(lines) + "\n)\n"
            "ENGINE = AggregatingMergeTree\n"
            f"PARTITION BY toYYYYMM({self.time_column})\n"
            f"ORDER BY ({', '.join(c.name for c in self.keys)})\n"
            f"SETTINGS {', '.join(settings)}"
        )

    def view_sql(self, database: str) -> str:
        """``CREATE MATERIALIZED VIEW IF NOT EXISTS <name>_mv TO <name>``: aggregates each inserted block."""
        return (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS `{database}`.`{self.view_name}` TO {self.qualified(database)}\n"
            f"AS {self._select(database)}"
        )

    def backfill_sql(self, database: str) -> str:
        """Aggregate the rows already in ``source`` into the table, only while it is empty (re-runnable)."""
        return f"INSERT INTO {self.qualified(database)}\n{self._select(database, only_if_empty=True)}"

    def _select(self, database: str, *, only_if_empty: bool = False) -> str:
        select = ",\n    ".join(f"{c.expr} AS `{c.name}`" for c in self.columns)
        sql = f"SELECT\n    {select}\nFROM `{database}`.`{self.source}`\n"
        if self.array_join:
            sql += f"{self.array_join}\n"
        if only_if_empty:
            sql += f"WHERE (SELECT count() FROM {self.qualified(database)}) = 0\n"
        return sql + f"GROUP BY {', '.join(f'`{c.name}`' for c in self.keys)}"

    def drop_view_sql(self, database: str) -> str:
        return f"DROP VIEW IF EXISTS `{database}`.`{self.view_name}` SYNC"

    def drop_sql(self, database: str) -> str:
        return f"DROP TABLE IF EXISTS {self.qualified(database)} SYNC"


def _sums(*names: str) -> tuple[RollupColumn, ...]:
    return tuple(RollupColumn(name, _SUM, f"sum(toUInt64(`{name}`))") for name in names)


_ACCOUNTS = RollupColumn("accounts", _UNIQ, "uniqState(account_id)")
_MAX_OF_SCORE = RollupColumn("max_score", _MAX_SCORE, "max(score)")
_CALLS = RollupColumn("calls", _SUM, "toUInt64(count())")

TRAFFIC_1M = RollupSpec(
    name="traffic_1m",
    source="api_calls",
    keys=(
        RollupColumn("minute", _MINUTE, "toDateTime(toStartOfMinute(ts), 'UTC')"),
        RollupColumn("model", _LC, "model"),
        RollupColumn("endpoint", _LC, "endpoint"),
        RollupColumn("network_type", _LC, "network_type"),
        RollupColumn("country", _LC, "country"),
    ),
    values=(
        _CALLS,
        *_sums("prompt_tokens", "completion_tokens", "reasoning_tokens"),
        RollupColumn("error_calls", _SUM, "toUInt64(countIf(status >= 400))"),
        _ACCOUNTS,
    ),
    time_column="minute",
)

SCORES_1M = RollupSpec(
    name="scores_1m",
    source="signatures_1m",
    keys=(
        RollupColumn("minute", _MINUTE, "window_start"),
        # 0, 10, ..., 90: the heatmap's rows; a score of 100 belongs to the top band.
        RollupColumn("score_band", "UInt8", "toUInt8(least(intDiv(toUInt32(greatest(score, 0)), 10) * 10, 90))"),
    ),
    values=(
        RollupColumn("frames", _SUM, "toUInt64(count())"),
        *_sums("calls", "completion_tokens", "reasoning_tokens"),
        _ACCOUNTS,
        _MAX_OF_SCORE,
    ),
    time_column="minute",
)

ALERTS_1M = RollupSpec(
    name="alerts_1m",
    source="alerts",
    keys=(
        RollupColumn("minute", _MINUTE, "toDateTime(toStartOfMinute(fired_ts), 'UTC')"),
        RollupColumn("rule", _LC, "rule"),
        RollupColumn("severity", _LC, "severity"),
    ),
    values=(RollupColumn("alerts", _SUM, "toUInt64(count())"), _ACCOUNTS, _MAX_OF_SCORE),
    time_column="minute",
)

ACCOUNT_SCORES_1H = RollupSpec(
    name="account_scores_1h",
    source="signatures_1m",
    keys=(
        RollupColumn("hour", _MINUTE, "toStartOfHour(window_start)"),
        RollupColumn("account_id", "String", "account_id"),
    ),
    values=(
        _MAX_OF_SCORE,
        *_sums("calls", "prompt_tokens", "completion_tokens", "reasoning_tokens", "reasoning_calls"),
        RollupColumn("active_minutes", _SUM, "toUInt64(count())"),
        RollupColumn("first_minute", f"SimpleAggregateFunction(min, {_MINUTE})", "min(window_start)"),
        RollupColumn("last_minute", f"SimpleAggregateFunction(max, {_MINUTE})", "max(window_start)"),
    ),
    time_column="hour",
)

# What account_entities_1h records per call: kind -> the value's expression over an api_calls row.
# An empty value (asn 0, simhash 0, no payment fingerprint, an empty field) is no entity and skipped.
# These came with the table (m0003); the fingerprint kinds came with their columns (m0009).
_FIRST_ENTITY_KINDS: dict[str, str] = {
    "api_key": "api_key_id",
    # IPv4: its /24 as a.b.c.0/24; IPv6: its /48 as x:y:z::/48; anything else: skipped.
    "ip_net": (
        "multiIf(isIPv4String(client_ip), "
        "concat(IPv4NumToString(bitAnd(IPv4StringToNumOrDefault(client_ip), 4294967040)), '/24'), "
        "isIPv6String(client_ip), "
        "concat(IPv6NumToString(tupleElement(IPv6CIDRToRange(toIPv6OrDefault(client_ip), 48), 1)), '/48'), '')"
    ),
    "asn": "if(asn = 0, '', toString(asn))",
    "country": "toString(country)",
    "network_type": "toString(network_type)",
    "user_agent": "user_agent",
    "model": "toString(model)",
    "endpoint": "toString(endpoint)",
    "template": "if(prompt_simhash = 0, '', leftPad(lower(hex(prompt_simhash)), 16, '0'))",
    "payment": "payment_fingerprint",
}
FINGERPRINT_KINDS: dict[str, str] = {"tls_fingerprint": "toString(tls_fingerprint)",
                                     "http2_fingerprint": "toString(http2_fingerprint)"}
ENTITY_KINDS: dict[str, str] = {**_FIRST_ENTITY_KINDS, **FINGERPRINT_KINDS}


def entities_array_join(kinds: dict[str, str]) -> str:
    """The ARRAY JOIN that turns an api_calls row into one (kind, value) row per non-empty entity."""
    entities = "[" + ", ".join(f"('{kind}', {expr})" for kind, expr in kinds.items()) + "]"
    return f"ARRAY JOIN arrayFilter(e -> e.2 != '', {entities}) AS entity"


ACCOUNT_ENTITIES_1H = RollupSpec(
    name="account_entities_1h",
    source="api_calls",
    keys=(
        RollupColumn("account_id", "String", "account_id"),
        RollupColumn("kind", _LC, "entity.1"),
        RollupColumn("value", "String", "entity.2"),
        RollupColumn("hour", _MINUTE, "toDateTime(toStartOfHour(ts), 'UTC')"),
    ),
    values=(
        _CALLS,
        *_sums("prompt_tokens", "completion_tokens", "reasoning_tokens"),
        RollupColumn("first_seen", f"SimpleAggregateFunction(min, {_TS})", "min(ts)"),
        RollupColumn("last_seen", f"SimpleAggregateFunction(max, {_TS})", "max(ts)"),
    ),
    time_column="hour",
    array_join=entities_array_join(ENTITY_KINDS),
    # "Which accounts share this value" (WHERE kind = … AND value [IN] …) reads only the granules whose
    # bloom filter may hold the value. Until m0010 a projection ordered by (kind, value, account_id)
    # served it, at a third of every api_calls insert (docs/benchmarks.md, 2026-12-05).
    skip_indexes=(SkipIndex("value_bloom", "value", "bloom_filter(0.01)"),),
)
# The projection m0003 made and m0010 replaced by the skip index.
ENTITIES_BY_VALUE: tuple[str, tuple[str, ...]] = ("by_value", ("kind", "value", "account_id"))

ROLLUPS: dict[str, RollupSpec] = {
    r.name: r for r in (TRAFFIC_1M, SCORES_1M, ALERTS_1M, ACCOUNT_SCORES_1H, ACCOUNT_ENTITIES_1H)
}
# The rollups as m0003 made them: its view cannot name columns that m0009 adds later, and the
# entities table had the by_value projection where m0010 puts its skip index.
ROLLUPS_AT_M0003: dict[str, RollupSpec] = {
    **ROLLUPS,
    ACCOUNT_ENTITIES_1H.name: dataclasses.replace(ACCOUNT_ENTITIES_1H,
                                                  array_join=entities_array_join(_FIRST_ENTITY_KINDS),
                                                  projections=(ENTITIES_BY_VALUE,), skip_indexes=()),
}


# Every version of every cluster, as written: `clusters` (ReplacingMergeTree) keeps only the newest per id once
# ClickHouse merges, but score histories and the backtest of rules with a `for` need them all. Filled from
# `clusters` by the view `cluster_history_mv` (migration m0008); same columns, so `SELECT *` feeds it.
CLUSTER_HISTORY = TableSpec(
    name="cluster_history",
    columns=CLUSTERS.columns,
    engine="MergeTree",
    server_defaults=CLUSTERS.server_defaults,
    partition_by="toYYYYMM(updated_ts)",
    order_by=("cluster_id", "version"),
)

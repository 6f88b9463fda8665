"""The ClickHouse tables distillwatch writes: one definition shared by the DDL and the writer.

``TableSpec.columns`` is the ordered list of columns the pipeline inserts, as
``(name, ClickHouse type)``; columns the server fills (``DEFAULT``) are kept apart
in ``TableSpec.server_defaults`` and are never sent. Types are spelled the way
ClickHouse reports them in ``system.columns`` so a live schema can be compared
with this module directly (tests/schemas/test_migrations.py does).

Changing a table here changes what a fresh database gets from the initial
migration, but never alters an existing one: every change also needs a new
migration module (``ALTER TABLE ... ADD COLUMN IF NOT EXISTS ...``).
"""

from __future__ import annotations

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
        ("kafka_partition", "UInt16"),
        ("kafka_offset", "UInt64"),
    ),
    server_defaults=(("ingested_at", _TS, "now64(3)"),),
    partition_by="toYYYYMM(ts)",
    order_by=("account_id", "ts", "event_id"),
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
    ),
    server_defaults=(("emitted_at", _TS, "now64(3)"),),
    order_by=("account_id", "rule", "fired_ts"),
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
    ),
    engine="ReplacingMergeTree(version)",
    server_defaults=(("emitted_at", _TS, "now64(3)"),),
    order_by=("cluster_id",),
)


TABLES: dict[str, TableSpec] = {
    t.name: t for t in (API_CALLS, SIGNATURES_1M, KEY_SIGNATURES_1M, ALERTS, REJECTED_EVENTS, CLUSTERS)
}


def table_spec(name: str) -> TableSpec:
    """The spec of table ``name``; raises ValueError naming the table if it is not one of ours."""
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}") from None


def insert_columns(name: str) -> tuple[str, ...]:
    """Ordered names of the columns the pipeline inserts into ``name`` (raises ValueError if unknown)."""
    return table_spec(name).column_names

"""One frozen, validated settings object for every process (worker, replay, demo, jobs).

Every field can be set through an environment variable ``DW_<FIELD>`` (for example
``DW_KAFKA_BOOTSTRAP=broker:9092``). Bad values fail at start with a message that
names the variable, never later in the hot path.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "DW_"
_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_TOPIC = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")


# Fields whose values are never printed, logged or stored.
SECRET_FIELDS = frozenset({"pagerduty_routing_key", "web_token"})


class SettingsError(ValueError):
    """Configuration is invalid; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    # --- where things are -----------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]")
    clickhouse_dsn: str = Field(
        "", description="ClickHouse DSN: chdb:///path (embedded) or http(s)://user:pass@host:8123/db; "
        "empty means embedded chDB under DATA_DIR/clickhouse"
    )
    clickhouse_database: str = Field("distillwatch", description="database holding distillwatch's tables")
    data_dir: Path = Field(Path(".distillwatch"), description="local state: embedded ClickHouse, reports")

    # --- topics -----------------------------------------------------------------
    topic_events: str = Field("api-calls", description="input topic, one JSON event per message")
    topic_dlq: str = Field("api-calls-dlq", description="dead-letter topic for rejected input")
    partitions: int = Field(4, ge=1, le=1024, description="partitions for topics distillwatch creates")
    replication_factor: int = Field(1, ge=1, le=16, description="replication for topics distillwatch creates")
    consumer_group: str = Field("distillwatch", description="consumer group (and Faust app id)")
    topic_state: str = Field(
        "", description="compacted topic of checkpointed per-account state; empty means <DW_CONSUMER_GROUP>-state "
        "(distillwatch-state by default), so every group has its own"
    )

    # --- hot path -----------------------------------------------------------------
    batch_max_events: int = Field(50_000, ge=1, le=10_000_000,
                                  description="events per processed batch, at most (a batch container counts "
                                              "its events and is never split)")
    batch_max_wait_s: float = Field(0.5, gt=0, le=60, description="longest wait to fill a batch")
    max_message_bytes: int = Field(
        65_536, ge=1024, le=10_000_000, description="larger input messages are dead-lettered as oversized"
    )
    max_accounts: int = Field(
        1_000_000, ge=16, le=100_000_000, description="per-account state slots held in memory by one worker"
    )
    allowed_lateness_s: int = Field(
        120, ge=0, le=3600, description="how far behind the watermark an event may arrive and still count"
    )
    max_future_skew_s: int = Field(
        86_400, ge=0, description="events stamped further than this ahead of the wall clock are rejected"
    )
    store_raw_events: bool = Field(True, description="keep every valid event in ClickHouse for forensics")
    # Bounds only how much input a crash re-reads (ClickHouse rows are written per batch
    # regardless), like Kafka Streams' commit.interval.ms; a checkpoint of 100k changed
    # accounts costs about a second, so 10 s keeps it a small share of the time (the bench measured
    # 12% of the worker's time at 5 s with 100k accounts changing).
    checkpoint_interval_s: float = Field(
        10.0, ge=0, le=300, description="checkpoint state and commit offsets at most this often (0: every batch)"
    )
    stall_after_s: float = Field(
        60.0, gt=0, le=86_400, description="a partition with messages waiting and no progress for this long "
        "(back-pressure aside) is reported stalled in /stats and fails /health"
    )
    dedup_window: int = Field(
        50_000, ge=0, le=10_000_000, description="an event whose (account_id, ts, event_id) occurred within this "
        "many offsets before it in its partition is a duplicate and counted once; 0 switches this off"
    )
    track_api_keys: bool = Field(
        True, description="also keep frames, windows and scores per API key (an account's only key shares its frames)"
    )

    # --- detection --------------------------------------------------------------
    scoring_config: Path | None = Field(
        None, description="scoring signals and weights file; default pipeline/scoring/scoring.v1.json"
    )
    linking_config: Path | None = Field(
        None, description="cross-account linking weights/thresholds file; default pipeline/linking/linking.v1.json"
    )
    linking: Literal["child", "external", "off"] = Field(
        "child", description="where the cross-account linking stages run: child (a process the worker starts "
        "and restarts), external (a separate `distillwatch link` process; the worker only writes its results) "
        "or off (no linking)"
    )
    alert_score_threshold: float | None = Field(
        None, ge=0, le=100,
        description="override params.threshold of extraction_score_high and of every other account rule with one",
    )

    # --- retention (ClickHouse TTLs, applied at start; 0 keeps rows for ever) -------------
    raw_ttl_days: int = Field(
        30, ge=0, le=36_500, description="days to keep raw rows: api_calls, signatures_1m, key_signatures_1m"
    )
    rollup_ttl_days: int = Field(400, ge=0, le=36_500, description="days to keep the dashboards' rollup tables")

    # --- bounded runs (--bounded) ------------------------------------------------------
    drain_trigger_file: Path | None = Field(
        None, description="with --bounded: process input at once but start the drain (read to the end, close "
        "every frame, exit) only when this file exists; replay starts the worker while it still produces the file"
    )

    # --- on-call: rules, allow-list, notifiers, gateway actions ------------------------
    alert_rules: Path | None = Field(
        None, description="alert rules file (YAML); default pipeline/alerting/rules.v1.yaml"
    )
    allowlist: Path | None = Field(None, description="allow-list file (YAML): accounts, keys, payment fingerprints "
                                   "or ASNs exempt from paging or with a raised threshold")
    grafana_url: str = Field("", description="Grafana base URL, for dashboard links in alert annotations")
    topic_actions: str = Field("api-actions", description="topic of recommended actions for the gateway")
    alertmanager_url: str = Field("", description="Alertmanager base URL (alerts go to its /api/v2/alerts)")
    pagerduty_routing_key: SecretStr = Field(SecretStr(""), description="PagerDuty Events v2 routing key (secret)")
    pagerduty_url: str = Field("https://events.pagerduty.com/v2/enqueue", description="PagerDuty Events v2 endpoint")
    webhook_url: str = Field("", description="generic webhook receiving Alertmanager's webhook JSON")
    feedback_suppress_days: float = Field(
        7.0, gt=0, le=365, description="a false-positive verdict stops paging for that account and rule this long"
    )
    notify_resend_s: float = Field(60.0, gt=0, le=3600, description="re-send firing alerts this often (seconds)")

    # --- worker web server ------------------------------------------------------------
    web_host: str = Field("127.0.0.1", description="bind address of the worker's web views")
    web_port: int = Field(6066, ge=1, le=65535, description="port of the worker's web views (/stats, /query)")
    web_token: SecretStr = Field(SecretStr(""), description="when set, /query and /drain require "
                                 "'Authorization: Bearer <token>' (secret)")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.removeprefix("kafka://").split(",")]
        if not servers or not all(_HOSTPORT.match(s) for s in servers):
            raise ValueError("expected host:port[,host:port], e.g. 127.0.0.1:9092")
        return ",".join(servers)

    @field_validator("clickhouse_dsn")
    @classmethod
    def _check_dsn(cls, value: str) -> str:
        if value and not value.startswith(("chdb://", "http://", "https://", "clickhouse://")):
            raise ValueError("expected chdb:///path, http://host:8123 or https://host:8443")
        return value

    @field_validator("grafana_url", "alertmanager_url", "pagerduty_url", "webhook_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("topic_events", "topic_dlq", "consumer_group", "topic_actions")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        if not _TOPIC.match(value):
            raise ValueError("1-249 characters of letters, digits, '.', '_' or '-'")
        return value

    @field_validator("topic_state")
    @classmethod
    def _check_state_topic(cls, value: str) -> str:
        if value and not _TOPIC.match(value):
            raise ValueError("empty, or 1-249 characters of letters, digits, '.', '_' or '-'")
        return value

    @field_validator("clickhouse_database")
    @classmethod
    def _check_database(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", value):
            raise ValueError("a plain identifier: letters, digits and '_'")
        return value

    @model_validator(mode="after")
    def _check_topics_differ(self) -> Settings:
        if self.topic_events == self.topic_dlq:
            raise ValueError("DW_TOPIC_DLQ must differ from DW_TOPIC_EVENTS")
        if self.state_topic in (self.topic_events, self.topic_dlq):
            raise ValueError("DW_TOPIC_STATE must differ from DW_TOPIC_EVENTS and DW_TOPIC_DLQ")
        return self

    # --- derived values ------------------------------------------------------------
    @cached_property
    def effective_clickhouse_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def state_topic(self) -> str:
        return self.topic_state or f"{self.consumer_group}-state"

    @property
    def bootstrap_servers(self) -> list[str]:
        return self.kafka_bootstrap.split(",")

    @property
    def allowed_lateness_ms(self) -> int:
        return self.allowed_lateness_s * 1000


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment plus explicit overrides.

    Raises SettingsError whose message names each offending ``DW_*`` variable.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as DW_* variables, for a child process (secrets included: environment only, never argv)."""
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue  # unset: the child uses the default, as this process did
        if isinstance(value, SecretStr):
            value = value.get_secret_value()  # str() would hand the child '**********'
        env[f"{ENV_PREFIX}{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def describe_validation_error(exc: ValidationError) -> str:
    lines = ["invalid distillwatch configuration:"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        name = f"{ENV_PREFIX}{field.upper()}" if err["loc"] else "settings"
        value = err.get("input")
        secret = err["loc"] and err["loc"][0] in SECRET_FIELDS  # never echo a secret, even a bad one
        shown = "" if isinstance(value, dict) or secret else f" (got {value!r})"
        lines.append(f"  {name}: {err['msg']}{shown}")
    return "\n".join(lines)

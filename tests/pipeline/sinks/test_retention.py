"""TTLs from DW_RAW_TTL_DAYS / DW_ROLLUP_TTL_DAYS: applied at connect, changed, removed, left alone."""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np
import pytest
from clickhouse_connect.driver.client import Client

from pipeline.settings import Settings, load_settings
from pipeline.sinks.clickhouse import ClickHouseWriter, connect
from pipeline.sinks.retention import apply_ttls, current_ttls, ttl_expression, wanted_ttls
from schemas.migrate import apply_migrations
from schemas.tables import ROLLUPS
from tests.support import rollup_rows

RAW = {"api_calls": "ingested_at", "signatures_1m": "emitted_at", "key_signatures_1m": "emitted_at"}
DAY_MS = 86_400_000


class RecordingClient:
    """The session client, with every ``command`` recorded."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.commands: list[str] = []

    def command(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self.commands.append(sql)
        return self._client.command(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def ttls(client: Client, db: str) -> dict[str, str | None]:
    return current_ttls(client, db, list(wanted_ttls(1, 1)))


def test_wanted_ttls_cover_the_raw_tables_and_every_rollup_only() -> None:
    wanted = wanted_ttls(30, 400)
    assert set(wanted) == set(RAW) | set(ROLLUPS)
    assert {t: wanted[t] for t in RAW} == {t: f"{c} + toIntervalDay(30)" for t, c in RAW.items()}
    assert {wanted[r.name] for r in ROLLUPS.values()} == {"minute + toIntervalDay(400)", "hour + toIntervalDay(400)"}
    assert set(wanted_ttls(0, 0).values()) == {None}
    with pytest.raises(ValueError, match="got -1"):
        ttl_expression("ts", -1)


@pytest.mark.clickhouse
def test_ttls_are_set_and_an_unchanged_setting_issues_no_alter(ch_client: Client, ch_database: str) -> None:
    apply_migrations(ch_client, ch_database)
    assert set(ttls(ch_client, ch_database).values()) == {None}  # migrations set none
    first = apply_ttls(ch_client, ch_database, raw_days=30, rollup_days=400)
    assert len(first) == len(RAW) + len(ROLLUPS)
    assert ttls(ch_client, ch_database) == wanted_ttls(30, 400)

    recording = RecordingClient(ch_client)
    assert apply_ttls(cast(Client, recording), ch_database, raw_days=30, rollup_days=400) == []
    assert not [c for c in recording.commands if "ALTER" in c.upper()]


@pytest.mark.clickhouse
def test_a_changed_setting_is_applied_and_0_removes_the_ttl(ch_client: Client, ch_database: str) -> None:
    apply_migrations(ch_client, ch_database)
    apply_ttls(ch_client, ch_database, raw_days=30, rollup_days=400)
    changed = apply_ttls(ch_client, ch_database, raw_days=7, rollup_days=0)
    assert sorted(changed) == sorted(
        [f"ALTER TABLE `{ch_database}`.`{t}` MODIFY TTL {c} + toIntervalDay(7)" for t, c in RAW.items()]
        + [f"ALTER TABLE `{ch_database}`.`{r}` REMOVE TTL" for r in ROLLUPS])
    assert ttls(ch_client, ch_database) == wanted_ttls(7, 0)
    engine = ch_client.command(f"SELECT engine_full FROM system.tables WHERE database = '{ch_database}' "
                               "AND name = 'traffic_1m'")
    assert " TTL " not in str(engine)
    assert apply_ttls(ch_client, ch_database, raw_days=0, rollup_days=0) == [
        f"ALTER TABLE `{ch_database}`.`{t}` REMOVE TTL" for t in RAW]


@pytest.mark.clickhouse
def test_the_worker_s_connect_applies_the_settings_other_commands_leave_them(
        ch_client: Client, ch_settings: Settings, ch_database: str) -> None:
    settings = load_settings(data_dir=ch_settings.data_dir, clickhouse_dsn=ch_settings.clickhouse_dsn,
                             clickhouse_database=ch_database, raw_ttl_days=3, rollup_ttl_days=90)
    try:
        assert connect(settings) is ch_client  # the session's cached client, now migrated in ch_database
        assert set(ttls(ch_client, ch_database).values()) == {None}
        connect(settings, apply_retention=True)  # what the worker and `distillwatch migrate` do
        assert ttls(ch_client, ch_database) == wanted_ttls(3, 90)
        connect(load_settings(data_dir=ch_settings.data_dir, clickhouse_dsn=ch_settings.clickhouse_dsn,
                              clickhouse_database=ch_database))  # e.g. `distillwatch report`, defaults
        assert ttls(ch_client, ch_database) == wanted_ttls(3, 90)
    finally:
        ch_client.database = ch_settings.clickhouse_database  # connect() pointed it at ch_database


@pytest.mark.clickhouse
def test_raw_rows_expire_by_write_time_and_rollups_by_event_time(ch_client: Client, ch_database: str) -> None:
    apply_migrations(ch_client, ch_database)
    apply_ttls(ch_client, ch_database, raw_days=30, rollup_days=400)
    now_ms = int(time.time() * 1000)
    batch = rollup_rows.api_calls(200, seed=21)
    # Half the events are 500 days old (a replay of an old capture), half 10 days old.
    batch["ts"] = np.where(np.arange(200) % 2 == 0, now_ms - 500 * DAY_MS, now_ms - 10 * DAY_MS).astype(np.int64)
    ClickHouseWriter(ch_client, ch_database).write("api_calls", batch)
    # A row written 31 days ago: what the raw TTL is for.
    ch_client.command(f"INSERT INTO `{ch_database}`.api_calls (event_id, ts, account_id, ingested_at) "
                      f"VALUES ('stale', now64(3) - INTERVAL 500 DAY, 'acct-x', now64(3) - INTERVAL 31 DAY)")
    for table in ("api_calls", "traffic_1m"):
        ch_client.command(f"OPTIMIZE TABLE `{ch_database}`.`{table}` FINAL")  # TTLs apply at merges
    kept = ch_client.query(f"SELECT event_id FROM `{ch_database}`.api_calls").result_rows
    assert sorted(e for (e,) in kept) == sorted(batch["event_id"])  # old events kept, the stale write gone
    recent = ch_client.query(f"SELECT sum(calls), min(minute) >= now() - INTERVAL 11 DAY "
                             f"FROM `{ch_database}`.traffic_1m").result_rows
    assert recent == [(100, 1)]  # the 500-day-old minutes left the rollup

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import cast

import pytest
from clickhouse_connect.driver.client import Client

from schemas.migrate import MIGRATIONS_TABLE, applied_versions, apply_migrations, rollback
from schemas.migrations import Migration, MigrationError, discover, m0001_initial, validate
from schemas.tables import TABLES, TableSpec

INITIAL_TABLES = {"api_calls", "signatures_1m", "key_signatures_1m", "alerts", "rejected_events"}


def _migration(version: int, module_number: int | None = None) -> Migration:
    number = version if module_number is None else module_number
    module = f"pkg.m{number:04d}_step{version}"
    return Migration(version, f"step{version}", module, lambda db: [], lambda db: [])


def _tables(client: Client, database: str) -> set[str]:
    sql = "SELECT name FROM system.tables WHERE database = {db:String}"
    rows = client.query(sql, parameters={"db": database})
    return {r[0] for r in rows.result_rows}


# --- discovery and numbering (no ClickHouse) ---------------------------------------------


def test_discover_finds_contiguous_migrations_starting_with_initial() -> None:
    migrations = discover()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "initial"
    assert migrations[0].module == "schemas.migrations.m0001_initial"


def test_validate_sorts_by_version() -> None:
    assert [m.version for m in validate([_migration(2), _migration(1), _migration(3)])] == [1, 2, 3]


def test_validate_rejects_a_gap() -> None:
    with pytest.raises(MigrationError, match="version 2 is missing"):
        validate([_migration(1), _migration(3)])


def test_validate_rejects_numbering_not_starting_at_one() -> None:
    with pytest.raises(MigrationError, match="version 1 is missing"):
        validate([_migration(2)])


def test_validate_rejects_version_differing_from_file_number() -> None:
    with pytest.raises(MigrationError, match="VERSION = 2 but the file is numbered 3"):
        validate([_migration(1), _migration(2, module_number=3)])


def test_validate_rejects_duplicate_version() -> None:
    with pytest.raises(MigrationError, match="defined twice"):
        validate([_migration(1), _migration(1)])


def _write_package(root: Path, name: str, modules: dict[str, str]) -> None:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for module, body in modules.items():
        (pkg / f"{module}.py").write_text(textwrap.dedent(body))


_MODULE = """
VERSION = {version}
NAME = "step"
def forwards(database): return []
def backwards(database): return []
"""


def test_discover_catches_a_gap_in_a_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_package(tmp_path, "gappy_migrations", {
        "m0001_a": _MODULE.format(version=1), "m0003_c": _MODULE.format(version=3),
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MigrationError, match=r"version 2 is missing before gappy_migrations\.m0003_c"):
        discover("gappy_migrations")


def test_discover_catches_misnamed_and_incomplete_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_package(tmp_path, "misnamed_migrations", {"m001_a": _MODULE.format(version=1)})
    _write_package(tmp_path, "incomplete_migrations", {"m0001_a": "VERSION = 1\nNAME = 'a'\n"})
    _write_package(tmp_path, "ok_migrations", {
        "m0001_a": _MODULE.format(version=1), "m0002_b": _MODULE.format(version=2), "_helpers": "",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MigrationError, match="must be named mNNNN_<name>"):
        discover("misnamed_migrations")
    with pytest.raises(MigrationError, match="forwards"):
        discover("incomplete_migrations")
    assert [m.version for m in discover("ok_migrations")] == [1, 2]


def test_initial_ddl_is_generated_from_table_specs() -> None:
    statements = m0001_initial.forwards("db")
    assert len(statements) == len(INITIAL_TABLES)
    for statement in statements:
        assert statement.startswith("CREATE TABLE IF NOT EXISTS `db`.")
        assert "SETTINGS non_replicated_deduplication_window = 1000" in statement
    api_calls = next(s for s in statements if "`api_calls`" in s)
    for name, ch_type in TABLES["api_calls"].columns:
        assert f"`{name}` {ch_type}," in api_calls
    assert all(s.endswith(" SYNC") and "IF EXISTS" in s for s in m0001_initial.backwards("db"))


def test_no_prompt_text_column() -> None:
    assert not any("prompt_text" in spec.column_names for spec in TABLES.values())


# --- against ClickHouse --------------------------------------------------------------


@pytest.mark.clickhouse
def test_apply_creates_tables_and_is_idempotent(ch_client: Client, ch_database: str) -> None:
    latest = discover()[-1].version
    assert apply_migrations(ch_client, ch_database) == list(range(1, latest + 1))
    assert _tables(ch_client, ch_database) >= INITIAL_TABLES | {MIGRATIONS_TABLE}
    assert applied_versions(ch_client, ch_database) == list(range(1, latest + 1))

    assert apply_migrations(ch_client, ch_database) == []
    rows = ch_client.query(f"SELECT version, name FROM `{ch_database}`.`{MIGRATIONS_TABLE}` ORDER BY version")
    assert rows.result_rows[0] == (1, "initial")
    assert len(rows.result_rows) == latest


@pytest.mark.clickhouse
@pytest.mark.parametrize("spec", list(TABLES.values()), ids=list(TABLES))
def test_live_schema_matches_table_specs(ch_client: Client, ch_database: str, spec: TableSpec) -> None:
    apply_migrations(ch_client, ch_database)
    rows = ch_client.query(
        "SELECT name, type, default_kind, default_expression FROM system.columns "
        "WHERE database = {db:String} AND table = {t:String} ORDER BY position",
        parameters={"db": ch_database, "t": spec.name},
    ).result_rows
    assert [(n, t) for n, t, kind, _ in rows if kind == ""] == list(spec.columns)
    assert [(n, t, e) for n, t, kind, e in rows if kind == "DEFAULT"] == list(spec.server_defaults)
    engine = ch_client.command(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": ch_database, "t": spec.name},
    )
    assert str(engine).startswith(spec.engine)
    assert "non_replicated_deduplication_window = 1000" in str(engine)


@pytest.mark.clickhouse
def test_rerun_after_crash_midway_finishes_the_migration(ch_client: Client, ch_database: str) -> None:
    # Simulate a run that died after creating some tables but before recording the version.
    ch_client.command(f"CREATE DATABASE `{ch_database}`")
    for statement in m0001_initial.forwards(ch_database)[:2]:
        ch_client.command(statement)
    assert apply_migrations(ch_client, ch_database)[0] == 1
    assert _tables(ch_client, ch_database) >= INITIAL_TABLES


@pytest.mark.clickhouse
def test_rollback_removes_tables_and_record_then_reapplies(ch_client: Client, ch_database: str) -> None:
    applied = apply_migrations(ch_client, ch_database)
    assert rollback(ch_client, ch_database, 0) == sorted(applied, reverse=True)
    assert _tables(ch_client, ch_database) == {MIGRATIONS_TABLE}
    assert applied_versions(ch_client, ch_database) == []
    assert rollback(ch_client, ch_database, 0) == []
    assert apply_migrations(ch_client, ch_database) == applied


@pytest.mark.clickhouse
def test_later_migration_applies_after_and_rolls_back_alone(ch_client: Client, ch_database: str) -> None:
    def forwards(db: str) -> list[str]:
        return [f"CREATE TABLE IF NOT EXISTS `{db}`.extra (x UInt8) ENGINE = MergeTree ORDER BY x"]

    def backwards(db: str) -> list[str]:
        return [f"DROP TABLE IF EXISTS `{db}`.extra SYNC"]

    base = discover()
    nxt = len(base) + 1
    extra = Migration(nxt, "extra", f"fake.m{nxt:04d}_extra", forwards, backwards)
    assert apply_migrations(ch_client, ch_database, migrations=base) == [m.version for m in base]
    assert apply_migrations(ch_client, ch_database, migrations=[*base, extra]) == [nxt]
    assert "extra" in _tables(ch_client, ch_database)

    assert rollback(ch_client, ch_database, nxt - 1, migrations=[*base, extra]) == [nxt]
    assert "extra" not in _tables(ch_client, ch_database)
    assert _tables(ch_client, ch_database) >= INITIAL_TABLES
    assert applied_versions(ch_client, ch_database) == [m.version for m in base]


@pytest.mark.clickhouse
def test_database_migrated_by_newer_code_is_refused(ch_client: Client, ch_database: str) -> None:
    apply_migrations(ch_client, ch_database)
    ch_client.command(f"INSERT INTO `{ch_database}`.`{MIGRATIONS_TABLE}` VALUES (99, 'future', now64(3))")
    with pytest.raises(MigrationError, match=r"\[99\]"):
        apply_migrations(ch_client, ch_database)
    with pytest.raises(MigrationError, match=r"\[99\]"):
        rollback(ch_client, ch_database, 0)


class _NoCalls:
    """A client stand-in that fails the test if anything is sent to ClickHouse."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"client.{name} used before the arguments were checked")


def test_bad_arguments_raise_value_error_before_any_statement() -> None:
    client = cast(Client, _NoCalls())
    with pytest.raises(ValueError, match="plain identifier"):
        apply_migrations(client, "bad-name`; DROP")
    with pytest.raises(ValueError, match="to_version"):
        rollback(client, "dw_any", -1)

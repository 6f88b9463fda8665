"""Apply and roll back the schema migrations in ``schemas.migrations`` against one database.

Applied versions are recorded in ``{database}.schema_migrations``. A migration's
row is written only after all its statements ran, and every statement is
idempotent, so a run that died midway is finished by simply running again.
Two processes migrating at once is harmless for the same reason (the table
collapses duplicate rows per version).

Errors from the ClickHouse client propagate unchanged; MigrationError means the
code and the database disagree about which migrations exist.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from schemas.migrations import Migration, MigrationError, discover

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

MIGRATIONS_TABLE = "schema_migrations"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def apply_migrations(
    client: Client, database: str, *, migrations: Sequence[Migration] | None = None
) -> list[int]:
    """Create ``database`` if missing and apply pending migrations in order.

    Returns the versions applied by this call (empty when up to date).
    ``migrations`` defaults to everything in ``schemas.migrations``.
    Raises ValueError for a database name that is not a plain identifier and
    MigrationError if the database has versions this code does not know
    (it was migrated by newer code).
    """
    _check_identifier(database)
    known = list(migrations) if migrations is not None else discover()
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.command(
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{MIGRATIONS_TABLE}`\n"
        "(version UInt32, name String, applied_at DateTime64(3))\n"
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    applied = set(applied_versions(client, database))
    _check_known(applied, known, database)
    done = []
    for migration in sorted(known, key=lambda m: m.version):
        if migration.version in applied:
            continue
        for statement in migration.forwards(database):
            client.command(statement)
        client.command(
            f"INSERT INTO `{database}`.`{MIGRATIONS_TABLE}` (version, name, applied_at) "
            "VALUES ({version:UInt32}, {name:String}, now64(3))",
            parameters={"version": migration.version, "name": migration.name},
        )
        done.append(migration.version)
    return done


def rollback(
    client: Client, database: str, to_version: int, *, migrations: Sequence[Migration] | None = None
) -> list[int]:
    """Undo applied migrations newer than ``to_version``, newest first (0 undoes all).

    Returns the versions rolled back. Raises ValueError for a negative
    ``to_version`` or a bad database name, MigrationError if an applied version
    has no migration module to undo it with.
    """
    _check_identifier(database)
    if to_version < 0:
        raise ValueError(f"to_version must be >= 0, got {to_version}")
    known = list(migrations) if migrations is not None else discover()
    applied = applied_versions(client, database)
    _check_known(set(applied), known, database)
    by_version = {m.version: m for m in known}
    undone = []
    for version in sorted((v for v in applied if v > to_version), reverse=True):
        for statement in by_version[version].backwards(database):
            client.command(statement)
        # The row goes last: a crash before it leaves the version applied, so the undo is repeated.
        client.command(
            f"DELETE FROM `{database}`.`{MIGRATIONS_TABLE}` WHERE version = {{version:UInt32}}",
            parameters={"version": version},
        )
        undone.append(version)
    return undone


def applied_versions(client: Client, database: str) -> list[int]:
    """Versions recorded as applied in ``database``, ascending; empty if it was never migrated."""
    _check_identifier(database)
    exists = client.command(f"EXISTS TABLE `{database}`.`{MIGRATIONS_TABLE}`")
    if exists != 1:  # EXISTS answers 0 also when the database itself is missing
        return []
    result = client.query(f"SELECT DISTINCT version FROM `{database}`.`{MIGRATIONS_TABLE}` ORDER BY version")
    return [int(row[0]) for row in result.result_rows]


def _check_known(applied: set[int], known: Sequence[Migration], database: str) -> None:
    unknown = sorted(applied - {m.version for m in known})
    if unknown:
        raise MigrationError(
            f"database {database!r} has migration versions {unknown} that this code does not define; "
            "it was migrated by a newer distillwatch"
        )


def _check_identifier(database: str) -> None:
    if not _IDENTIFIER.match(database):
        raise ValueError(f"database name must be a plain identifier (letters, digits, '_'), got {database!r}")

"""``--clickhouse`` / ``--data-dir`` for commands that read distillwatch's ClickHouse (alerts, backtest).

Embedded chDB (the default, under DATA_DIR/clickhouse) works while no worker holds the
directory; a server DSN always works. These commands read: a chDB directory that does not exist
is an error naming it (opening it would create an empty database). Settings and connection
errors become click errors.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from clickhouse_connect.driver.client import Client

from pipeline.settings import Settings, SettingsError, load_settings


def data_source(settings: Settings) -> str:
    """Where the data is read from, for messages: the chDB directory or the DSN (password masked)."""
    from pipeline.sinks.clickhouse import _chdb_path, mask_dsn

    path = _chdb_path(settings.effective_clickhouse_dsn)
    return str(path) if path is not None else mask_dsn(settings.effective_clickhouse_dsn)

F = TypeVar("F", bound=Callable[..., Any])


def clickhouse_options(func: F) -> F:
    func = click.option("--data-dir", type=click.Path(path_type=Path), help="local state (DW_DATA_DIR)")(func)
    return click.option("--clickhouse", help="ClickHouse DSN (DW_CLICKHOUSE_DSN)")(func)  # type: ignore[return-value]


def open_clickhouse(clickhouse: str | None, data_dir: Path | None) -> tuple[Client, Settings]:
    """The migrated client and the settings it came from; raises click.ClickException on bad input."""
    from pipeline.sinks.clickhouse import ClickHouseError, _chdb_path, connect
    from schemas.migrations import MigrationError

    overrides = {k: v for k, v in {"clickhouse_dsn": clickhouse, "data_dir": data_dir}.items() if v is not None}
    try:
        settings = load_settings(**overrides)
        path = _chdb_path(settings.effective_clickhouse_dsn)
        if path is not None and not path.is_dir():
            raise click.ClickException(
                f"no distillwatch data at {path} (embedded ClickHouse of data dir {settings.data_dir}): "
                "pass --data-dir DIR (the demo's is .distillwatch/demo) or --clickhouse DSN")
        return connect(settings), settings
    except (SettingsError, ClickHouseError, MigrationError) as exc:
        raise click.ClickException(str(exc)) from None

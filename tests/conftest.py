"""Shared fixtures.

chDB opens one data directory per process, so the whole test session shares one
embedded ClickHouse (``ch_client``); tests isolate themselves by database name
(``ch_database``), never by directory.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.settings import Settings, load_settings
from pipeline.sinks.clickhouse import close, connect


@pytest.fixture(scope="session")
def ch_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir = tmp_path_factory.mktemp("distillwatch")
    dsn = f"chdb://{data_dir / 'clickhouse'}"
    return load_settings(data_dir=data_dir, clickhouse_dsn=dsn, clickhouse_database="dw_session")


@pytest.fixture(scope="session")
def ch_client(ch_settings: Settings) -> Iterator[Client]:
    """The session's embedded ClickHouse client (schema migrated in ``ch_settings.clickhouse_database``)."""
    yield connect(ch_settings)
    close(ch_settings.effective_clickhouse_dsn)


@pytest.fixture
def ch_database(ch_client: Client) -> Iterator[str]:
    """A fresh, empty (not migrated) database name, dropped after the test."""
    name = f"dw_test_{uuid.uuid4().hex[:12]}"
    yield name
    ch_client.command(f"DROP DATABASE IF EXISTS `{name}` SYNC")

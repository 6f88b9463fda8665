"""Shared fixtures.

chDB opens one data directory per process, so the whole test session shares one
embedded ClickHouse (``ch_client``); tests isolate themselves by database name
(``ch_database``), never by directory.

The broker: embedded Tansu by default; ``DW_TEST_BROKER=apache`` runs every test
that starts a broker against a single-node Apache Kafka instead (``make test-kafka``,
jars from ``make kafka-jars``). Tests marked ``apache_kafka`` need a broker that
keeps its data across a restart and are skipped on Tansu.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

import jobs.embedded_broker
from jobs.apache_kafka import ApacheKafkaBroker, KafkaNotInstalled, check_installed
from jobs.embedded_broker import EmbeddedBroker
from pipeline.settings import Settings, load_settings
from pipeline.sinks.clickhouse import close, connect
from tests.support.demo_data import DemoData, DemoRun, export_tables, load_tables, run_demo

TEST_BROKER = os.environ.get("DW_TEST_BROKER", "tansu").strip().lower() or "tansu"
BROKERS = ("tansu", "apache")
DEMO_DATABASE = "dw_demo"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "apache_kafka: needs Apache Kafka (DW_TEST_BROKER=apache); skipped on Tansu")
    if TEST_BROKER not in BROKERS:
        raise pytest.UsageError(f"DW_TEST_BROKER={TEST_BROKER!r}: expected one of {', '.join(BROKERS)}")
    if TEST_BROKER == "apache":
        try:
            check_installed()
        except KafkaNotInstalled as exc:
            raise pytest.UsageError(f"DW_TEST_BROKER=apache: {exc}") from None
        # Broker tests construct jobs.embedded_broker.EmbeddedBroker themselves (module fixtures, and some
        # stop it mid-test); test modules import it after this hook, so they all get Apache Kafka, each
        # instance its own broker and data directory, exactly as each had its own Tansu.
        jobs.embedded_broker.EmbeddedBroker = ApacheKafkaBroker  # type: ignore[misc, assignment]


def pytest_report_header(config: pytest.Config) -> str:
    return f"kafka broker: {TEST_BROKER} (DW_TEST_BROKER)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TEST_BROKER == "apache":
        # `distillwatch demo` starts its own Tansu whatever DW_TEST_BROKER says: on the Apache Kafka tier
        # the demo run's readers would only repeat `make test`.
        demo = [item for item in items if "demo_run" in item.fixturenames]
        if demo:
            config.hook.pytest_deselected(items=demo)
            items[:] = [item for item in items if "demo_run" not in item.fixturenames]
        return
    skip = pytest.mark.skip(reason=f"needs Apache Kafka (DW_TEST_BROKER=apache, `make test-kafka`); the {TEST_BROKER} "
                                   "broker keeps topics in memory, so a broker restart loses them")
    for item in items:
        if item.get_closest_marker("apache_kafka"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[EmbeddedBroker | ApacheKafkaBroker]:
    """The session's shared broker (DW_TEST_BROKER selects which); never stop or restart it in a test."""
    broker = ApacheKafkaBroker() if TEST_BROKER == "apache" else EmbeddedBroker()
    with broker:
        yield broker


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


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One real ``distillwatch demo`` run for the session (subprocess, its own broker and chDB)."""
    return run_demo(tmp_path_factory.mktemp("demo") / "data")


@pytest.fixture(scope="session")
def demo_db(demo_run: DemoRun, ch_client: Client, tmp_path_factory: pytest.TempPathFactory) -> DemoData:
    """The demo run's tables in database ``dw_demo`` of the session's ClickHouse, rollups filled by their views.

    Read-only for tests: every test that needs a demo run's data shares it.
    """
    if demo_run.returncode != 0:
        pytest.fail(f"the demo run failed (status {demo_run.returncode}):\n{demo_run.stdout[-2000:]}"
                    f"\n{demo_run.stderr[-2000:]}")
    exported = tmp_path_factory.mktemp("demo-export")
    export_tables(demo_run.data_dir, exported)
    ch_client.command(f"DROP DATABASE IF EXISTS `{DEMO_DATABASE}` SYNC")
    load_tables(ch_client, DEMO_DATABASE, exported)
    return DemoData(ch_client, DEMO_DATABASE, demo_run)

"""Investigations of the session's demo run (``demo_db``): one attacking account, the hydra fleet's cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from jobs.investigate.collect import investigate
from jobs.investigate.result import Investigation
from tests.support.demo_data import DemoData


@pytest.fixture(scope="session")
def attacker(demo_db: DemoData) -> str:
    """The busiest attacking account with an account-rule alert (not only a cluster alert)."""
    rows = demo_db.client.query(
        f"SELECT a.account_id, count() AS calls FROM `{demo_db.database}`.api_calls AS a "
        f"WHERE a.account_id IN (SELECT account_id FROM `{demo_db.database}`.alerts "
        "WHERE rule != 'cluster_extraction') AND a.account_id IN {attackers:Array(String)} "
        "GROUP BY a.account_id ORDER BY calls DESC LIMIT 1",
        parameters={"attackers": demo_db.attackers()}).result_rows
    assert rows, "the demo run has no attacker with an account alert"
    return str(rows[0][0])


@pytest.fixture(scope="session")
def hydra_cluster(demo_db: DemoData) -> str:
    """The active cluster holding the most hydra_fleet members."""
    hydra = [a for a, lab in demo_db.accounts.items() if lab["archetype"] == "hydra_fleet"]
    rows = demo_db.client.query(
        f"SELECT cluster_id FROM `{demo_db.database}`.clusters FINAL WHERE active = 1 "
        "ORDER BY length(arrayIntersect(account_ids, {hydra:Array(String)})) DESC, score DESC LIMIT 1",
        parameters={"hydra": hydra}).result_rows
    assert rows, "the demo run formed no cluster"
    return str(rows[0][0])


@pytest.fixture(scope="session")
def account_inv(demo_db: DemoData, attacker: str) -> Investigation:
    return investigate(demo_db.client, demo_db.database, attacker)


@pytest.fixture(scope="session")
def cluster_inv(demo_db: DemoData, hydra_cluster: str) -> Investigation:
    return investigate(demo_db.client, demo_db.database, hydra_cluster)


@pytest.fixture
def restore_default_database(ch_client: Client) -> Iterator[None]:
    """CLI runs in this process share the session client and point its default database elsewhere."""
    before = ch_client.database
    yield
    ch_client.database = before

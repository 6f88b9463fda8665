"""After a worker restart the results consumer's account -> cluster map starts from ClickHouse's clusters."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.linking.results import LinkResult, encode_result
from pipeline.linking.results_consumer import ResultsConsumer, current_clusters, results_group
from pipeline.linking.sink import ClickHouseClusterSink
from pipeline.sinks.clickhouse import ClickHouseUnavailable, ClickHouseWriter
from schemas.migrate import apply_migrations
from tests.support.link_results import rows


def consumer(sink: object, seed: object) -> ResultsConsumer:
    return ResultsConsumer(["127.0.0.1:9"], "t-link-results", results_group("t"), sink,  # type: ignore[arg-type]
                           source_id=None, seed=seed)  # type: ignore[arg-type]


@pytest.mark.clickhouse
def test_the_map_starts_from_the_active_clusters_and_results_apply_on_top(ch_client: Client,
                                                                          ch_database: str) -> None:
    apply_migrations(ch_client, ch_database)
    sink = ClickHouseClusterSink(ClickHouseWriter(ch_client, ch_database))
    written = rows(4)  # c1 and c3 active (20 accounts each), c0 and c2 not
    sink.write(written, None)
    retired = rows(2)  # a newer version of c1: no longer active
    retired.active[1], retired.version[1] = 0, written.version[1] + 10
    sink.write(retired, None)

    def seed() -> Mapping[str, str]:
        return current_clusters(ch_client, ch_database)

    c = consumer(sink, seed)

    async def restart() -> None:
        await c.seed_cluster_of()
        await c.apply(encode_result(LinkResult(cluster_of={"acct-3-0": "", "acct-3-1": "c9", "new": "c9"})))

    asyncio.run(restart())
    expected = {f"acct-3-{j}": "c3" for j in range(2, 20)} | {"acct-3-1": "c9", "new": "c9"}
    assert c.cluster_of == expected


def test_a_seed_that_fails_leaves_the_map_to_the_results() -> None:
    def seed() -> Mapping[str, str]:
        raise ClickHouseUnavailable("down")

    c = consumer(object(), seed)

    async def restart() -> None:
        await c.seed_cluster_of()
        await c.apply(encode_result(LinkResult(cluster_of={"a": "c1"})))

    asyncio.run(restart())
    assert c.cluster_of == {"a": "c1"}

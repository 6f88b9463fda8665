"""Stage B's writes: ``clusters`` rows and ``cluster_extraction`` alerts into ClickHouse.

``ClusterSink.write`` is synchronous (run it in a worker thread) and raises what
``ClickHouseWriter.write`` raises. Both inserts carry a content token, so a retry
of the same rows stores nothing twice; ``clusters`` is a ReplacingMergeTree on
``cluster_id`` by ``version`` and ``alerts`` one on (account, rule, fired_ts).
``write_with_retry`` holds the rows while ClickHouse is unavailable (back-off),
like the detect step: stage B then stops consuming and its input waits in Kafka.
Cluster alert transitions go to the outbox last (``Outbox.add``: pending rows, re-adds
skipped), so a retried write never notifies twice and never waits for a receiver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from pipeline.alerting.alert_rows import AlertRows
from pipeline.alerting.outbox import Outbox
from pipeline.alerting.transitions import AlertTransition
from pipeline.linking.cluster_outputs import ClusterRows
from pipeline.retry import retry
from pipeline.sinks.batch_outputs import alert_columns, content_token
from pipeline.sinks.clickhouse import ClickHouseRejected, ClickHouseUnavailable, ClickHouseWriter

log = logging.getLogger(__name__)

CLUSTERS_TABLE = "clusters"


class ClusterSink(Protocol):
    def write(self, rows: ClusterRows, alerts: AlertRows | None,
              transitions: Sequence[AlertTransition] = ()) -> None: ...


class ClickHouseClusterSink:
    def __init__(self, writer: ClickHouseWriter, outbox: Outbox | None = None) -> None:
        self.writer = writer
        self.outbox = outbox

    def write(self, rows: ClusterRows, alerts: AlertRows | None,
              transitions: Sequence[AlertTransition] = ()) -> None:
        if len(rows):
            self.writer.write(CLUSTERS_TABLE, rows.columns(), dedup_token=content_token(  # type: ignore[arg-type]
                "cluster", rows.cluster_id, np.array(rows.version, np.int64)))
        if alerts is not None and len(alerts):
            self.writer.write("alerts", alert_columns(alerts),  # type: ignore[arg-type]
                              dedup_token=content_token("calert", alerts.alert_id, alerts.fired_ts_ms))
        if transitions and self.outbox is not None:
            self.outbox.add(transitions)


async def write_with_retry(sink: ClusterSink, rows: ClusterRows, alerts: AlertRows | None,
                           transitions: Sequence[AlertTransition] = ()) -> bool:
    """Write, retrying with back-off while ClickHouse is unavailable; False if ClickHouse refused the rows.

    Refused rows (a bug, not a passing condition) are logged and dropped: the next
    change of those clusters writes them again, and the stage keeps running.
    """
    if not len(rows) and (alerts is None or not len(alerts)) and not transitions:
        return True
    try:
        # Sinks written before the outbox take (rows, alerts) only; they get no transitions.
        await retry(lambda: asyncio.to_thread(sink.write, rows, alerts, *((transitions,) if transitions else ())),
                    ClickHouseUnavailable, "ClickHouse unavailable for cluster rows")
        return True
    except ClickHouseRejected:
        log.exception("ClickHouse refused %d cluster rows / %d alerts; dropped", len(rows),
                      0 if alerts is None else len(alerts))
        return False

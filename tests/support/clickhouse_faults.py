"""ClickHouse "down" or "slow" on demand, for the fault-injection tests' workers (``tests.support.fault_worker``).

* ``DW_FAULT_CLICKHOUSE_DOWN_FILE=/path``: while that file exists, every write
  raises ``ClickHouseUnavailable`` before reaching ClickHouse, exactly as a
  refused connection would; remove the file and writes go through again.
* ``DW_FAULT_CLICKHOUSE_SLOW_FILE=/path``: while that file exists, every write
  first waits the number of seconds written in it.

Environment variables read once at start by the test entry point, never by the
production worker: ``install`` replaces the ``ClickHouseWriter`` that ``pipeline.app``
builds the worker's writer with, before the worker starts (the worker has no hook for it).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client

import pipeline.app
from pipeline.sinks.clickhouse import ClickHouseUnavailable, ClickHouseWriter

FAULT_CLICKHOUSE_DOWN_FILE = "DW_FAULT_CLICKHOUSE_DOWN_FILE"
FAULT_CLICKHOUSE_SLOW_FILE = "DW_FAULT_CLICKHOUSE_SLOW_FILE"
FAULT_HOOKS = (FAULT_CLICKHOUSE_DOWN_FILE, FAULT_CLICKHOUSE_SLOW_FILE)


class FaultInjectingWriter(ClickHouseWriter):
    """A ClickHouseWriter that fails while ``down_file`` exists and waits while ``slow_file`` does."""

    def __init__(self, client: Client, database: str, down_file: Path | None, slow_file: Path | None) -> None:
        super().__init__(client, database)
        self.down_file = down_file
        self.slow_file = slow_file

    def write(
        self, table: str, columns: Mapping[str, np.ndarray | Sequence[Any]], dedup_token: str | None = None
    ) -> int:
        if self.down_file is not None and self.down_file.exists():
            raise ClickHouseUnavailable(f"ClickHouse down (fault injected: {self.down_file} exists)", table=table)
        if self.slow_file is not None:
            with contextlib.suppress(OSError, ValueError):  # no file (or no number): not slow
                time.sleep(float(self.slow_file.read_text() or 0))  # runs in a worker thread
        return super().write(table, columns, dedup_token)


def make_writer(client: Client, database: str) -> ClickHouseWriter:
    """Fault-injecting writer driven by the hooks' variables (plain behaviour while their files are absent)."""
    down, slow = os.environ.get(FAULT_CLICKHOUSE_DOWN_FILE), os.environ.get(FAULT_CLICKHOUSE_SLOW_FILE)
    return FaultInjectingWriter(client, database, Path(down) if down else None, Path(slow) if slow else None)


def install() -> None:
    """Make every worker this process builds write through ``make_writer``."""
    # The name the worker builds its writer with: if app.py stops importing it, fail here, not silently.
    if pipeline.app.ClickHouseWriter is not ClickHouseWriter:
        raise RuntimeError("pipeline.app no longer builds the worker's writer from ClickHouseWriter")
    pipeline.app.ClickHouseWriter = make_writer  # type: ignore[misc,assignment]

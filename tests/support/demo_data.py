"""A real ``distillwatch demo`` run, loaded into the test session's embedded ClickHouse.

The demo runs once per test session in a subprocess (its own broker, worker and chDB
directory). Its base tables (``schemas.tables.TABLES``) are then exported to Parquet by
another subprocess, since chDB opens one data directory per process, and inserted into a
fresh, fully migrated database of the session's ClickHouse. The rollup tables are not
copied: their materialized views fill them from those inserts, as in production.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

from jobs.demo import LABELS_FILE
from schemas.migrate import apply_migrations

REPO = Path(__file__).resolve().parents[2]
# Short, so the session pays about a minute and a half, yet every archetype, a linked
# fleet and alerts are in it (tests/integration/test_demo.py checks that on this same run).
DEMO_ARGS = ("--duration", "15", "--speedup", "80")
DEMO_TIMEOUT_S = 600
# The base tables a demo run fills (the rollups are filled from them by their views).
BASE_TABLES = ("api_calls", "signatures_1m", "key_signatures_1m", "alerts", "clusters", "rejected_events")


@dataclass(frozen=True)
class DemoRun:
    data_dir: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def labels(self) -> dict[str, dict[str, object]]:
        """Ground truth per account: archetype, is_attack, fleet_id."""
        return json.loads((self.data_dir / LABELS_FILE).read_text())


@dataclass(frozen=True)
class DemoData:
    client: Client
    database: str
    run: DemoRun

    @property
    def accounts(self) -> dict[str, dict[str, object]]:
        return self.run.labels

    def attackers(self) -> list[str]:
        return sorted(a for a, lab in self.accounts.items() if lab["is_attack"])

    def benign(self) -> list[str]:
        return sorted(a for a, lab in self.accounts.items() if not lab["is_attack"])

    def copy_into(self, database: str) -> None:
        """``database`` (fresh) migrated and filled with the run's base tables, its rollups refilled by their
        views; the run's own database is never written."""
        apply_migrations(self.client, database)
        for table in BASE_TABLES:
            self.client.command(f"INSERT INTO `{database}`.{table} SELECT * FROM `{self.database}`.{table}")


def run_demo(data_dir: Path) -> DemoRun:
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "demo", *DEMO_ARGS, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=DEMO_TIMEOUT_S, check=False, cwd=REPO,
    )
    return DemoRun(data_dir, done.returncode, done.stdout, done.stderr)


def export_tables(data_dir: Path, out_dir: Path) -> list[str]:
    """Write each base table of the run in ``data_dir`` to ``out_dir/<table>.parquet`` (in a subprocess)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.export_tables", str(data_dir), str(out_dir)],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
    )
    if done.returncode != 0:
        raise RuntimeError(f"exporting the demo's tables failed:\n{done.stderr[-3000:]}")
    return sorted(p.stem for p in out_dir.glob("*.parquet"))


def load_tables(client: Client, database: str, parquet_dir: Path) -> dict[str, int]:
    """Migrate ``database`` and insert every exported table into it; returns rows per table."""
    apply_migrations(client, database)
    loaded = {}
    for path in sorted(parquet_dir.glob("*.parquet")):
        table = pq.read_table(path)
        if table.num_rows:
            client.insert_arrow(path.stem, table, database=database)
        loaded[path.stem] = table.num_rows
    return loaded

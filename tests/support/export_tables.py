"""``python -m tests.support.export_tables DATA_DIR OUT_DIR``: a finished run's base tables → Parquet.

Runs in its own process because chDB opens one data directory per process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.settings import load_settings
from pipeline.sinks.clickhouse import close, connect
from schemas.tables import CLUSTER_HISTORY, TABLES


def main(data_dir: Path, out_dir: Path) -> None:
    settings = load_settings(data_dir=data_dir)
    client = connect(settings)
    db = settings.clickhouse_database
    try:
        # cluster_history too: its view fills it, but `clusters` itself no longer holds merged-away versions.
        for name in (*TABLES, CLUSTER_HISTORY.name):
            if client.command(f"EXISTS TABLE `{db}`.`{name}`") != 1:
                continue
            pq.write_table(client.query_arrow(f"SELECT * FROM `{db}`.`{name}`"), out_dir / f"{name}.parquet")
    finally:
        close(settings.effective_clickhouse_dsn)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

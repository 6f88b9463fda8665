"""``distillwatch`` with the ClickHouse fault hooks installed: the command the fault tests' workers run.

``python -m tests.support.fault_worker worker --bounded`` behaves as ``distillwatch worker --bounded``,
except that ClickHouse writes fail or stall while the hooks' files exist (``clickhouse_faults``).
"""

from __future__ import annotations

from jobs.cli import main
from tests.support.clickhouse_faults import install

if __name__ == "__main__":
    install()
    main()

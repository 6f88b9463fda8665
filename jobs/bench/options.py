"""What one ``distillwatch bench`` run measures, and how long the slow parts may take."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BenchOptions:
    events: int = 2_000_000
    accounts: int = 100_000
    out_dir: Path = Path("bench")
    partitions: int = 4
    seed: int = 7
    # Event time advances at this rate in the generated traffic (the throughput goal):
    # the kernels then see as many accounts per minute frame as live traffic would bring.
    event_time_rate: float = 100_000.0
    # Time budgets keep `make bench` under ten minutes on a small machine: the slow
    # parts run for a fixed time and report their rate over what they handled.
    budget_s: float = 8.0  # each slow in-process baseline (decode_json, kernel_reference)
    faust_budget_s: float = 10.0  # measuring window of faust_naive, after its first event
    pipeline_budget_s: float = 45.0  # a worker run stops after this long if it has not drained
    limit_budget_s: float = 15.0  # each ceiling measurement (jobs.bench.limits): consume, insert
    latency_s: float = 8.0  # paced production per latency run
    memory_accounts: tuple[int, int] = (100_000, 1_000_000)
    backtest_account_minutes: int = 1_000_000  # stored signatures_1m rows the backtest measurement reads
    investigate_events: int = 1_000_000  # api_calls of the one account `investigate` reads
    worker_timeout_s: float = 900.0

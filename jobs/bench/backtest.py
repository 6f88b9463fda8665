"""``backtest``: ``distillwatch backtest`` over N stored account-minutes, ClickHouse read included.

A fresh child process fills ``signatures_1m`` of a temporary embedded ClickHouse with rows made
by ClickHouse itself from hashes of the row number (the same rows on every run), then times
``distillwatch backtest --rules CANDIDATE --since all``; the lifecycle kernel is loaded first,
untimed (``warm_up_s``). The rows, what is timed and the figures: docs/benchmarks.md ("Backtest").

    python -m jobs.bench.backtest ACCOUNT_MINUTES ACCOUNTS
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from jobs.bench.procs import run_json_child

MINUTES_PER_ACCOUNT = 50  # 1M account-minutes = 20,000 accounts
BASE_S = 1_770_854_400  # 2026-02-12T00:00:00Z
WEEK_MINUTES = 7 * 24 * 60
ATTACKER_PERCENT = 2
CANDIDATE_THRESHOLD = 60.0
BENIGN_MEAN_SCORE = 8.0


def generate_sql(qualified_table: str, rows: int, accounts: int, signals: list[str]) -> str:
    """``INSERT … SELECT`` of ``rows`` signatures_1m rows over ``accounts`` accounts (deterministic)."""
    per = max(rows // accounts, 1)
    # One to three minutes apart, the whole run inside the week.
    latest_start = max(WEEK_MINUTES - 3 * per, 1)
    n_signals = len(signals)
    return f"""
INSERT INTO {qualified_table}
    (account_id, window_start, calls, distinct_prompts, calls_5m, calls_1h, calls_24h, active_minutes_1h,
     score, top_signals, signal_names, signal_points)
SELECT account_id, window_start, calls, calls, calls * 4, calls * 35, calls * 500, 35, score,
       [signal_names[indexOf(signal_points, arrayMax(signal_points))]], signal_names, signal_points
FROM (
    SELECT intDiv(number, {per}) AS a,
           concat('bt-', leftPad(toString(a), 7, '0')) AS account_id,
           toDateTime({BASE_S} + (cityHash64(a, 1) % {latest_start}) * 60
                      + (number % {per}) * (1 + cityHash64(a, 2) % 3) * 60, 'UTC') AS window_start,
           toUInt32(1 + cityHash64(number, 3) % 60) AS calls,
           (cityHash64(number, 4) % 1000000) / 1000000.0 AS u,
           toFloat32(if(cityHash64(a, 5) % 100 < {ATTACKER_PERCENT}, 60 + 40 * u,
                        least(100, -{BENIGN_MEAN_SCORE} * log(1 - u)))) AS score,
           {signals!r} AS signal_names,
           arrayMap(i -> (cityHash64(a, 100 + i) % 1000) + 1, range({n_signals})) AS weights,
           arrayMap(w -> toFloat32(round(score * w / arraySum(weights), 2)), weights) AS signal_points
    FROM numbers({rows})
)
"""


def candidate_rules(directory: Path, threshold: float = CANDIDATE_THRESHOLD) -> Path:
    """The packaged rules file with ``extraction_score_high`` at another threshold, written in ``directory``."""
    from pipeline.alerting.rules import DEFAULT_RULES, SCORE_RULE, THRESHOLD_PARAM

    data = yaml.safe_load(DEFAULT_RULES.read_text())
    next(r for r in data["rules"] if r["name"] == SCORE_RULE)["params"][THRESHOLD_PARAM] = threshold
    path = directory / "candidate-rules.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _warm_up() -> float:
    """Load the lifecycle kernel from Numba's cache (or compile it, after its source changed), untimed:
    a one-time cost of the process, as for the bench's decoder, not backtest throughput."""
    from pipeline.alerting.lifecycle import NONE, step_lifecycle

    started = time.perf_counter()
    one = np.zeros(1, np.int64)
    state = np.full(1, NONE, np.int64)
    step_lifecycle(one, one, np.ones(1, np.bool_), for_minutes=0, resolve_minutes=1, pending=state,
                   last_true=state, firing=state)
    return time.perf_counter() - started


def measure(rows: int, accounts: int) -> dict[str, Any]:
    """Generate the rows in a temporary chDB (this process), then time one whole backtest."""
    from jobs.backtest import options_from_settings, run_backtest
    from pipeline.scoring import load_scoring_config
    from pipeline.settings import load_settings
    from pipeline.sinks.clickhouse import close, connect
    from schemas.tables import SIGNATURES_1M

    with tempfile.TemporaryDirectory(prefix="dw-bench-backtest-") as tmp:
        settings = load_settings(data_dir=Path(tmp), clickhouse_database="bench_backtest")
        client = connect(settings)
        try:
            started = time.perf_counter()
            signals = list(load_scoring_config().signals)
            client.command(generate_sql(SIGNATURES_1M.qualified(settings.clickhouse_database), rows, accounts,
                                        signals), settings={"max_insert_threads": 2})
            generate_s = time.perf_counter() - started
            table = SIGNATURES_1M.qualified(settings.clickhouse_database)
            stored = int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])
            candidate = candidate_rules(Path(tmp))
            warm_up_s = _warm_up()
            started = time.perf_counter()
            opts = options_from_settings(settings, candidate, None)
            result = run_backtest(client, settings.clickhouse_database, opts)
            seconds = time.perf_counter() - started
        finally:
            close(settings.effective_clickhouse_dsn)
    return {"account_minutes": result.account_minutes, "stored_rows": stored, "accounts": accounts,
            "seconds": seconds, "generate_s": round(generate_s, 2), "warm_up_s": round(warm_up_s, 3),
            "candidate_threshold": CANDIDATE_THRESHOLD,
            "firing": len(result.firings), "firing_in_force": len(result.baseline_firings),
            "stage_seconds": {k: round(v, 3) for k, v in result.timings.items()}}


def run_child(rows: int, timeout_s: float) -> dict[str, Any]:
    """``measure`` in a fresh process, over ``rows`` account-minutes of MINUTES_PER_ACCOUNT each."""
    accounts = max(rows // MINUTES_PER_ACCOUNT, 1)
    return run_json_child("jobs.bench.backtest", (rows, accounts), timeout_s, "backtest bench child")


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))

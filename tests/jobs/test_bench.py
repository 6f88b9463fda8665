"""``distillwatch bench`` on a tiny input writes a well-formed results.json whose numbers add up (no speed
assertions): every produced event is handled, each rate is its events over its seconds, p50 <= p99."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse]

CONTRACT = {
    "kafka_consume_raw": ("events_per_s",),
    "decode_json": ("events_per_s",),
    "kernel_numba": ("events_per_s",),
    "kernel_reference": ("events_per_s",),
    "faust_naive": ("events_per_s",),
    "pipeline_json": ("events_per_s", "latency_p50_s", "latency_p99_s", "peak_rss_bytes"),
    "pipeline_batched": ("events_per_s", "latency_p50_s", "latency_p99_s", "peak_rss_bytes"),
    "backtest": ("account_minutes", "seconds", "account_minutes_per_s"),
    "investigate": ("events", "seconds"),
}


def test_bench_writes_the_contract(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "bench", "--events", "20000", "--accounts", "2000", "--out", str(out),
         "--budget", "1", "--faust-budget", "2", "--pipeline-budget", "300", "--latency-seconds", "2",
         "--memory-accounts", "2000,20000",
         "--backtest-account-minutes", "20000", "--investigate-events", "20000"],
        capture_output=True, text=True, timeout=900, cwd=ROOT, check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"created", "machine", "events", "accounts", "results", "memory", "limits"}
    assert results["created"].endswith("Z")
    assert set(results["machine"]) == {"cpus", "python", "broker"} and results["machine"]["broker"] == "tansu"
    assert (results["events"], results["accounts"]) == (20000, 2000)
    assert set(results["results"]) == set(CONTRACT)
    for name, keys in CONTRACT.items():
        for key in keys:
            value = results["results"][name][key]
            assert type(value) in (int, float) and value > 0, (name, key, value)
    details = json.loads((out / "details.json").read_text())
    for name in ("pipeline_json", "pipeline_batched"):
        measured, run = results["results"][name], details[name]
        assert measured["latency_p50_s"] <= measured["latency_p99_s"], measured
        assert run["drained"] and run["events"] == 20000, run  # the budget is far above what 20k events take
        assert measured["events_per_s"] == pytest.approx(run["events"] / run["seconds"], rel=0.01), (measured, run)
        assert measured["peak_rss_bytes"] > 100 * 2**20, measured  # a worker with Faust, Numba and chDB loaded
        assert run["latency_run"]["events"] > 0, run["latency_run"]
    assert details["kernel_numba"]["events"] == 20000
    assert details["bench_process_peak_rss_bytes"] > 100 * 2**20  # it generated the input and ran baselines
    ceilings = {f"{form}_consume_decode{detect}_{procs}p" for form in ("json", "batched")
                for detect in ("", "_detect") for procs in (1, 2)}
    assert set(results["limits"]) == ceilings | {"chdb_insert"}
    for name in ceilings:  # each ceiling read the whole topic, its processes together
        assert details["limits"][name]["events"] == 20000, details["limits"][name]
        assert results["limits"][name]["events_per_s"] > 0 and results["limits"][name]["events_per_cpu_s"] > 0
    insert = details["limits"]["chdb_insert"]
    assert insert["events"] == 20000 and insert["insert_s"] > 0 and len(insert["overlapped_wall_s"]) == 2
    assert results["limits"]["chdb_insert"]["events_per_s"] > 0
    assert 0 < results["limits"]["chdb_insert"]["gil_free_fraction"] <= 2, results["limits"]["chdb_insert"]
    assert set(results["memory"]) == {"bytes_per_account_100k", "bytes_per_account_1m"}
    assert all(v > 0 for v in results["memory"].values())
    assert (out / "results.png").stat().st_size > 0
    assert details["pipeline_batched"]["stage_seconds"]["decode"] > 0
    runs = details["kernel_numba"]["runs_s"]
    assert len(runs) == 3 and sorted(runs)[1] == details["kernel_numba"]["seconds"]
    assert "measurement" in done.stderr and "pipeline_batched" in done.stderr  # the table was printed
    assert results["results"]["backtest"]["account_minutes"] == details["backtest"]["stored_rows"] == 20000
    assert results["results"]["investigate"]["events"] == details["investigate"]["calls_reported"] == 20000

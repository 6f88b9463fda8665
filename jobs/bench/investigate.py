"""``investigate``: ``distillwatch investigate`` of one account with N events, ClickHouse read included.

A fresh child process (chDB opens one data directory per process) writes one attacking account's data
through the pipeline's own ``ClickHouseWriter`` (so the materialized views fill the rollups), from a
seeded generator, then times ``investigate()`` on it twice (``seconds``, ``repeat_seconds``). What is
written: docs/benchmarks.md, "Investigate".

    python -m jobs.bench.investigate EVENTS
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BASE_MS = 1_770_854_400_000  # 2026-02-12T00:00:00Z
DAY_MS = 86_400_000
DAYS = 7
ACCOUNT = "bench-attacker"
FLEET = tuple(f"bench-fleet-{k}" for k in range(5))
FLEET_EVENTS = 2_000
CLUSTER = "c-0badc0de"
ALERT_AT_MS = BASE_MS + 2 * DAY_MS + 6 * 3_600_000
NEW_MODEL_FROM_MS = BASE_MS + 3 * DAY_MS
CHUNK = 100_000
SEED = 11


def _defaults(spec: Any, n: int) -> dict[str, Any]:
    """A value for every insert column of ``spec``: zeros, empty strings, empty arrays or maps."""
    out: dict[str, Any] = {}
    for name, ch_type in spec.columns:
        if ch_type.startswith("Array("):
            out[name] = [[] for _ in range(n)]
        elif ch_type.startswith("Map("):
            out[name] = [{} for _ in range(n)]
        elif "String" in ch_type:
            out[name] = [""] * n
        elif ch_type.startswith("Float"):
            out[name] = np.zeros(n, np.float32 if ch_type == "Float32" else np.float64)
        elif ch_type.startswith("DateTime"):
            out[name] = np.zeros(n, np.int64)
        else:
            dtype = ch_type.lower()
            out[name] = np.zeros(n, getattr(np, dtype) if hasattr(np, dtype) else np.int64)
    return out


def api_calls(account: str, n: int, rng: np.random.Generator, bases: np.ndarray, start: int = 0) -> dict[str, Any]:
    """``n`` calls of ``account`` spread over the week, sorted by time (the table's key order)."""
    from schemas.tables import API_CALLS

    cols = _defaults(API_CALLS, n)
    ts = np.sort(rng.integers(BASE_MS, BASE_MS + DAYS * DAY_MS, n)).astype(np.int64)
    flip_bits = rng.choice(64, 12, replace=False)
    flips = np.zeros(n, np.uint64)
    for _ in range(3):  # up to three of twelve bits per prompt: near-duplicates of its template
        pick = rng.integers(0, 13, n)
        hit = pick < 12
        flips[hit] ^= np.uint64(1) << flip_bits[pick[hit]].astype(np.uint64)
    ips = [f"198.51.{100 + k // 8}.{10 + k % 8}" for k in range(40)]
    models = np.where(ts >= NEW_MODEL_FROM_MS, np.where(rng.random(n) < 0.6, 2, rng.integers(0, 2, n)),
                      rng.integers(0, 2, n))
    cols.update({
        "event_id": [f"{account}-{start + k}" for k in range(n)],
        "ts": ts,
        "account_id": [account] * n,
        "api_key_id": [f"{account}-key-{k}" for k in rng.integers(0, 3, n)],
        "client_ip": [ips[k] for k in rng.integers(0, 40, n)],
        "asn": rng.choice(np.array([14061, 16509], np.uint32), n),
        "network_type": ["hosting"] * n,
        "country": [("US", "NL")[k] for k in rng.integers(0, 2, n)],
        "user_agent": [("python-httpx/0.27.0", "openai-python/1.40.0")[k] for k in rng.integers(0, 2, n)],
        "endpoint": ["/v1/chat/completions"] * n,
        "model": [("frontier-large", "frontier-mini", "frontier-next")[k] for k in models],
        "status": np.full(n, 200, np.uint16),
        "prompt_tokens": rng.integers(200, 900, n).astype(np.uint32),
        "completion_tokens": rng.integers(300, 1500, n).astype(np.uint32),
        "reasoning_tokens": rng.integers(0, 2500, n).astype(np.uint32),
        "prompt_hash": rng.integers(1, 2**63, n, dtype=np.int64).astype(np.uint64),
        "prompt_simhash": bases[rng.integers(0, len(bases), n)] ^ flips,
        "temperature": np.zeros(n, np.float32),
        "top_p": np.full(n, np.nan, np.float32),
        "n": np.ones(n, np.uint16),
        "top_logprobs": np.full(n, -1, np.int8),
        "payment_fingerprint": ["pf_bench_card"] * n,
    })
    return cols


def signatures(calls: dict[str, Any]) -> dict[str, Any]:
    """One signatures_1m row per active minute: counts from the calls, a score rising to the alert."""
    from schemas.tables import SIGNATURES_1M

    minute = calls["ts"] // 60_000 * 60
    starts, index, counts = np.unique(minute, return_inverse=True, return_counts=True)
    m = len(starts)
    cols = _defaults(SIGNATURES_1M, m)
    progress = np.clip((starts * 1000 - BASE_MS) / (ALERT_AT_MS - BASE_MS), 0, 1.2)
    score = np.clip(10 + 65 * progress ** 3, 0, 95).astype(np.float32)
    cols.update({
        "account_id": [calls["account_id"][0]] * m, "window_start": starts.astype(np.int64),
        "calls": counts.astype(np.uint32), "score": score,
        "prompt_tokens": np.bincount(index, calls["prompt_tokens"], m).astype(np.uint64),
        "completion_tokens": np.bincount(index, calls["completion_tokens"], m).astype(np.uint64),
        "reasoning_tokens": np.bincount(index, calls["reasoning_tokens"], m).astype(np.uint64),
        "top_signals": [["output_harvest", "template_sweep"]] * m,
        "signal_names": [["output_harvest", "template_sweep"]] * m,
        "signal_points": [[float(s) * 0.6, float(s) * 0.4] for s in score],
    })
    return cols


def alert(account: str) -> dict[str, Any]:
    from schemas.tables import ALERTS

    cols = _defaults(ALERTS, 1)
    cols.update({"alert_id": [f"extraction_score_high:{account}:{ALERT_AT_MS}"],
                 "fired_ts": np.array([ALERT_AT_MS], np.int64), "account_id": [account],
                 "rule": ["extraction_score_high"], "severity": ["warning"], "score": np.array([75.0], np.float32),
                 "signals": [["output_harvest", "template_sweep"]], "signal_points": [[45.0, 30.0]],
                 "window_start": np.array([ALERT_AT_MS // 1000 // 60 * 60], np.int64)})
    return cols


def cluster() -> dict[str, Any]:
    from schemas.tables import CLUSTERS

    cols = _defaults(CLUSTERS, 1)
    members = sorted([ACCOUNT, *FLEET])
    cols.update({"cluster_id": [CLUSTER], "account_ids": [members], "size": np.array([len(members)], np.uint32),
                 "score": np.array([80.0], np.float32), "shared_features": [["pay:pf_bench_card"]],
                 "factor_names": [["size", "member_scores", "link_strength", "volume"]],
                 "factor_points": [[14.4, 35.0, 20.6, 10.0]], "first_seen_ts": np.array([BASE_MS], np.int64),
                 "updated_ts": np.array([BASE_MS + DAYS * DAY_MS], np.int64), "active": np.array([1], np.uint8),
                 "version": np.array([1], np.uint64)})
    return cols


def measure(events: int) -> dict[str, Any]:
    """Write the data into a temporary chDB (this process), then time ``investigate`` twice."""
    from jobs.investigate.collect import investigate
    from pipeline.settings import load_settings
    from pipeline.sinks.clickhouse import ClickHouseWriter, close, connect

    rng = np.random.default_rng(SEED)
    bases = rng.integers(1, 2**63, 50, dtype=np.int64).astype(np.uint64)
    with tempfile.TemporaryDirectory(prefix="dw-bench-investigate-") as tmp:
        settings = load_settings(data_dir=Path(tmp), clickhouse_database="bench_investigate")
        client = connect(settings)
        db = settings.clickhouse_database
        try:
            writer = ClickHouseWriter(client, db)
            started = time.perf_counter()
            big = api_calls(ACCOUNT, events, rng, bases)
            for lo in range(0, events, CHUNK):  # chunks the size of worker batches, in time order
                writer.write("api_calls", {k: v[lo:lo + CHUNK] for k, v in big.items()})
            writer.write("signatures_1m", signatures(big))
            del big
            for member in FLEET:
                writer.write("api_calls", api_calls(member, FLEET_EVENTS, rng, bases))
            writer.write("alerts", alert(ACCOUNT))
            writer.write("clusters", cluster())
            load_s = time.perf_counter() - started
            stored = int(str(client.command(f"SELECT count() FROM `{db}`.api_calls WHERE account_id = '{ACCOUNT}'")))
            timings, cpu = [], []
            for _ in range(2):
                started, cpu_started = time.perf_counter(), time.process_time()
                inv = investigate(client, db, ACCOUNT)
                timings.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)  # chDB runs in this process: its threads count
        finally:
            close(settings.effective_clickhouse_dsn)
    (page,) = inv.pages
    return {"events": stored, "seconds": timings[0], "repeat_seconds": round(timings[1], 3),
            "cpu_seconds": round(cpu[0], 3), "repeat_cpu_seconds": round(cpu[1], 3),
            "load_s": round(load_s, 1), "calls_reported": page.calls, "alerts": len(page.alerts),
            "links": len(inv.cluster.links) if inv.cluster else 0, "shared_templates": len(page.shared_templates),
            "new_models": sorted(inv.new_models), "harvest_before_alert": page.harvest.before_alert,
            "harvest_total": page.harvest.total, "load_average_1m": round(os.getloadavg()[0], 2)}


def run_child(events: int, timeout_s: float) -> dict[str, Any]:
    """``measure`` in a fresh process."""
    done = subprocess.run([sys.executable, "-m", "jobs.bench.investigate", str(events)],
                          capture_output=True, text=True, timeout=timeout_s, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"investigate bench child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))

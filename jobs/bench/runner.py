"""``distillwatch bench``: every measurement of BENCH_RESULTS.md in one run, on this machine.

Generates the traffic, starts an embedded Tansu broker, produces it once as JSON messages and once as
batch containers, then runs each measurement on the same messages; slow baselines run for a time
budget. Temporary state lives in a fresh directory removed at the end. The order and what each step
measures: docs/benchmarks.md, "What runs, in order".
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobs.bench import backtest as backtest_bench
from jobs.bench import investigate as investigate_bench
from jobs.bench import kafka_io, limits, offline
from jobs.bench.data import BenchData, json_messages, prepare
from jobs.bench.faust_run import measure_faust_naive
from jobs.bench.memory import run_child
from jobs.bench.options import BenchOptions
from jobs.bench.paced import BatchedSource, JsonSource
from jobs.bench.pipeline_run import Latency, Throughput, run_latency, run_throughput
from jobs.bench.procs import load_average, peak_rss_bytes
from jobs.bench.report import backtest_entry, investigate_entry, limits_entry, plot, rate, table, write_json
from jobs.embedded_broker import EmbeddedBroker
from pipeline.settings import load_settings

Log = Callable[[str], None]


class _Clock:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.started = time.monotonic()
        self.steps: dict[str, float] = {}

    def step(self, name: str, since: float) -> None:
        self.steps[name] = round(time.monotonic() - since, 1)
        self.log(f"bench: {name} done in {self.steps[name]:.1f}s ({time.monotonic() - self.started:.0f}s so far)")


def _profile(t: Throughput) -> dict[str, Any]:
    """Where the worker's wall time went, first batch to drained: each stage's share, and idle time.

    ``waiting_for_kafka`` is wall time outside any batch (the detect loop waiting for
    the next fetch); ``other_in_batch`` is batch time no timed stage covers (event
    loop hand-offs, counting). Stages nested in another (detector inside
    decode_dedup_detect) are listed but not summed twice.
    """
    st = t.stages
    batch = st.get("batch_total", 0.0)
    top = ("decode_dedup_detect", "dead_letters", "clickhouse_inserts", "linking_publish", "checkpoint_and_commit")
    seconds = {k: round(st.get(k, 0.0), 3) for k in top}
    seconds["other_in_batch"] = round(max(batch - sum(seconds.values()), 0.0), 3)
    seconds["waiting_for_kafka"] = round(max(t.seconds - batch, 0.0), 3)
    share = {k: round(v / t.seconds, 3) for k, v in seconds.items()} if t.seconds else {}
    cpu = t.worker_cpu_s + t.broker_cpu_s
    return {"wall_seconds": round(t.seconds, 3), "seconds": seconds, "share_of_wall": share,
            "inside_decode_dedup_detect": {k: st[k] for k in ("decode", "detector") if k in st},
            "bottleneck": max(seconds, key=lambda k: seconds[k]),
            "events_per_cpu_second": round(t.events / cpu) if cpu else None,
            "events_per_worker_cpu_second": round(t.events / t.worker_cpu_s) if t.worker_cpu_s else None}


def _throughput_details(t: Throughput) -> dict[str, Any]:
    return {"profile": _profile(t), "events": t.events, "seconds": round(t.seconds, 3), "batches": t.batches,
            "drained": t.drained,
            "cores_used": round(t.cores, 2),
            "worker_cpu_s": round(t.worker_cpu_s, 2), "broker_cpu_s": round(t.broker_cpu_s, 2),
            "stage_seconds": t.stages, "first_batch": t.first_batch, "notes": list(t.notes)}


def _latency_details(lat: Latency) -> dict[str, Any]:
    return {"events": lat.events, "target_rate": round(lat.target_rate), "achieved_rate": round(lat.achieved_rate),
            "notes": list(lat.notes)}


def _broker_pid(broker: EmbeddedBroker) -> int:
    proc = broker._proc  # the broker process we started; its CPU counts towards Kafka measurements
    assert proc is not None
    return proc.pid


def _measure_limits(opts: BenchOptions, boot: str, broker_pid: int) -> dict[str, Any]:
    """The ceilings with the broker on this machine (jobs.bench.limits): per form, what the hot path
    without ClickHouse and linking reaches in 1 and 2 processes, and chDB's insert rate alone."""
    out: dict[str, Any] = {}
    for form, topic in (("json", "bench-json"), ("batched", "bench-batched")):
        for detect in (False, True):
            for procs in (1, 2):
                name = f"{form}_consume_decode{'_detect' if detect else ''}_{procs}p"
                out[name] = limits.measure_consume(boot, broker_pid, topic, opts.partitions, procs=procs,
                                                   detect=detect, budget_s=opts.limit_budget_s,
                                                   timeout_s=opts.worker_timeout_s).entry()
    out["chdb_insert"] = limits.measure_insert(boot, "bench-batched", opts.partitions, budget_s=opts.limit_budget_s,
                                               timeout_s=opts.worker_timeout_s)
    return out


def _measure_kafka(opts: BenchOptions, data: BenchData, work: Path, clock: _Clock, log: Log) -> dict[str, Any]:
    max_accounts = max(data.accounts * 2, 1024)
    out: dict[str, Any] = {}
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        pid = _broker_pid(broker)
        boot = broker.bootstrap
        topics = ["bench-json", "bench-batched", "bench-latency-json", "bench-latency-batched"]
        kafka_io.create_topics(boot, topics, opts.partitions)

        t = time.monotonic()
        kafka_io.produce(boot, "bench-json", json_messages(data))
        kafka_io.produce(boot, "bench-batched", ((c.partition, None, c.value) for c in data.containers))
        clock.step("produce", t)

        t = time.monotonic()
        raw = kafka_io.consume_raw(boot, "bench-json", data.events, pid, opts.worker_timeout_s)
        raw_b = kafka_io.consume_raw(boot, "bench-batched", len(data.containers), pid, opts.worker_timeout_s)
        out["kafka_consume_raw"] = raw
        out["kafka_consume_raw_batched"] = raw_b
        clock.step("kafka_consume_raw", t)

        t = time.monotonic()
        out["limits"] = _measure_limits(opts, boot, pid)
        clock.step("limits", t)

        t = time.monotonic()
        out["faust_naive"] = measure_faust_naive(boot, "bench-json", opts.partitions, pid, work / "faust",
                                                 budget_s=opts.faust_budget_s)
        clock.step("faust_naive", t)

        for name, topic in (("pipeline_json", "bench-json"), ("pipeline_batched", "bench-batched")):
            t = time.monotonic()
            log(f"bench: {name}: worker --bounded over {data.events:,} events")
            out[name] = run_throughput(boot, pid, topic, opts.partitions, work / name, expected_events=data.events,
                                       max_accounts=max_accounts, budget_s=opts.pipeline_budget_s,
                                       timeout_s=opts.worker_timeout_s)
            clock.step(name, t)

        for name, topic, source, measured in (
            ("latency_json", "bench-latency-json", JsonSource(data), out["pipeline_json"]),
            ("latency_batched", "bench-latency-batched", BatchedSource(data), out["pipeline_batched"]),
        ):
            t = time.monotonic()
            target = measured.per_s / 2
            log(f"bench: {name}: producing at {target:,.0f} events/s for {opts.latency_s:.0f}s")
            out[name] = run_latency(boot, topic, opts.partitions, work / name, source, rate=target,
                                    seconds=opts.latency_s, max_accounts=max_accounts,
                                    timeout_s=opts.worker_timeout_s)
            clock.step(name, t)
    return out


def run_bench(opts: BenchOptions, log: Log = print) -> dict[str, Any]:
    clock = _Clock(log)
    load_at_start = load_average()
    settings = load_settings()
    t = time.monotonic()
    data = prepare(opts, log)
    clock.step("generate", t)

    t = time.monotonic()
    decode = offline.decode_json(data, settings, opts.budget_s)
    clock.step("decode_json", t)
    t = time.monotonic()
    columns = offline.kernel_inputs(data, settings)
    kernel = offline.kernel_numba(columns, settings, opts.partitions)
    reference = offline.kernel_reference(columns, settings, opts.partitions, opts.budget_s)
    del columns
    clock.step("kernels", t)

    with tempfile.TemporaryDirectory(prefix="dw-bench-") as tmp:
        kafka = _measure_kafka(opts, data, Path(tmp), clock, log)
    raw, raw_b = kafka["kafka_consume_raw"], kafka["kafka_consume_raw_batched"]
    faust = kafka["faust_naive"]
    pj, pb = kafka["pipeline_json"], kafka["pipeline_batched"]
    lj, lb = kafka["latency_json"], kafka["latency_batched"]
    ceilings = kafka["limits"]
    json_bytes, batched_bytes = data.json_bytes, data.batched_bytes
    events_per_container = data.events / len(data.containers)
    del data

    t = time.monotonic()
    memory = [run_child(n, opts.partitions, opts.worker_timeout_s) for n in opts.memory_accounts]
    clock.step("memory", t)

    t = time.monotonic()
    backtest = backtest_bench.run_child(opts.backtest_account_minutes, opts.worker_timeout_s)
    clock.step("backtest", t)

    t = time.monotonic()
    investigation = investigate_bench.run_child(opts.investigate_events, opts.worker_timeout_s)
    clock.step("investigate", t)

    results: dict[str, Any] = {
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "broker": "tansu"},
        "events": opts.events,
        "accounts": min(opts.events, opts.accounts),
        "results": {
            "kafka_consume_raw": rate(raw.messages, raw.seconds, raw.cpu_seconds),
            "decode_json": rate(decode.events, decode.seconds),
            "kernel_numba": rate(kernel.events, kernel.seconds),
            "kernel_reference": rate(reference.events, reference.seconds),
            "faust_naive": rate(faust.events, faust.seconds, faust.cpu_seconds),
            "pipeline_json": rate(pj.events, pj.seconds, pj.worker_cpu_s + pj.broker_cpu_s,
                                  latency_p50_s=lj.p50_s, latency_p99_s=lj.p99_s, peak_rss_bytes=pj.peak_rss_bytes),
            "pipeline_batched": rate(pb.events, pb.seconds, pb.worker_cpu_s + pb.broker_cpu_s,
                                     latency_p50_s=lb.p50_s, latency_p99_s=lb.p99_s,
                                     peak_rss_bytes=pb.peak_rss_bytes),
            "backtest": backtest_entry(backtest["account_minutes"], backtest["seconds"]),
            "investigate": investigate_entry(investigation["events"], investigation["seconds"]),
        },
        "limits": limits_entry(ceilings),
        "memory": {f"bytes_per_account_{label}": round((m["rss_after"] - m["rss_before"]) / m["accounts"])
                   for label, m in zip(("100k", "1m"), memory, strict=True)},
    }
    details = {
        "load_average": {"start": load_at_start, "end": load_average()},
        # The bench process itself (its input, the baselines run in it): the machine must hold this too.
        "bench_process_peak_rss_bytes": peak_rss_bytes(),
        "step_seconds": clock.steps,
        "bytes_per_event": {"json": round(json_bytes / opts.events, 1),
                            "batched": round(batched_bytes / opts.events, 1)},
        "kafka_consume_raw": {"messages": raw.messages, "seconds": round(raw.seconds, 3),
                              "cores_used": round(raw.cpu_seconds / raw.seconds, 2),
                              "events_per_cpu_second": round(raw.messages / raw.cpu_seconds)},
        "kafka_consume_raw_batched": {"containers": raw_b.messages, "seconds": round(raw_b.seconds, 3),
                                      "events_per_s": round(raw_b.messages * events_per_container / raw_b.seconds)},
        "decode_json": decode.details(),
        "kernel_numba": kernel.details(),
        "kernel_reference": {"events": reference.events, "seconds": round(reference.seconds, 3)},
        "faust_naive": {"events": faust.events, "seconds": round(faust.seconds, 3),
                        "cores_used": round(faust.cpu_seconds / faust.seconds, 2),
                        "events_per_cpu_second": round(faust.events / faust.cpu_seconds)},
        "pipeline_json": _throughput_details(pj) | {"latency_run": _latency_details(lj)},
        "pipeline_batched": _throughput_details(pb) | {"latency_run": _latency_details(lb)},
        "limits": ceilings,
        "memory": {str(m["accounts"]): m for m in memory},
        "backtest": backtest,
        "investigate": investigation,
    }
    out = opts.out_dir
    write_json(out / "results.json", results)
    write_json(out / "details.json", details)
    plot(results, out / "results.png")
    log(table(results))
    log(f"bench: wrote {out / 'results.json'}, {out / 'details.json'} and {out / 'results.png'} "
        f"in {time.monotonic() - clock.started:.0f}s")
    return results

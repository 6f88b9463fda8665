"""``distillwatch demo``: the whole pipeline on this machine, start to finish, in about two minutes.

1. start the embedded Kafka broker (Tansu) and create the topics;
2. start the worker (Faust + Numba + embedded ClickHouse) as a child process;
3. generate traffic with attackers in it (``jobs/loadgen/sink.produce_kafka``, event
   time running ``speedup`` times faster than the wall clock), printing a live
   progress line from the worker's /stats view;
4. drain: the worker reads to the end, closes every frame, commits, exits;
5. print the most suspicious accounts beside their ground truth, the alerts,
   and where to look next; stop everything it started.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.embedded_broker import EmbeddedBroker, free_port
from jobs.loadgen.malformed import malformed_messages
from jobs.loadgen.scenario import DEFAULT_MIX, DEFAULT_START_MS, ScenarioConfig, generate, labels, write_labels
from jobs.loadgen.sink import produce_kafka
from jobs.produce_file import produce_messages
from jobs.replay_report import iso_utc
from jobs.worker_process import WorkerProcess
from pipeline.settings import Settings, load_settings
from pipeline.sinks.clickhouse import close, connect, query_rows
from pipeline.topics import ensure_topics

TOP_N = 25
# The generator's ground truth ({account_id: {archetype, is_attack, fleet_id, reseller_id, company_id}}),
# kept beside the data.
LABELS_FILE = "labels.json"


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float = 60.0
    speedup: float = 30.0
    rate: float = 200.0
    seed: int = 7
    data_dir: Path = Path(".distillwatch/demo")
    out: Any = sys.stdout


def _progress_line(stats: dict[str, Any] | None, produced: int, started: float) -> str:
    elapsed = time.monotonic() - started
    if not stats:
        return (f"[{elapsed:5.1f}s] produced {produced:>9,} | worker starting (loading its kernels: "
                "compiled on the first run only)…")
    wm = stats.get("watermark_ms") or 0
    when = time.strftime("%H:%M", time.gmtime(wm / 1000)) if wm > 0 else "--:--"
    return (f"[{elapsed:5.1f}s] produced {produced:>9,} | processed {stats['events_in']:>9,} "
            f"rejected {stats['events_rejected']:>5,} | accounts {stats['accounts']:>4} "
            f"| frames {stats['signature_rows']:>7,} | alerts {stats['alerts']:>4} | event time {when}")


# The default mix without the low-and-slow campaign (`make eval` has it). tests/jobs/test_backtest.py compares
# the demo's live cluster alerts with `distillwatch backtest`, which starts a member's `for` at the first stored
# version holding it rather than at its links' qualifying time; around the campaign's hub relinking members sit
# in a qualifying cluster for a minute or two before being relinked out, and three of them fired in the
# backtest only (CI of 3a0b640; docs/alerting.md, "Backtesting").
DEMO_MIX = {name: count for name, count in DEFAULT_MIX.items() if name != "low_and_slow_fleet"}


def run_demo(opts: DemoOptions) -> int:
    out = opts.out
    if opts.data_dir.exists():
        shutil.rmtree(opts.data_dir)  # a demo starts from nothing, every time
    opts.data_dir.mkdir(parents=True)
    now_ms = int(time.time() * 1000)
    span_ms = int(opts.duration_s * opts.speedup * 1000)
    # Stamped now, but the accounts keep the default scenario's hours and weekday: the same traffic
    # whenever the demo runs.
    config = ScenarioConfig(seed=opts.seed, start_ms=now_ms - span_ms, duration_s=span_ms / 1000,
                            rate_eps=opts.rate, profile_start_ms=DEFAULT_START_MS, mix=DEMO_MIX)
    truth = labels(config)
    write_labels(config, opts.data_dir / LABELS_FILE)  # the ground truth, for queries and tests
    print(f"distillwatch demo: {config.expected_events:,} events from {len(truth)} accounts "
          f"({sum(lab.is_attack for lab in truth.values())} attacking), {span_ms / 60_000:.0f} minutes "
          f"of event time in ~{opts.duration_s:.0f}s", file=out)
    with EmbeddedBroker(log_path=opts.data_dir / "broker.log") as broker:
        settings = load_settings(kafka_bootstrap=broker.bootstrap, data_dir=opts.data_dir, web_port=free_port())
        ensure_topics(settings)
        print(f"  broker  : Tansu (embedded) at {broker.bootstrap}", file=out)
        print(f"  storage : chDB (embedded) at {settings.effective_clickhouse_dsn}", file=out)
        worker = WorkerProcess(settings, bounded=False, log_path=opts.data_dir / "worker.log")
        print(f"  worker  : pid {worker.proc.pid}, web views at {worker.base_url}/stats", file=out)
        try:
            _generate_with_progress(config, settings, worker, opts)
            worker.request_drain()
            code = worker.wait(timeout_s=300)
            if code != 0:
                print(f"worker failed (status {code}):\n{worker.log_tail()}", file=out)
                return 1
        finally:
            worker.kill()
    client = connect(settings)
    try:
        _print_results(client, truth, settings, out)
    finally:
        close(settings.effective_clickhouse_dsn)
    return 0


def _generate_with_progress(config: ScenarioConfig, settings: Settings, worker: WorkerProcess,
                            opts: DemoOptions) -> None:
    produced = [0]
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            produce_kafka(generate(config), settings.kafka_bootstrap, settings.topic_events,
                          speedup=opts.speedup, on_progress=lambda n: produced.__setitem__(0, n),
                          progress_every=2_000)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    started = time.monotonic()
    producer = threading.Thread(target=produce, name="loadgen", daemon=True)
    producer.start()
    interactive = opts.out.isatty()
    while producer.is_alive():
        producer.join(timeout=1.0)
        line = _progress_line(worker.stats(), produced[0], started)
        print(f"\r{line}" if interactive else line, end="" if interactive else "\n", file=opts.out, flush=True)
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{worker.log_tail()}")
    if failure:
        raise failure[0]
    bad = malformed_messages(settings)  # sent as they are: keyless, spread over the partitions
    asyncio.run(produce_messages([(i % settings.partitions, None, v) for i, (_, v) in enumerate(bad)],
                                 settings.bootstrap_servers, settings.topic_events))
    print(f"sent {len(bad)} malformed messages too (they go to the dead-letter topic, "
          "table rejected_events)", file=opts.out)
    print(("\n" if interactive else "") + f"generator done: {produced[0]:,} events; draining the worker…",
          file=opts.out)


ACCOUNT_SQL = """
SELECT s.account_id AS account_id, max(s.score) AS max_score, sum(s.calls) AS calls,
       argMax(s.top_signals, s.score) AS signals
FROM signatures_1m AS s FINAL
GROUP BY s.account_id ORDER BY max_score DESC, account_id LIMIT {limit:UInt32}
"""
CLUSTER_SQL = """
SELECT cluster_id, size, score, account_ids, shared_features
FROM clusters FINAL WHERE active = 1 ORDER BY score DESC, cluster_id LIMIT {limit:UInt32}
"""
TOP_CLUSTERS = 5
ALERT_SQL = """
SELECT account_id, count() AS alerts, min(fired_ts) AS first_fired
FROM alerts FINAL WHERE mode = 'page' AND suppressed_by = '' GROUP BY account_id
"""


def _print_clusters(client: Any, truth: dict[str, Any], out: Any) -> None:
    clusters = query_rows(client, CLUSTER_SQL, {"limit": TOP_CLUSTERS})
    print(f"\ncross-account clusters (top {TOP_CLUSTERS} by score; docs/linking.md)", file=out)
    if not clusters:
        print("  none", file=out)
    for c in clusters:
        fleets = sorted({truth[a].archetype for a in c["account_ids"] if a in truth})
        print(f"  {c['cluster_id']}  score {float(c['score']):5.1f}  {int(c['size']):3} accounts  "
              f"truth: {', '.join(fleets) or '?'}  shared: {', '.join(c['shared_features'][:4])}", file=out)


def _print_results(client: Any, truth: dict[str, Any], settings: Settings, out: Any) -> None:
    alerts = {r["account_id"]: r for r in query_rows(client, ALERT_SQL)}
    rows = query_rows(client, ACCOUNT_SQL, {"limit": TOP_N})
    totals = query_rows(client, "SELECT count() AS frames, sum(calls) AS calls FROM signatures_1m FINAL")[0]
    print(f"\nmost suspicious accounts (top {TOP_N} of {len(truth)}; truth from the generator's labels)", file=out)
    header = f"{'account':<24} {'truth':<22} {'attack':<6} {'max score':>9} {'calls':>8} {'alerts':>6}  " \
             f"{'first alert (event time)':<24} top signals"
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in rows:
        label = truth.get(r["account_id"])
        a = alerts.get(r["account_id"])
        print(f"{r['account_id']:<24} {(label.archetype if label else '?'):<22} "
              f"{('yes' if label and label.is_attack else 'no'):<6} {float(r['max_score']):9.1f} "
              f"{int(r['calls']):8,} {int(a['alerts']) if a else 0:6}  "
              f"{(iso_utc(a['first_fired']) if a else '-'):<24} {', '.join(r['signals'])}", file=out)
    attackers = {acc for acc, lab in truth.items() if lab.is_attack}
    _print_clusters(client, truth, out)
    flagged = set(alerts)
    print(f"\n{int(totals['calls']):,} events in {int(totals['frames']):,} account-minute frames; "
          f"{len(flagged)} accounts alerted: {len(flagged & attackers)} attackers, "
          f"{len(flagged - attackers)} benign; {len(attackers - flagged)} attackers not alerted", file=out)
    rejects = query_rows(client, "SELECT reason, count() AS n FROM rejected_events GROUP BY reason ORDER BY reason")
    print(f"{sum(int(r['n']) for r in rejects)} messages dead-lettered: "
          + (", ".join(f"{r['reason']} {int(r['n'])}" for r in rejects) or "none"), file=out)
    print(f"""
where to look next (ClickHouse database '{settings.clickhouse_database}'):
  tables  : signatures_1m (per account-minute signals and score), alerts, clusters, api_calls (every
            event, no prompt text), rejected_events (what went to the dead-letter topic); dashboards'
            rollups: traffic_1m, scores_1m, alerts_1m, account_scores_1h, account_entities_1h
  query   : .venv/bin/distillwatch sql --data-dir {settings.data_dir} \\
              "SELECT account_id, max(score) AS s FROM signatures_1m GROUP BY account_id ORDER BY s DESC LIMIT 10"
  report  : .venv/bin/distillwatch report --data-dir {settings.data_dir} --out report.html (one HTML page)
  dig     : .venv/bin/distillwatch investigate ACCOUNT_ID|CLUSTER_ID --data-dir {settings.data_dir}
  live    : while a worker runs, GET http://127.0.0.1:{settings.web_port}/query?sql=SELECT… (read-only{
              '; header Authorization: Bearer $DW_WEB_TOKEN' if settings.web_token.get_secret_value() else ''})
  truth   : {settings.data_dir / LABELS_FILE} (the generator's labels per account)
  logs    : {settings.data_dir / 'worker.log'}""", file=out)

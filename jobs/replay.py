"""``distillwatch replay``: a JSONL file through the live pipeline, then REPORT.json.

Steps: start the embedded broker (unless --kafka), create run-private topics,
produce every non-empty line, run the worker in bounded mode (reads to the end,
closes every frame, commits, exits), then read the results from ClickHouse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.bench.procs import PeakRss
from jobs.embedded_broker import EmbeddedBroker, free_port
from jobs.produce_file import produce_lines, read_lines
from jobs.worker_process import WorkerProcess
from pipeline.drain_marker import drain_marker_path
from pipeline.settings import ENV_PREFIX, Settings, load_settings
from pipeline.topics import ensure_topics

# Created in the data dir once every line is produced: the worker's cue to drain (DW_DRAIN_TRIGGER_FILE).
DRAIN_TRIGGER = "input-produced"


# A replay checkpoints and commits this often, not every DW_CHECKPOINT_INTERVAL_S (10 s by default).
REPLAY_CHECKPOINT_INTERVAL_S = 1.0
# A replay's batches are at most this many events (DW_BATCH_MAX_EVENTS, 50,000 elsewhere; a value in our
# environment wins). The worker holds several batches at once (gathered, queued, decoded, written): 30,000
# took about 80 MiB off a 455k-event replay's peak at about the same CPU; 20,000 no more, for about 4.5 s
# more CPU (docs/benchmarks.md, "Replay").
REPLAY_BATCH_MAX_EVENTS = 30_000


class ReplayError(RuntimeError):
    pass


@dataclass(frozen=True)
class ReplayOptions:
    events_path: Path
    report_path: Path
    kafka: str | None = None
    clickhouse: str | None = None
    data_dir: Path | None = None
    partitions: int = 4
    timeout_s: float = 3600.0


def _replay_settings(opts: ReplayOptions, bootstrap: str, data_dir: Path) -> Settings:
    run = uuid.uuid4().hex[:8]
    shared_infra = opts.kafka is not None or opts.clickhouse is not None
    batch: dict[str, object] = {}
    if f"{ENV_PREFIX}BATCH_MAX_EVENTS" not in os.environ:
        batch["batch_max_events"] = REPLAY_BATCH_MAX_EVENTS
    return load_settings(
        kafka_bootstrap=bootstrap,
        clickhouse_dsn=opts.clickhouse or "",
        # On shared infrastructure a replay must not touch live topics or tables.
        clickhouse_database=f"replay_{run}" if opts.clickhouse else "distillwatch",
        data_dir=data_dir,
        topic_events=f"replay-{run}-api-calls" if shared_infra else "api-calls",
        topic_dlq=f"replay-{run}-api-calls-dlq" if shared_infra else "api-calls-dlq",
        consumer_group=f"distillwatch-replay-{run}",
        partitions=opts.partitions,
        web_port=free_port(),
        # Historical files are judged by their own clock, not today's.
        max_future_skew_s=10**10,
        drain_trigger_file=data_dir / DRAIN_TRIGGER,
        # Batches written but not yet checkpointed wait for the commit; at replay speed the default
        # 10 s held 100+ MB of their raw messages (now dropped once decoded: docs/benchmarks.md, "Replay").
        checkpoint_interval_s=REPLAY_CHECKPOINT_INTERVAL_S,
        **batch,
    )


def run_replay(opts: ReplayOptions, log: Any = print) -> dict[str, Any]:
    if not opts.events_path.is_file():
        raise ReplayError(f"no such events file: {opts.events_path}")
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        # This process and the worker, together; the broker is not the pipeline's (REPLAY_REPORT.md "run").
        rss = stack.enter_context(PeakRss([os.getpid()]))
        bootstrap = opts.kafka or stack.enter_context(EmbeddedBroker()).bootstrap
        data_dir = opts.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dw-replay-")))
        settings = _replay_settings(opts, bootstrap, data_dir)
        ensure_topics(settings)
        trigger = settings.drain_trigger_file
        assert trigger is not None  # _replay_settings sets it
        for stale in (drain_marker_path(settings), trigger):  # a kept data dir may hold an earlier run's
            stale.unlink(missing_ok=True)
        # The worker starts up (imports, ClickHouse, kernels, group join) and processes what has
        # arrived while the file is produced; it drains only once every line is in the topic.
        worker = WorkerProcess(settings, bounded=True, log_path=data_dir / "worker.log")
        stack.callback(worker.kill)  # a failed produce must not leave it waiting for the trigger
        rss.trees.append(worker.proc.pid)  # with its linking child
        log(f"replay: producing {opts.events_path} to {settings.topic_events} on {bootstrap}")
        events_in = asyncio.run(produce_lines(
            read_lines(opts.events_path), settings.bootstrap_servers, settings.topic_events,
            settings.partitions, on_progress=lambda n: log(f"replay: produced {n:,} lines"),
        ))
        trigger.touch()
        log(f"replay: {events_in:,} lines produced; the worker reads to the end of input")
        code = worker.wait(max(opts.timeout_s - (time.monotonic() - started), 1.0))
        if code != 0:
            raise ReplayError(f"worker exited with status {code}:\n{worker.log_tail()}")
        _check_drained(settings, worker)
        # Imported now, not at the top: ClickHouse's client (and embedded chDB, about 250 MB) in this
        # process while the worker ran would count in the run's peak RSS for nothing.
        from jobs.replay_report import build_report
        from pipeline.sinks.clickhouse import close, connect

        client = connect(settings)
        try:
            report = build_report(client, settings.clickhouse_database, events_in)
        finally:
            close(settings.effective_clickhouse_dsn)
    report["run"] = {"wall_s": round(time.monotonic() - started, 1), "peak_rss_bytes": rss.peak_bytes}
    opts.report_path.parent.mkdir(parents=True, exist_ok=True)
    opts.report_path.write_text(json.dumps(report, indent=2) + "\n")
    flagged = sum(a["flagged"] for a in report["accounts"])
    log(f"replay: {events_in:,} events, {report['events_rejected']:,} rejected, "
        f"{len(report['accounts']):,} accounts, {flagged} flagged, {len(report['alerts'])} alerts "
        f"in {report['run']['wall_s']:.0f}s, peak RSS {report['run']['peak_rss_bytes'] / 2**20:,.0f} MiB "
        f"-> {opts.report_path}")
    return report


def _check_drained(settings: Settings, worker: WorkerProcess) -> None:
    """Status 0 alone is not enough: every stage must have drained (pipeline.drain_marker)."""
    marker = drain_marker_path(settings)
    if not marker.is_file():
        raise ReplayError(f"worker exited without draining the input (no {marker}):\n{worker.log_tail()}")
    error = json.loads(marker.read_text()).get("linking_error")
    if error:
        raise ReplayError(f"the linking stages failed, clusters are incomplete: {error}\n{worker.log_tail()}")

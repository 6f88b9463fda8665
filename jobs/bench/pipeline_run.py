"""End-to-end runs of the worker (a child process): throughput on a pre-produced topic, and latency.

Throughput: ``worker --bounded`` reads the topic to its end; the rate is events over the time from its
first consumed batch to drained, from the worker's own stage timers (``jobs.bench.worker_entry``).
Latency: an unbounded worker on a fresh topic while ``paced.py`` produces at a fixed rate; each event's
latency is ``api_calls.ingested_at - ts`` (same clock). docs/benchmarks.md, "Latency runs".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.bench.paced import PacedSource, run_paced
from jobs.bench.procs import PeakRss, cpu_seconds
from jobs.bench.worker_entry import TIMINGS_ENV
from jobs.embedded_broker import free_port
from jobs.worker_process import settings_env
from pipeline.settings import ENV_PREFIX, load_settings
from pipeline.web.auth import auth_headers

ROOT = Path(__file__).resolve().parents[2]
LATENCY_SQL = """
SELECT count() AS n, quantileExact(0.5)(lat) AS p50_ms, quantileExact(0.99)(lat) AS p99_ms
FROM (SELECT toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(ts) AS lat
      FROM api_calls WHERE NOT startsWith(event_id, 'warm-'))
"""


# A drained worker gets this long to exit by itself before it is stopped (see BenchWorker.stop).
EXIT_GRACE_S = 5.0


class BenchError(RuntimeError):
    pass


class BenchWorker:
    """``python -m jobs.bench.worker_entry worker`` with run-private settings and stage timers."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, work_dir: Path, *, bounded: bool,
                 max_accounts: int) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        self.settings = load_settings(
            kafka_bootstrap=bootstrap, data_dir=work_dir / "state", topic_events=topic, topic_dlq=f"{topic}-dlq",
            consumer_group=f"bench-{topic}-{uuid.uuid4().hex[:6]}", partitions=partitions, web_port=free_port(),
            max_accounts=max_accounts,
        )
        self.timings_path = work_dir / "timings.json"
        self.log_path = work_dir / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env.update(settings_env(self.settings))
        env[TIMINGS_ENV] = str(self.timings_path)
        args = [sys.executable, "-m", "jobs.bench.worker_entry", "worker", "--loglevel", "warning"]
        if bounded:
            args.append("--bounded")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self._log_seen = 0
        self.shutdown_errors: list[str] = []  # services that crashed after the worker drained
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    def _get(self, path: str, timeout: float = 10) -> Any:
        with urllib.request.urlopen(f"{self.base_url}{path}", timeout=timeout) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any] | None:
        try:
            return self._get("/stats", timeout=2)  # type: ignore[no-any-return]
        except OSError:
            return None

    def query_after_exit(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a query on the worker's embedded ClickHouse, once it has exited.

        ``distillwatch sql`` in a child process: chDB opens a data directory in one
        process at a time, and the worker's /query view is not used (see the bench notes).
        """
        done = subprocess.run([sys.executable, "-m", "jobs.cli", "sql", sql, "--data-dir", str(self.settings.data_dir)],
                              capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
        if done.returncode != 0:
            raise BenchError(f"query failed: {done.stderr[-2000:]}")
        return [json.loads(line) for line in done.stdout.splitlines()]

    def check_crash(self, *, drained: bool = False) -> None:
        """A crashed Faust service or task leaves the process running: fail at once instead of waiting it out.

        Once the worker has drained (every row written, offsets committed) the run's
        measurement is complete: a service crashing while the worker stops is recorded
        in ``shutdown_errors`` (and reported in details.json) instead of failing the run.
        """
        with open(self.log_path, "rb") as f:
            f.seek(self._log_seen)
            new = f.read()
        self._log_seen += len(new)
        if b"Crashed reason=" not in new:
            return
        if not drained:
            raise BenchError(f"a service of the worker crashed:\n{self.log_tail()}")
        for line in new.decode(errors="replace").splitlines():
            if "Crashed reason=" in line and len(self.shutdown_errors) < 5:
                self.shutdown_errors.append(line.strip()[-300:])

    def wait_for(self, what: str, check: Any, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"worker exited ({self.proc.returncode}) waiting for {what}:\n{self.log_tail()}")
            self.check_crash()
            stats = self.stats()
            if stats is not None and check(stats):
                return stats
            time.sleep(0.1)
        raise BenchError(f"worker: no {what} within {timeout_s:.0f}s:\n{self.log_tail()}")

    def request_drain(self) -> None:
        req = urllib.request.Request(f"{self.base_url}/drain", data=b"", method="POST",
                                     headers=auth_headers(self.settings.web_token))
        with urllib.request.urlopen(req, timeout=10):
            pass

    def wait(self, timeout_s: float, *, drained: bool = False) -> int:
        deadline = time.monotonic() + timeout_s
        try:
            while self.proc.poll() is None:
                self.check_crash(drained=drained)
                if time.monotonic() > deadline:
                    raise BenchError(f"worker did not finish within {timeout_s:.0f}s:\n{self.log_tail()}")
                time.sleep(0.2)
            return self.proc.returncode
        finally:
            self.kill()
            self._log.close()

    def stop(self, grace_s: float) -> str | None:
        """Let a drained worker exit by itself for ``grace_s``, then SIGTERM, then SIGKILL.

        The linking stages finish their own drain (Faust table changelogs) after the
        detect step has drained; the measurements do not wait for that. Returns a note
        when the worker had to be stopped.
        """
        deadline = time.monotonic() + grace_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.check_crash(drained=True)
            time.sleep(0.2)
        if self.proc.poll() is not None:
            return None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
            how = "SIGTERM"
        except subprocess.TimeoutExpired:
            self.kill()
            how = "SIGKILL"
        return f"still running {grace_s:.0f}s after the detect step drained (linking draining): stopped by {how}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def timings(self) -> dict[str, Any]:
        return json.loads(self.timings_path.read_text())  # type: ignore[no-any-return]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass(frozen=True)
class Throughput:
    events: int
    seconds: float
    worker_cpu_s: float
    broker_cpu_s: float
    stages: dict[str, float]
    batches: int
    drained: bool  # False: stopped after the budget, rate from the batches handled by then
    first_batch: dict[str, float]  # its events and seconds: one-time costs (loading compiled code, ...)
    peak_rss_bytes: int  # the worker's highest resident memory during the run
    notes: tuple[str, ...] = ()  # what the bench changed in the worker, and crashes while it stopped

    @property
    def per_s(self) -> float:
        return self.events / self.seconds

    @property
    def cores(self) -> float:
        return (self.worker_cpu_s + self.broker_cpu_s) / self.seconds


def _timings(worker: BenchWorker) -> dict[str, Any] | None:
    try:
        return worker.timings()
    except (OSError, ValueError):
        return None


def run_throughput(bootstrap: str, broker_pid: int, topic: str, partitions: int, work_dir: Path, *,
                   expected_events: int, max_accounts: int, budget_s: float, timeout_s: float) -> Throughput:
    """The worker on a pre-produced topic: to drained, or for ``budget_s`` after its first batch."""
    worker = BenchWorker(bootstrap, topic, partitions, work_dir, bounded=True, max_accounts=max_accounts)
    stopped: str | None = None
    broker0 = cpu_seconds(broker_pid)
    deadline = time.monotonic() + timeout_s
    rss = PeakRss([], trees=[worker.proc.pid]).__enter__()  # the worker with its linking child
    try:
        while worker.proc.poll() is None:
            t = _timings(worker)
            worker.check_crash(drained=bool(t and t["drained_at"]))
            if t and t["drained_at"]:
                stopped = worker.stop(EXIT_GRACE_S)  # measured: written and committed
                break
            if t and t["first_start"] and time.time() - t["first_start"] > budget_s:
                break  # out of budget: measure what was handled
            if time.monotonic() > deadline:
                raise BenchError(f"worker did not finish within {timeout_s:.0f}s:\n{worker.log_tail()}")
            time.sleep(0.2)
        code = worker.proc.returncode
    finally:
        rss.__exit__()
        worker.kill()
        worker.wait(10, drained=True)
    broker_cpu = cpu_seconds(broker_pid) - broker0
    t = _timings(worker)
    if t is None:
        raise BenchError(f"worker exited with status {code} before its first batch:\n{worker.log_tail()}")
    drained = t["drained_at"] is not None
    if (code not in (None, 0) and not stopped) or not t["first_start"] or not t["events_done"]:
        raise BenchError(f"worker exited with status {code} after {t['batches']} batches:\n{worker.log_tail()}")
    if t["rejected"] or (drained and t["events_done"] != expected_events):
        raise BenchError(f"worker saw {t['events_done']} events ({t['rejected']} rejected), expected {expected_events}")
    end = t["drained_at"] if drained else t["last_end"]
    notes = tuple(t["notes"]) + tuple(f"after drained: {e}" for e in worker.shutdown_errors)
    notes += (stopped,) if stopped else ()
    return Throughput(t["events_done"], end - t["first_start"], t["cpu_at_last"] - t["cpu_at_first"], broker_cpu,
                      {k: round(v, 3) for k, v in t["seconds"].items()}, t["batches"], drained, t["first_batch"],
                      rss.peak_bytes, notes)


@dataclass(frozen=True)
class Latency:
    events: int
    target_rate: float
    achieved_rate: float
    p50_s: float
    p99_s: float
    notes: tuple[str, ...] = ()  # crashes while the worker stopped after its drain


def run_latency(bootstrap: str, topic: str, partitions: int, work_dir: Path, source: PacedSource, *,
                rate: float, seconds: float, max_accounts: int, timeout_s: float) -> Latency:
    worker = BenchWorker(bootstrap, topic, partitions, work_dir, bounded=False, max_accounts=max_accounts)
    stopped: str | None = None
    try:
        worker.wait_for("web server", lambda s: True, timeout_s)
        # Warm-up until the group has joined and the kernels are loaded: not part of the latency.
        warm = run_paced(bootstrap, topic, source, rate=rate, seconds=0.0, warm_up=True)
        worker.wait_for("warm-up events", lambda s: s["events_valid"] >= warm.events, timeout_s)
        paced = run_paced(bootstrap, topic, source, rate=rate, seconds=seconds)
        total = warm.events + paced.events
        worker.wait_for("every produced event", lambda s: s["events_valid"] >= total, timeout_s)
        worker.request_drain()
        deadline = time.monotonic() + timeout_s
        while worker.proc.poll() is None and not (worker.stats() or {}).get("drained"):
            worker.check_crash()
            if time.monotonic() > deadline:
                raise BenchError(f"worker: not drained within {timeout_s:.0f}s:\n{worker.log_tail()}")
            time.sleep(0.1)
        # A crash before the rows are in ClickHouse shows in the row count checked below.
        stopped = worker.stop(EXIT_GRACE_S)
    finally:
        worker.kill()
        worker._log.close()
    (row,) = worker.query_after_exit(LATENCY_SQL)
    if int(row["n"]) != paced.events:
        raise BenchError(f"{row['n']} latency rows in ClickHouse, {paced.events} produced")
    return Latency(paced.events, rate, paced.achieved_rate, float(row["p50_ms"]) / 1000, float(row["p99_ms"]) / 1000,
                   tuple(f"after drain request: {e}" for e in worker.shutdown_errors) + ((stopped,) if stopped else ()))

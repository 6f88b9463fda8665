"""The ceilings of this machine with the broker on it, measured (issue 16), not estimated.

Two kinds, each in fresh child processes (``python -m jobs.bench.limits …``): ``consume`` (the
worker's hot path without ClickHouse or linking: fetch, decode and optionally detect, in 1 or 2
processes that warm up, then start together; the rate is all events over the slowest child) and
``insert`` (the embedded chDB insert ceiling, then the same batches with the inserts overlapped,
then a GIL probe). What each measures and the figures: docs/benchmarks.md ("Ceilings with the
broker on this machine").
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from jobs.bench.offline import NO_LIMIT_TS
from jobs.bench.procs import cpu_seconds, self_cpu_seconds
from pipeline.decode.batch_format import events_in
from pipeline.decode.dispatch import decode_any_batch
from pipeline.decode.json_events import DecodedBatch
from pipeline.detect.detector import Detector
from pipeline.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
READY = "ready"
Batch = tuple[list[bytes], list[bytes | None], list[int], list[int]]  # values, keys, partitions, offsets


def split(partitions: int, procs: int) -> list[list[int]]:
    """Partitions per process, round robin (4 over 2: [0, 2] and [1, 3])."""
    return [list(range(i, partitions, procs)) for i in range(procs)]


def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    # The fetch settings of pipeline.sources.kafka_batches.KafkaBatchSource; no group: partitions are assigned.
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                            auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20,
                            fetch_max_bytes=64 << 20, max_poll_records=50_000)


def _decode(settings: Settings, batch: Batch) -> DecodedBatch:
    return decode_any_batch(*batch, max_message_bytes=settings.max_message_bytes, max_ts_ms=NO_LIMIT_TS)


def _events(decoded: DecodedBatch) -> int:
    return len(decoded) + len(decoded.rejects)


class _Reader:
    """Fetches of assigned partitions as the source's batches: up to ``batch_max_events`` events each."""

    def __init__(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], end: dict[TopicPartition, int],
                 batch_events: int) -> None:
        self.consumer, self.tps, self.end = consumer, tps, end
        self.batch_events = batch_events
        self.max_records = batch_events  # one event per message until a container tells otherwise
        self.pos = {tp: 0 for tp in tps}

    @property
    def done(self) -> bool:
        return all(self.pos[tp] >= self.end[tp] for tp in self.tps)

    async def next(self) -> Batch:
        fetched = await self.consumer.getmany(*self.tps, timeout_ms=1000, max_records=self.max_records)
        values: list[bytes] = []
        keys: list[bytes | None] = []
        partitions: list[int] = []
        offsets: list[int] = []
        for tp, messages in fetched.items():
            for m in messages:
                values.append(m.value or b"")
                keys.append(m.key)
                partitions.append(tp.partition)
                offsets.append(m.offset)
        for tp in fetched:
            self.pos[tp] = await self.consumer.position(tp)  # past the fetched record batches
        if values:
            self.max_records = max(1, self.batch_events // events_in(values[0]))
        return values, keys, partitions, offsets

    async def rewind(self) -> None:
        await self.consumer.seek_to_beginning(*self.tps)
        self.pos = {tp: 0 for tp in self.tps}


async def _open_reader(bootstrap: str, topic: str, parts: list[int], batch_events: int
                       ) -> tuple[AIOKafkaConsumer, _Reader]:
    consumer = _consumer(bootstrap)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in parts]
    consumer.assign(tps)
    end = await consumer.end_offsets(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer, _Reader(consumer, tps, end, batch_events)


async def _consume(bootstrap: str, topic: str, parts: list[int], partitions: int, detect: bool,
                   budget_s: float) -> dict[str, Any]:
    settings = load_settings()
    consumer, reader = await _open_reader(bootstrap, topic, parts, settings.batch_max_events)
    try:
        warm = Detector(settings, partitions)  # decoder and kernels loaded outside the clock
        batch: Batch = ([], [], [], [])
        while not batch[0]:
            batch = await reader.next()
        warm.process(_decode(settings, batch), force_close=True)
        del warm
        await reader.rewind()
        detector = Detector(settings, partitions) if detect else None
        print(READY, flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # "go": every child starts at once
        started, cpu0 = time.perf_counter(), self_cpu_seconds()
        events = 0
        ended, cpu1 = started, cpu0  # after the last batch handled: an empty fetch at the end is not counted
        while not reader.done and time.perf_counter() - started < budget_s:
            batch = await reader.next()
            if not batch[0]:
                continue
            decoded = _decode(settings, batch)
            events += _events(decoded)
            if detector is not None:
                detector.process(decoded)
            ended, cpu1 = time.perf_counter(), self_cpu_seconds()
        return {"events": events, "seconds": ended - started, "cpu_seconds": cpu1 - cpu0, "complete": reader.done}
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Ceiling:
    events: int
    seconds: float  # the slowest process's
    cpu_seconds: float  # the processes' and the broker's
    procs: int

    def entry(self) -> dict[str, float]:
        return {"events_per_s": float(f"{self.events / self.seconds:.4g}"), "processes": self.procs,
                "events": self.events, "seconds": round(self.seconds, 3),
                "cores_used": round(self.cpu_seconds / self.seconds, 2),
                # load-independent: what 2 idle cores could do is at most twice this
                "events_per_cpu_s": float(f"{self.events / self.cpu_seconds:.4g}")}


def measure_consume(bootstrap: str, broker_pid: int, topic: str, partitions: int, *, procs: int, detect: bool,
                    budget_s: float, timeout_s: float) -> Ceiling:
    """Consume + decode (+ detect) of ``topic`` in ``procs`` processes started together."""
    children = [subprocess.Popen(
        [sys.executable, "-m", "jobs.bench.limits", "consume", bootstrap, topic, ",".join(map(str, parts)),
         str(partitions), str(int(detect)), str(budget_s)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        for parts in split(partitions, procs)]
    try:
        for child in children:
            line = child.stdout.readline().strip() if child.stdout else ""
            if line != READY:
                raise RuntimeError(f"consume ceiling child failed: {line!r}\n{_stderr(child, timeout_s)}")
        broker0 = cpu_seconds(broker_pid)
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            out, err = child.communicate(timeout=timeout_s)
            if child.returncode != 0:
                raise RuntimeError(f"consume ceiling child failed ({child.returncode}):\n{err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        broker_cpu = cpu_seconds(broker_pid) - broker0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return Ceiling(sum(r["events"] for r in results), max(r["seconds"] for r in results),
                   sum(r["cpu_seconds"] for r in results) + broker_cpu, procs)


def _stderr(child: subprocess.Popen[str], timeout_s: float) -> str:
    child.kill()
    _, err = child.communicate(timeout=timeout_s)
    return err[-3000:]


async def _read_all(bootstrap: str, topic: str, partitions: int, batch_events: int) -> list[Batch]:
    consumer, reader = await _open_reader(bootstrap, topic, list(range(partitions)), batch_events)
    try:
        batches = []
        while not reader.done:
            batch = await reader.next()
            if batch[0]:
                batches.append(batch)
        return batches
    finally:
        await consumer.stop()


GIL_PROBE_BATCHES = 3
ROUNDS = 2  # serial and overlapped passes, alternated (the machine is shared), each into a fresh database


class PerTableInserts:
    """Insert seconds and rows per table, from the writer's counters after each batch's writes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.rows: dict[str, int] = {}

    def add(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        """``before`` and ``after``: ``ClickHouseWriter.stats`` around one batch (each table written once)."""
        for table, now in after.items():
            was = before.get(table)
            if was is None or now.inserts > was.inserts:
                self.seconds[table] = self.seconds.get(table, 0.0) + now.last_insert_s
                self.rows[table] = self.rows.get(table, 0) + now.rows - (was.rows if was else 0)

    def entry(self) -> dict[str, dict[str, float]]:
        return {"table_insert_s": {t: round(s, 3) for t, s in sorted(self.seconds.items())},
                "table_rows": dict(sorted(self.rows.items()))}


def _serial(settings: Settings, writer: Any, batches: list[Batch], partitions: int, budget_s: float
            ) -> dict[str, Any]:
    """Decode + detect, then insert, batch after batch, until the insert time reaches ``budget_s``."""
    from pipeline.sinks.batch_outputs import batch_token, write_batch_outputs

    detector = Detector(settings, partitions)
    detect_s = insert_s = 0.0
    events = used = 0
    per_table = PerTableInserts()
    started = time.perf_counter()
    for batch in batches:
        t = time.perf_counter()
        decoded = _decode(settings, batch)
        output = detector.process(decoded)
        detect_s += time.perf_counter() - t
        before = writer.stats
        insert_s += write_batch_outputs(writer, decoded, output, batch_token(batch[2], batch[3]),
                                        store_raw=settings.store_raw_events)
        per_table.add(before, writer.stats)
        events += _events(decoded)
        used += 1
        if insert_s >= budget_s:
            break
    return {"events": events, "batches": used, "insert_s": insert_s, "decode_detect_s": detect_s,
            "wall_s": time.perf_counter() - started, **per_table.entry()}


def _overlapped(settings: Settings, writer: Any, batches: list[Batch], partitions: int) -> float:
    """The same batches with batch N's inserts in a thread while N+1 is decoded and detected; the wall."""
    from pipeline.sinks.batch_outputs import batch_token, write_batch_outputs

    detector = Detector(settings, partitions)
    started = time.perf_counter()
    with ThreadPoolExecutor(1, thread_name_prefix="insert") as pool:
        pending: Future[float] | None = None
        for batch in batches:
            decoded = _decode(settings, batch)
            output = detector.process(decoded)
            if pending is not None:
                pending.result()
            pending = pool.submit(write_batch_outputs, writer, decoded, output, batch_token(batch[2], batch[3]),
                                  store_raw=settings.store_raw_events)
        if pending is not None:
            pending.result()
    return time.perf_counter() - started


class _Spinner:
    """A thread running pure Python (counting) until stopped: how much the GIL leaves it, per second."""

    def __init__(self) -> None:
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gil-spinner", daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            for _ in range(1000):
                n += 1
            self.count = n

    def spin_rate(self, during: Callable[[], object]) -> tuple[float, float]:
        """Iterations per second of the spinner while ``during`` runs in this thread, and its seconds."""
        self._thread.start()
        try:
            time.sleep(0.05)  # running before the clock starts
            c0, t0 = self.count, time.perf_counter()
            during()
            seconds = time.perf_counter() - t0
            return (self.count - c0) / seconds, seconds
        finally:
            self._stop.set()
            self._thread.join()


def _gil_probe(settings: Settings, writer: Any, batches: list[Batch], partitions: int) -> dict[str, float]:
    """How much of an insert leaves the GIL free: a spinning thread's rate while this thread inserts,
    against its rate while this thread sleeps as long (1.0: the insert never held the GIL)."""
    from pipeline.sinks.batch_outputs import batch_token, write_batch_outputs

    detector = Detector(settings, partitions)
    ratios = []
    for batch in batches:
        decoded = _decode(settings, batch)
        output = detector.process(decoded)
        insert = functools.partial(write_batch_outputs, writer, decoded, output, batch_token(batch[2], batch[3]),
                                   store_raw=settings.store_raw_events)
        during, seconds = _Spinner().spin_rate(insert)
        idle, _ = _Spinner().spin_rate(functools.partial(time.sleep, seconds))
        ratios.append(during / idle if idle else 0.0)
    return {"batches": len(ratios), "gil_free_fraction": float(np.median(ratios)) if ratios else 0.0}


def _insert(bootstrap: str, topic: str, partitions: int, budget_s: float) -> dict[str, Any]:
    from pipeline.sinks.clickhouse import ClickHouseWriter, close, connect

    batches = asyncio.run(_read_all(bootstrap, topic, partitions, load_settings().batch_max_events))
    with tempfile.TemporaryDirectory(prefix="dw-bench-insert-") as tmp:
        def writer(database: str) -> tuple[Settings, ClickHouseWriter]:
            settings = load_settings(data_dir=Path(tmp), clickhouse_database=database)
            return settings, ClickHouseWriter(connect(settings, apply_retention=True), database)

        dsn = load_settings(data_dir=Path(tmp)).effective_clickhouse_dsn
        try:
            settings, warm = writer("bench_insert_warm")
            _serial(settings, warm, batches[:2], partitions, 0.0)  # first inserts of the process: not measured
            serial: list[dict[str, Any]] = []
            overlapped: list[float] = []
            for r in range(ROUNDS):
                serial.append(_serial(settings, writer(f"bench_insert_serial_{r}")[1], batches, partitions,
                                      budget_s))
                overlapped.append(_overlapped(settings, writer(f"bench_insert_overlap_{r}")[1],
                                              batches[:serial[-1]["batches"]], partitions))
            gil = _gil_probe(settings, writer("bench_insert_gil")[1], batches[:GIL_PROBE_BATCHES], partitions)
        finally:
            close(dsn)
    best = min(range(ROUNDS), key=lambda i: serial[i]["wall_s"])
    s = serial[best]
    shorter = min(s["decode_detect_s"], s["insert_s"])
    return {**s, "gil_probe": gil, "serial_wall_s": [round(x["wall_s"], 3) for x in serial],
            "overlapped_wall_s": [round(w, 3) for w in overlapped],
            # Best serial wall against best overlapped wall, over the shorter of the two sides: 1.0, the
            # shorter hid completely behind the other (the insert released the GIL); 0.0, no overlap at all.
            "hidden_fraction": (s["wall_s"] - min(overlapped)) / shorter if shorter else 0.0}


def measure_insert(bootstrap: str, topic: str, partitions: int, *, budget_s: float, timeout_s: float
                   ) -> dict[str, Any]:
    """The chDB insert ceiling and the write-overlap measurement, in a fresh process (chDB: one per process)."""
    done = subprocess.run([sys.executable, "-m", "jobs.bench.limits", "insert", bootstrap, topic, str(partitions),
                           str(budget_s)], capture_output=True, text=True, timeout=timeout_s, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"insert ceiling child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    r: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    r["events_per_insert_s"] = float(f"{r['events'] / r['insert_s']:.4g}") if r["insert_s"] else None
    return r


def main(argv: list[str]) -> None:
    if argv[0] == "consume":
        bootstrap, topic, parts, partitions, detect, budget = argv[1:7]
        result = asyncio.run(_consume(bootstrap, topic, [int(p) for p in parts.split(",")], int(partitions),
                                      detect == "1", float(budget)))
    elif argv[0] == "insert":
        bootstrap, topic, partitions, budget = argv[1:5]
        result = _insert(bootstrap, topic, int(partitions), float(budget))
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}: consume or insert")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

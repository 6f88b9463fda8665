"""Production at a fixed rate for the latency runs, in either encoding.

Event k of a run "happens" at ``t0 + k / rate`` (wall clock) and carries that instant as its
``ts``; every ``tick_s`` the producer sends what has happened since (JSON: a message per event;
batched: one container per partition per linger, built from pre-validated columns so the
bench's producer is not what is measured). Warm-up events' ids start with ``warm-`` and are
left out of the latency query. Why these ticks: docs/benchmarks.md ("Latency runs").
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from jobs.bench.data import BenchData
from jobs.produce_file import Message, bulk_producer, send_in_batches
from pipeline.decode.batch_format import NumericWire
from pipeline.decode.batch_rules import StrColumn
from pipeline.producer.batch_encoder import encode_wire, take_rows
from pipeline.producer.batching_producer import DEFAULT_LINGER_MS

WARM_PER_PARTITION = 50


class PacedSource(Protocol):
    tick_s: float
    capacity: int  # events available to a paced run

    def messages(self, lo: int, hi: int, ts_ms: np.ndarray) -> list[Message]: ...

    def warm_messages(self, now_ms: int) -> tuple[int, list[Message]]: ...


def _warm_rows(data: BenchData) -> np.ndarray:
    n_warm = min(data.events // 2, WARM_PER_PARTITION * data.partitions)
    return np.arange(data.events - n_warm, data.events)


class JsonSource:
    tick_s = 0.010

    def __init__(self, data: BenchData) -> None:
        self.data = data
        ts = data.wire["ts"]
        assert isinstance(ts, NumericWire)
        self.old_ts = ts.values
        self.warm = _warm_rows(data)
        self.capacity = int(self.warm[0]) if len(self.warm) else data.events

    def _value(self, i: int, ts_ms: int) -> bytes:
        return self.data.json_values[i].replace(b'"ts":%d' % self.old_ts[i], b'"ts":%d' % ts_ms, 1)

    def messages(self, lo: int, hi: int, ts_ms: np.ndarray) -> list[Message]:
        d = self.data
        part = d.part[lo:hi].tolist()
        return [(part[k], d.keys[i], self._value(i, t)) for k, (i, t) in enumerate(zip(range(lo, hi), ts_ms.tolist(),
                                                                                          strict=True))]

    def warm_messages(self, now_ms: int) -> tuple[int, list[Message]]:
        d = self.data
        rows = self.warm.tolist()
        return len(rows), [(int(d.part[i]), d.keys[i],
                            self._value(i, now_ms).replace(b'"event_id":"', b'"event_id":"warm-', 1)) for i in rows]


class BatchedSource:
    tick_s = DEFAULT_LINGER_MS / 1000.0

    def __init__(self, data: BenchData) -> None:
        self.data = data
        self.warm = _warm_rows(data)
        self.capacity = int(self.warm[0]) if len(self.warm) else data.events

    def _containers(self, rows: np.ndarray, ts_ms: np.ndarray, id_prefix: str = "") -> list[Message]:
        out: list[Message] = []
        part = self.data.part[rows]
        for p in np.unique(part).tolist():
            mine = part == p
            wire = take_rows(self.data.wire, rows[mine])
            wire["ts"] = NumericWire(ts_ms[mine].astype(np.int64), None)
            if id_prefix:
                ids = wire["event_id"]
                assert isinstance(ids, StrColumn)
                wire["event_id"] = StrColumn.from_strings([id_prefix + e for e in ids.entries], ids.codes)
            out.append((p, None, encode_wire(int(mine.sum()), wire)))
        return out

    def messages(self, lo: int, hi: int, ts_ms: np.ndarray) -> list[Message]:
        return self._containers(np.arange(lo, hi), ts_ms)

    def warm_messages(self, now_ms: int) -> tuple[int, list[Message]]:
        return len(self.warm), self._containers(self.warm, np.full(len(self.warm), now_ms, np.int64), "warm-")


@dataclass(frozen=True)
class Paced:
    events: int
    achieved_rate: float


async def _run(bootstrap: str, topic: str, source: PacedSource, rate: float, seconds: float, warm_up: bool) -> Paced:
    producer = bulk_producer(bootstrap, compression="lz4", batch_bytes=1 << 20, linger_ms=0)
    await producer.start()
    try:
        if warm_up:
            n, messages = source.warm_messages(int(time.time() * 1000))
            await asyncio.gather(*(await send_in_batches(producer, topic, messages))[1])
            return Paced(n, 0.0)
        total = min(source.capacity, int(rate * seconds))
        futures: list[asyncio.Future[object]] = []
        sent = 0
        t0 = last = time.time()
        while sent < total:
            due = min(total, int((time.time() - t0) * rate))
            if due > sent:
                ts_ms = ((t0 + np.arange(sent, due) / rate) * 1000).astype(np.int64)
                futures += (await send_in_batches(producer, topic, source.messages(sent, due, ts_ms)))[1]
                sent, last = due, time.time()
            if sent < total:
                await asyncio.sleep(source.tick_s)
        elapsed = last - t0
        await asyncio.gather(*futures)
        return Paced(sent, sent / elapsed if elapsed > 0 else 0.0)
    finally:
        await producer.stop()


def run_paced(bootstrap: str, topic: str, source: PacedSource, *, rate: float, seconds: float,
              warm_up: bool = False) -> Paced:
    """Produce at ``rate`` for ``seconds`` (or the warm-up events only); returns what was sent."""
    return asyncio.run(_run(bootstrap, topic, source, rate, seconds, warm_up))

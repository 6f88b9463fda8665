"""The worker, as the bench runs it: ``python -m jobs.bench.worker_entry worker [--bounded] ...``.

Exactly ``distillwatch worker`` plus one bench-only addition, installed before the
app is built:

* stage timers (decode, detector, dead letters, inserts, linking publish,
  checkpoint and commit, whole batch; a stage the worker no longer has is noted,
  not timed) and the
  worker's CPU time, written as JSON to ``$DISTILLWATCH_BENCH_TIMINGS`` after every
  batch, so the bench can tell where end-to-end time goes.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jobs.bench.procs import self_cpu_seconds

TIMINGS_ENV = "DISTILLWATCH_BENCH_TIMINGS"


class StageTimes:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = defaultdict(float)
        self.events = 0  # decoded so far (a batch in progress included)
        self.events_done = 0  # in batches fully handled (written, and committed when due)
        self.rejected = 0
        self.batches = 0
        self.first_start: float | None = None  # wall clock when the first non-empty batch arrived
        self.cpu_at_first = 0.0
        self.last_end = 0.0
        self.cpu_at_last = 0.0
        self.drained_at: float | None = None
        self.first_batch: dict[str, float] = {}  # events and seconds of the first batch (one-time costs)
        self.notes: list[str] = []

    def sync(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started
        return timed

    def async_(self, stage: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started
        return timed

    def dump(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({
            "seconds": self.seconds, "events": self.events, "events_done": self.events_done,
            "rejected": self.rejected, "batches": self.batches,
            "first_start": self.first_start, "cpu_at_first": self.cpu_at_first, "last_end": self.last_end,
            "cpu_at_last": self.cpu_at_last, "drained_at": self.drained_at, "first_batch": self.first_batch,
            "notes": self.notes,
        }))
        tmp.replace(self.path)


def _wrap(times: StageTimes, owner: Any, name: str, stage: str) -> None:
    """Time ``owner.name`` (sync or async) as ``stage``, if the worker still has it."""
    fn = getattr(owner, name, None)
    if fn is None:
        times.notes.append(f"no {getattr(owner, '__name__', owner)}.{name}: stage {stage!r} not timed")
        return
    setattr(owner, name, times.async_(stage, fn) if inspect.iscoroutinefunction(fn) else times.sync(stage, fn))


def install(path: Path) -> StageTimes:
    import pipeline.detect.step as detect
    from pipeline.detect.detector import Detector
    from pipeline.sinks.dead_letter import DeadLetterSink

    times = StageTimes(path)
    step = detect.DetectStep
    decode = step.decode

    @functools.wraps(decode)
    def counted_decode(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        decoded = decode(*args, **kwargs)
        times.seconds["decode"] += time.perf_counter() - started
        times.events += len(decoded) + len(decoded.rejects)
        times.rejected += len(decoded.rejects)
        return decoded

    step.decode = counted_decode  # type: ignore[method-assign]
    _wrap(times, step, "detect", "decode_dedup_detect")
    _wrap(times, Detector, "process", "detector")
    _wrap(times, detect, "write_batch_outputs", "clickhouse_inserts")
    _wrap(times, DeadLetterSink, "send", "dead_letters")
    _wrap(times, step, "_checkpoint_and_ack", "checkpoint_and_commit")
    _wrap(times, step, "_publish_links", "linking_publish")
    handle = step.handle

    @functools.wraps(handle)
    async def timed_handle(self: Any, batch: Any) -> None:
        if times.first_start is None and len(batch):
            times.first_start, times.cpu_at_first = time.time(), self_cpu_seconds()
        started = time.perf_counter()
        await handle(self, batch)
        times.seconds["batch_total"] += time.perf_counter() - started
        times.batches += 1
        if not times.first_batch and times.events:
            times.first_batch = {"events": times.events, "seconds": round(time.perf_counter() - started, 3)}
        times.events_done = times.events
        times.last_end, times.cpu_at_last = time.time(), self_cpu_seconds()
        if batch.drain:
            times.drained_at = times.last_end
        times.dump()

    step.handle = timed_handle  # type: ignore[method-assign]
    return times


def main() -> None:
    path = os.environ.get(TIMINGS_ENV)
    if path:
        install(Path(path))
    from jobs.cli import main as cli

    cli(sys.argv[1:])


if __name__ == "__main__":
    main()

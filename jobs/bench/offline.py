"""In-process measurements, no Kafka: JSON decoding, the frame kernel and its Python reference."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from jobs.bench.data import BenchData
from pipeline.decode.derived import derived_kernel_columns
from pipeline.decode.dispatch import decode_any_batch
from pipeline.decode.json_events import PathCounts, decode_json_batch, path_counts, warm_up
from pipeline.kernels.reference import ReferenceFrames
from pipeline.settings import Settings
from pipeline.state.accounts import AccountRegistry
from pipeline.state.frames import EVENT_COLUMNS, FrameStore

NO_LIMIT_TS = 2**62  # judge events by their own clock: the bench's traffic is historical


@dataclass(frozen=True)
class Rate:
    events: int
    seconds: float


@dataclass(frozen=True)
class DecodeRate(Rate):
    warm_up_s: float  # loading (or, after an edit of the scanner, compiling) its code: not throughput
    batches: int
    slowest_batch_s: float
    paths: PathCounts  # how the messages were decided: fallbacks to pydantic cost ~100x

    def details(self) -> dict[str, object]:
        return {"events": self.events, "seconds": round(self.seconds, 3), "warm_up_s": round(self.warm_up_s, 3),
                "batches": self.batches, "slowest_batch_s": round(self.slowest_batch_s, 3),
                "paths": {"scanner": self.paths.fast, "scanner_and_python_check": self.paths.pending,
                          "pydantic_fallback": self.paths.fallback}}


def decode_json(data: BenchData, settings: Settings, budget_s: float) -> DecodeRate:
    """decode_json_batch over the JSON messages in fetch-sized batches, until done or out of budget.

    The decoder is warmed up first, untimed: its compiled scanner loads from Numba's
    cache once per process, or compiles (a minute or more on a busy machine) when its
    source changed since the cache was written. The previous bench measured that
    compile inside its first timed batch (50,000 events in 90 s: "554 events/s").
    """
    started = time.perf_counter()
    warm_up()
    warm = min(256, data.events)
    decode_json_batch(data.json_values[:warm], data.keys[:warm], [0] * warm, list(range(warm)),
                      max_message_bytes=settings.max_message_bytes, max_ts_ms=NO_LIMIT_TS)
    warm_s = time.perf_counter() - started
    before = replace(path_counts)
    size = settings.batch_max_events
    done = 0
    spent = 0.0
    batches = 0
    slowest = 0.0
    while done < data.events and spent < budget_s:
        values = data.json_values[done:done + size]
        n = len(values)
        started = time.perf_counter()
        decoded = decode_json_batch(values, data.keys[done:done + n], data.part[done:done + n].tolist(),
                                    list(range(done, done + n)), max_message_bytes=settings.max_message_bytes,
                                    max_ts_ms=NO_LIMIT_TS)
        took = time.perf_counter() - started
        spent += took
        batches += 1
        slowest = max(slowest, took)
        if decoded.rejects:
            raise RuntimeError(f"bench events rejected: {decoded.rejects[0]}")
        done += n
    paths = PathCounts(path_counts.fast - before.fast, path_counts.pending - before.pending,
                       path_counts.fallback - before.fallback)
    return DecodeRate(done, spent, warm_s, batches, slowest, paths)


def kernel_inputs(data: BenchData, settings: Settings) -> dict[str, np.ndarray]:
    """The kernel's input columns for every event, as the Detector builds them (pipeline.detect.detector)."""
    containers = data.containers
    decoded = decode_any_batch([c.value for c in containers], [None] * len(containers),
                               [c.partition for c in containers], list(range(len(containers))),
                               max_message_bytes=settings.max_message_bytes, max_ts_ms=NO_LIMIT_TS)
    columns = dict(decoded.kernel)
    columns.update(derived_kernel_columns(decoded.raw))  # type: ignore[arg-type]
    columns["slot"] = AccountRegistry().slots_for(decoded.account_ids)
    return {name: np.ascontiguousarray(columns[name], dtype) for name, dtype in EVENT_COLUMNS.items()}


def _store(settings: Settings, partitions: int, accounts: int) -> FrameStore:
    store = FrameStore(n_partitions=partitions, allowed_lateness_ms=settings.allowed_lateness_ms,
                       max_accounts=max(accounts, 16))
    store.ensure_slots(accounts)
    return store


@dataclass(frozen=True)
class KernelRate(Rate):
    runs_s: tuple[float, ...]  # each pass over all events; ``seconds`` is the median

    def details(self) -> dict[str, object]:
        return {"events": self.events, "seconds": round(self.seconds, 3),
                "runs_s": [round(s, 3) for s in self.runs_s], "statistic": "median of the runs"}


def kernel_numba(columns: dict[str, np.ndarray], settings: Settings, partitions: int, repeats: int = 3) -> KernelRate:
    """FrameStore.ingest + close_frames per fetch-sized batch, then the final forced close.

    ``repeats`` passes, each on a fresh store; the median is reported: one pass is half
    a second, so a single one measures whatever else the machine did in that moment.
    """
    n = len(columns["slot"])
    accounts = int(columns["slot"].max()) + 1 if n else 0
    warm = _store(settings, partitions, accounts)  # load the compiled kernels outside the clock
    warm.ingest({k: v[:256] for k, v in columns.items()})
    warm.close_frames(force=True)
    size = settings.batch_max_events
    runs = []
    for _ in range(max(repeats, 1)):
        store = _store(settings, partitions, accounts)
        started = time.perf_counter()
        for lo in range(0, n, size):
            store.ingest({k: v[lo:lo + size] for k, v in columns.items()})
            store.close_frames()
        store.close_frames(force=True)
        runs.append(time.perf_counter() - started)
        del store
    return KernelRate(n, float(np.median(runs)), tuple(runs))


def kernel_reference(columns: dict[str, np.ndarray], settings: Settings, partitions: int, budget_s: float) -> Rate:
    """The plain-Python reference on the leading events, chunk by chunk until out of budget."""
    chunk = 2000
    names = list(EVENT_COLUMNS)
    ref = ReferenceFrames(lateness_ms=settings.allowed_lateness_ms, n_partitions=partitions)
    n = len(columns["slot"])
    done = 0
    spent = 0.0
    while done < n and spent < budget_s:
        lists = [columns[k][done:done + chunk].tolist() for k in names]
        events = [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]  # input, not timed
        started = time.perf_counter()
        ref.ingest(events)
        ref.close()
        spent += time.perf_counter() - started
        done += len(events)
    return Rate(done, spent)

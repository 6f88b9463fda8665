"""Decode throughput: the fast JSON path against the pydantic reference, on loadgen events.

    python -m jobs.decode_bench [--events 200000] [--batch 50000] [--runs 5] [--rfc3339 0.0] [--pydantic]

Values are what a producer sends to Kafka (``orjson.dumps(event)``). Prints the
median (and every run) in events/s, and how the fast path decided the messages.
Timings on a shared machine vary: compare medians of several runs.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

import orjson

from jobs.loadgen import ScenarioConfig, generate
from pipeline.decode.fast_json import PathCounts, decode_json_batch_fast, warm_up
from pipeline.decode.json_events import DecodedBatch
from pipeline.decode.pydantic_path import decode_json_batch_pydantic

Decode = Callable[..., object]


def _runs(decode: Decode, values: list[bytes], batch: int, runs: int) -> list[float]:
    n = len(values)
    keys, parts, offsets = [b"k"] * n, [i % 4 for i in range(n)], list(range(n))
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        for a in range(0, n, batch):
            decode(values[a:a + batch], keys[a:a + batch], parts[a:a + batch], offsets[a:a + batch],
                   max_message_bytes=65_536, max_ts_ms=2**62)
        seconds.append(time.perf_counter() - started)
    return seconds


def _report(name: str, n: int, seconds: list[float]) -> None:
    rates = sorted(n / s for s in seconds)
    print(f"{name}: median {statistics.median(rates):,.0f} events/s  (runs: {', '.join(f'{r:,.0f}' for r in rates)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rfc3339", type=float, default=0.0, help="share of events with an RFC 3339 ts string")
    parser.add_argument("--pydantic", action="store_true", help="also time the pydantic reference (slow)")
    args = parser.parse_args()
    config = ScenarioConfig(duration_s=max(60.0, args.events / 200.0), rfc3339_fraction=args.rfc3339)
    values = [orjson.dumps(e) for e in itertools.islice(generate(config), args.events)]
    n = len(values)
    print(f"{n} loadgen events, {sum(map(len, values)) / n:.0f} bytes each, batches of {args.batch}")
    warm_up()
    counts = PathCounts()

    def fast(*a: object, **k: object) -> DecodedBatch:
        batch, c = decode_json_batch_fast(*a, **k)  # type: ignore[arg-type]
        counts.add(c)
        return batch

    _report("fast path", n, _runs(fast, values, args.batch, args.runs))
    total = counts.fast + counts.pending + counts.fallback
    print(f"  decided by the scanner {counts.fast / total:.2%}, scanner + Python check {counts.pending / total:.2%}"
          f", pydantic fallback {counts.fallback / total:.2%}")
    if args.pydantic:
        _report("pydantic", n, _runs(decode_json_batch_pydantic, values, args.batch, min(args.runs, 3)))


if __name__ == "__main__":
    main()

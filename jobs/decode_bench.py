"""Decode throughput: the fast JSON path against the pydantic reference or msgspec, on loadgen events.

    python -m jobs.decode_bench [--events 200000] [--batch 50000] [--runs 5] [--rfc3339 0.0] [--pydantic]
                                [--msgspec]

The decoders run interleaved (A B A B …) on the values a producer sends; prints the median (and
every run) in events/s, and how the fast path decided the messages. ``--msgspec`` needs msgspec, a
bench-only dependency. docs/benchmarks.md, "Consumer and decoder choice".
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

from jobs.json_bytes import event_bytes
from jobs.loadgen import ScenarioConfig, generate
from pipeline.decode.fast_json import PathCounts, decode_json_batch_fast, warm_up
from pipeline.decode.json_events import DecodedBatch
from pipeline.decode.pydantic_path import decode_json_batch_pydantic

Decode = Callable[..., object]


def _interleaved(decoders: dict[str, Decode], values: list[bytes], batch: int, runs: int) -> dict[str, list[float]]:
    """Events/s of each decoder per round, the decoders taking turns within every round."""
    n = len(values)
    keys, parts, offsets = [b"k"] * n, [i % 4 for i in range(n)], list(range(n))
    rates: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(runs):
        for name, decode in decoders.items():
            started = time.perf_counter()
            for a in range(0, n, batch):
                decode(values[a:a + batch], keys[a:a + batch], parts[a:a + batch], offsets[a:a + batch],
                       max_message_bytes=65_536, max_ts_ms=2**62)
            rates[name].append(n / (time.perf_counter() - started))
    return rates


def _report(name: str, rates: list[float]) -> None:
    print(f"{name}: median {statistics.median(rates):,.0f} events/s  (rounds: {', '.join(f'{r:,.0f}' for r in rates)})")


def _msgspec_decoders() -> dict[str, Decode]:
    import msgspec

    from jobs.bench.msgspec_decode import EventStruct, decode_json_batch_msgspec, event_struct

    one = msgspec.json.Decoder(EventStruct).decode
    plain = msgspec.json.Decoder(event_struct("NoPatterns", patterns=False)).decode

    def full_whole(*a: object, **k: object) -> DecodedBatch:
        return decode_json_batch_msgspec(*a, whole=True, **k)  # type: ignore[arg-type]

    def decode_only(decode: Callable[[bytes], object]) -> Decode:
        return lambda values, *_, **__: list(map(decode, values))

    return {"msgspec full path": decode_json_batch_msgspec, "msgspec full path, whole batch": full_whole,
            "msgspec decode only": decode_only(one), "msgspec decode only, no patterns": decode_only(plain)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rfc3339", type=float, default=0.0, help="share of events with an RFC 3339 ts string")
    parser.add_argument("--pydantic", action="store_true", help="also time the pydantic reference (slow)")
    parser.add_argument("--msgspec", action="store_true", help="also time msgspec (issue 16's alternative)")
    args = parser.parse_args()
    config = ScenarioConfig(duration_s=max(60.0, args.events / 200.0), rfc3339_fraction=args.rfc3339)
    values = [event_bytes(e) for e in itertools.islice(generate(config), args.events)]
    n = len(values)
    print(f"{n} loadgen events, {sum(map(len, values)) / n:.0f} bytes each, batches of {args.batch}")
    warm_up()
    counts = PathCounts()

    def fast(*a: object, **k: object) -> DecodedBatch:
        batch, c = decode_json_batch_fast(*a, **k)  # type: ignore[arg-type]
        counts.add(c)
        return batch

    decoders: dict[str, Decode] = {"fast path": fast}
    if args.msgspec:
        decoders.update(_msgspec_decoders())
    if args.pydantic:
        decoders["pydantic"] = decode_json_batch_pydantic
    for name, rates in _interleaved(decoders, values, args.batch, args.runs).items():
        _report(name, rates)
    total = counts.fast + counts.pending + counts.fallback
    print(f"  fast path: decided by the scanner {counts.fast / total:.2%}, scanner + Python check "
          f"{counts.pending / total:.2%}, pydantic fallback {counts.fallback / total:.2%}")


if __name__ == "__main__":
    main()

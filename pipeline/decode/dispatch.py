"""Route each message to its decoder by its first bytes: a DWB batch container or a JSON event.

JSON text never starts with ``DWB``, so the prefix is unambiguous. Runs of consecutive messages of
one kind are decoded together and merged in input order, so one fetch may mix gateways that batch
and gateways that do not. JSON runs are decoded ``JSON_CHUNK`` events at a time to bound the
scanner's transient memory (measured in docs/benchmarks.md, "Replay").
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.decode.batch_format import is_batch
from pipeline.decode.batched import decode_batched_message
from pipeline.decode.json_events import DecodedBatch, decode_json_batch
from pipeline.decode.merge import concat_decoded

JSON_CHUNK = 10_000  # JSON events per scanner call (a batch container is one call: its events are one buffer)


def decode_any_batch(
    values: Sequence[bytes],
    keys: Sequence[bytes | None],
    partitions: Sequence[int],
    offsets: Sequence[int],
    *,
    max_message_bytes: int,
    max_ts_ms: int,
) -> DecodedBatch:
    """Decode a fetched batch of JSON events and/or batch containers (same contract as ``decode_json_batch``).

    ``max_message_bytes`` bounds a JSON message, and a container's size per event it carries.
    """
    kinds = [is_batch(v) for v in values]
    runs: list[tuple[int, int]] = []  # [start, end) of consecutive messages of one kind
    for i in range(len(values)):
        if i == 0 or kinds[i] != kinds[i - 1]:
            runs.append((i, i + 1))
        else:
            runs[-1] = (runs[-1][0], i + 1)
    runs = [piece for a, b in runs for piece in ([(a, b)] if kinds[a] else _chunks(a, b, JSON_CHUNK))]
    limits = {"max_message_bytes": max_message_bytes, "max_ts_ms": max_ts_ms}

    def decode(a: int, b: int) -> DecodedBatch:
        """Messages [a, b), all of one kind: each container on its own, JSON events in one scanner call."""
        if a < b and kinds[a]:
            return concat_decoded([
                decode_batched_message(v, k, p, o, **limits)
                for v, k, p, o in zip(values[a:b], keys[a:b], partitions[a:b], offsets[a:b], strict=True)
            ])
        if (a, b) == (0, len(values)):  # the whole fetch: passed on as it is, no copies
            return decode_json_batch(values, keys, partitions, offsets, **limits)
        return decode_json_batch(values[a:b], keys[a:b], partitions[a:b], offsets[a:b], **limits)

    if len(runs) <= 1:  # one kind, no merging
        return decode(0, len(values))
    return concat_decoded([decode(a, b) for a, b in runs])


def _chunks(start: int, end: int, size: int) -> list[tuple[int, int]]:
    """[start, end) cut into pieces of at most ``size``."""
    return [(a, min(a + size, end)) for a in range(start, end, size)]
